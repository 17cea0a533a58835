// Decodes the logs of one run of the stack's measurement, as `testbed campaign` does (decodeFlow of
// measure/ditg-pairing.ts): a round trip's sender log paired with the receiver's `-x` log for exact
// delays (D-ITG B15), a one-way flow's receiver log alone. The measurement's pairing command runs it
// on the Pulumi host, where the program's own checkout is:
//
//   node --import tsx/esm infra/measurement-decode.ts MEASURED_LOG [RECEIVER_LOG]
//
// and it prints one JSON line, the decoded log without its histogram (CompactDecodedLog).
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { decodeFlow } from "../measure/ditg-pairing.js";
import type { DecodedLog } from "../measure/ditg-log.js";

/** What the stack output needs of a decoded log: its flows and total, not its delay histogram. */
export type CompactDecodedLog = Omit<DecodedLog, "histogram" | "views"> & { readonly receiverLog?: string };

export function compactDecoded(log: DecodedLog & { receiverLog?: string }): CompactDecodedLog {
  return {
    file: log.file,
    ...(log.receiverLog !== undefined ? { receiverLog: log.receiverLog } : {}),
    flows: log.flows,
    total: log.total,
  };
}

/** The decoded log the judge and the output read, from a compact one (no histogram: none is read). */
export function fromCompact(log: CompactDecodedLog): DecodedLog {
  return { ...log, histogram: "" };
}

export async function decodeRunLogs(measuredLog: string, receiverLog?: string): Promise<CompactDecodedLog> {
  return compactDecoded(await decodeFlow(receiverLog === undefined ? { log: measuredLog } : { log: measuredLog, receiverLog }));
}

async function main(argv: readonly string[]): Promise<void> {
  if (argv.length < 1 || argv.length > 2) throw new Error("usage: measurement-decode MEASURED_LOG [RECEIVER_LOG]");
  process.stdout.write(`${JSON.stringify(await decodeRunLogs(argv[0]!, argv[1]))}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  });
}
