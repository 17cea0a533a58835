// Worker-thread entry of the campaign's log decoder: decodes one log per message, so that the
// CPU-bound decoding never stalls the event loop that starts and watches the next flow.
import { parentPort } from "node:worker_threads";
import { decodeFlow, type DecodedFlow, type FlowLogFiles } from "./ditg-pairing.js";
import { decomposeRun } from "./hops.js";

export interface DecodeRequest {
  readonly id: number;
  readonly files: FlowLogFiles;
}

export type DecodeReply =
  | { readonly id: number; readonly ok: true; readonly log: DecodedFlow }
  | { readonly id: number; readonly ok: false; readonly error: string };

parentPort?.on("message", (req: DecodeRequest) => {
  decodeFlow(req.files)
    .then((log): DecodedFlow => (req.files.hops ? { ...log, hops: decomposeRun(req.files.hops, req.files) } : log))
    .then(
    (log) => parentPort!.postMessage({ id: req.id, ok: true, log } satisfies DecodeReply),
    (err: unknown) => parentPort!.postMessage({ id: req.id, ok: false, error: err instanceof Error ? err.message : String(err) } satisfies DecodeReply),
  );
});
