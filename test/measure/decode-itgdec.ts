// Test helpers of the decoder: run the real ITGDec and compare its printed summary with ours, and write logs.
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import { expect } from "vitest";
import { encodeRecord, recordBlock, type DecodedLog, type DelayReport, type LogRecord } from "../../measure/ditg-log.js";
import { parseItgDec, type ItgDecBlock } from "../../measure/itgdec-summary.js";

const run = promisify(execFile);

/** ITGDec's -v summary of a log; stderr (one spinner write per record) goes to /dev/null. */
export async function runItgDec(path: string): Promise<ItgDecBlock[]> {
  const { stdout } = await run("sh", ["-c", 'exec ITGDec "$1" 2>/dev/null', "sh", path], { maxBuffer: 64 << 20 });
  return parseItgDec(stdout);
}

/** C's %.Nf of a double, as ITGDec prints it. */
function printf(v: number, digits: number): string {
  if (v === Infinity) return "inf";
  if (Number.isNaN(v)) return "nan";
  return v.toFixed(digits);
}

/** Our report in ITGDec's printed form, label by label. */
function asPrinted(r: DelayReport, total: boolean): Record<string, string> {
  const printed: Record<string, string> = {
    "Total time": printf(r.durationS, 6),
    "Total packets": String(r.packets),
    "Minimum delay": printf(r.delayMinS, 6),
    "Maximum delay": printf(r.delayMaxS, 6),
    "Average delay": printf(r.delayMeanS, 6),
    "Average jitter": printf(r.jitterS, 6),
    "Delay standard deviation": printf(r.delayStdS, 6),
    "Bytes received": String(r.bytes),
    "Average bitrate": printf(r.bitrateKbps, 6),
    "Average packet rate": printf(r.packetRate, 6),
    "Packets dropped": `${r.dropped} (${printf(r.droppedPercent, 2)} %)`,
    // ITGDec prints the TOTAL's zero loss-burst with %13.0lf.
    "Average loss-burst size": total && r.dropped === 0 ? "0" : printf(r.lossBurstSize, 6),
  };
  return printed;
}

/** Every field ITGDec prints, per flow and TOTAL, must read the same in our numbers. */
export function expectSameAsItgDec(ours: DecodedLog, itg: ItgDecBlock[]): void {
  const flows = itg.filter((b) => b.heading !== "TOTAL");
  const total = itg.find((b) => b.heading === "TOTAL");
  expect(flows.length, `${ours.file}: flow count`).toBe(ours.flows.length);
  ours.flows.forEach((f, i) => {
    const block = flows[i]!;
    expect(block.heading, `${ours.file}: flow #${i} identity`).toEqual({
      flowId: f.flowId,
      from: `${f.srcAddress}:${f.srcPort}`,
      to: `${f.destAddress}:${f.destPort}`,
    });
    expect(Object.fromEntries(block.fields), `${ours.file}: flow ${f.flowId} ${f.srcAddress}:${f.srcPort}`).toEqual(asPrinted(f, false));
  });
  expect(total, `${ours.file}: TOTAL block`).toBeDefined();
  expect(Object.fromEntries(total!.fields), `${ours.file}: TOTAL`).toEqual({
    "Number of flows": String(ours.total.flowCount),
    ...asPrinted(ours.total, true),
    "Error lines": String(ours.total.errorLines),
  });
}

/** Writes records as a D-ITG binary log. */
export async function writeLog(path: string, records: readonly LogRecord[]): Promise<void> {
  const block = recordBlock(records.length);
  records.forEach((r, i) => encodeRecord(block, i, r));
  await writeFile(path, block.bytes);
}
