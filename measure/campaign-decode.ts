// The campaign's log decoder: measure/ditg-pairing.ts's decodeFlow (the streaming decoder of
// measure/ditg-log.ts, paired with the receiver's log for round trips), run in a worker thread.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type { DecodeReply, DecodeRequest } from "./campaign-decode-worker.js";
import type { LogDecoder } from "./campaign.js";
import type { DecodedFlow, FlowLogFiles } from "./ditg-pairing.js";

/** URL of tsx's ESM register API, resolved from this package (the worker's cwd may be anywhere). */
function tsxEsmApi(): string {
  const require = createRequire(import.meta.url);
  const manifest = require.resolve("tsx/package.json");
  const exportsMap = (require(manifest) as { exports: Record<string, { import: { default: string } }> }).exports;
  return pathToFileURL(path.join(path.dirname(manifest), exportsMap["./esm/api"]!.import.default)).href;
}

/**
 * Decodes logs in one worker thread, one at a time in request order, so that decoding a large log
 * never blocks the event loop that starts and watches the next flow.
 */
export class WorkerLogDecoder implements LogDecoder {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, { resolve: (r: DecodedFlow) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private failure: Error | undefined;

  constructor() {
    const self = fileURLToPath(import.meta.url);
    const entry = path.join(path.dirname(self), `campaign-decode-worker${path.extname(self)}`);
    // Under tsx (the project's runtime) a worker does not inherit the TypeScript loader: the entry
    // is a bootstrap that registers tsx's ESM loader in the worker, then imports the real module.
    this.worker =
      path.extname(self) === ".ts"
        ? new Worker(
            `import(${JSON.stringify(tsxEsmApi())}).then((tsx) => { tsx.register(); return import(${JSON.stringify(pathToFileURL(entry).href)}); })`,
            { eval: true },
          )
        : new Worker(entry);
    this.worker.on("message", (reply: DecodeReply) => {
      const w = this.waiting.get(reply.id);
      if (!w) return;
      this.waiting.delete(reply.id);
      if (reply.ok) w.resolve(reply.log);
      else w.reject(new Error(reply.error));
    });
    const fail = (err: Error) => {
      this.failure = err;
      for (const w of this.waiting.values()) w.reject(err);
      this.waiting.clear();
    };
    this.worker.on("error", (err) => fail(new Error(`log decoder worker failed: ${err.message}`)));
    this.worker.on("exit", (code) => fail(new Error(`log decoder worker exited with code ${code}`)));
  }

  decode(files: FlowLogFiles): Promise<DecodedFlow> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<DecodedFlow>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ id, files } satisfies DecodeRequest);
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
