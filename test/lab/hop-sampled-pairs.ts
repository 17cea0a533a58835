// The round trips a sampled hop capture of a D-ITG flow must decompose: the packets in both of the
// flow's logs (paired by flow id and sequence number) that the probes sample. Read here from the
// logs' records, apart from the decoder the lab tests check.
import { readFileSync } from "node:fs";
import { hopSources } from "../../hops/build.js";
import { decodeRecord, RECORD_BYTES, recordBlock } from "../../measure/ditg-log.js";
import { hopSampled } from "../../measure/hops.js";

/** The (flow id, sequence number) of every record of a D-ITG binary log. */
function keysOf(file: string): Set<string> {
  const bytes = readFileSync(file);
  const records = bytes.length / RECORD_BYTES;
  const block = recordBlock(records);
  block.bytes.set(bytes);
  const keys = new Set<string>();
  for (let i = 0; i < records; i++) {
    const r = decodeRecord(block, i);
    keys.add(`${r.flowId}/${r.seqNum}`);
  }
  return keys;
}

/** How many of a round-trip flow's paired packets the probes stamp at 1 in `every`. */
export function sampledPairs(logs: { log: string; receiverLog?: string }, every: number): number {
  if (logs.receiverLog === undefined) throw new Error(`${logs.log}: a round trip's two logs are needed`);
  const received = keysOf(logs.receiverLog);
  let n = 0;
  for (const key of keysOf(logs.log)) {
    const [flowId, seq] = key.split("/").map(Number) as [number, number];
    if (received.has(key) && hopSampled(flowId, seq, every)) n++;
  }
  return n;
}

/** The sample the probes are built with (hops/hop-maps.h, HOP_SAMPLE_SHIFT): 1 in this many D-ITG packets. */
export function builtSampleEvery(): number {
  const shift = /^#define HOP_SAMPLE_SHIFT (\d+)$/m.exec(hopSources()["hop-maps.h"]);
  if (!shift) throw new Error("hops/hop-maps.h defines no HOP_SAMPLE_SHIFT");
  return 2 ** Number(shift[1]);
}
