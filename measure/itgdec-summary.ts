// ITGDec's text summary (`ITGDec LOG`, the -v output) read back into data: the blocks it prints per
// flow and for the TOTAL, and the TOTAL's figures as numbers in ITGDec's units (s, Kbit/s, pkt/s).
// Where ITGDec runs on another host (the client VM of the cloud lab) its printed summary is all that
// travels back, so this text is an interface of its own.
import type { FlowSummary } from "./types.js";

/** One block of ITGDec's summary: label -> printed value (text after "= ", unit dropped). */
export interface ItgDecBlock {
  readonly heading: { flowId: number; from: string; to: string } | "TOTAL";
  readonly fields: Map<string, string>;
}

/** Text that is not ITGDec's summary, or lacks a field it always prints. */
export class ItgDecFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ItgDecFormatError";
  }
}

/** The blocks of ITGDec's summary in printed order: one per flow, then "TOTAL". */
export function parseItgDec(text: string): ItgDecBlock[] {
  const blocks: ItgDecBlock[] = [];
  let current: { heading: ItgDecBlock["heading"]; fields: Map<string, string> } | undefined;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    const flow = /^Flow number: (\d+)$/.exec(l);
    if (flow) {
      const from = /^From (.*)$/.exec(lines[i + 1] ?? "")?.[1];
      const to = /^To {4}(.*)$/.exec(lines[i + 2] ?? "")?.[1];
      if (from === undefined || to === undefined) throw new ItgDecFormatError(`unexpected ITGDec output near: ${l}`);
      current = { heading: { flowId: Number(flow[1]), from, to }, fields: new Map() };
      blocks.push(current);
      i += 2;
      continue;
    }
    if (/TOTAL RESULTS/.test(l)) {
      current = { heading: "TOTAL", fields: new Map() };
      blocks.push(current);
      continue;
    }
    const field = /^([A-Za-z -]+?)\s*= +(.*?)\s*$/.exec(l);
    if (field && current) current.fields.set(field[1]!, field[2]!.replace(/ (s|pkt|Kbit\/s|pkt\/s)$/, ""));
  }
  return blocks;
}

/** The TOTAL block's figures; NaN or Infinity where ITGDec printed "nan" or "inf" (e.g. a one-record log). */
export type ItgDecTotals = Omit<FlowSummary, "p50S" | "p90S" | "p99S" | "p999S"> & {
  readonly flowCount: number;
  /** Records ITGDec rejected for out-of-range time fields. */
  readonly errorLines: number;
};

/** ITGDec's label of each figure of the TOTAL block. */
const TOTAL_LABELS: Readonly<Record<keyof ItgDecTotals, string>> = {
  flowCount: "Number of flows",
  errorLines: "Error lines",
  packets: "Total packets",
  bytes: "Bytes received",
  durationS: "Total time",
  delayMinS: "Minimum delay",
  delayMaxS: "Maximum delay",
  delayMeanS: "Average delay",
  delayStdS: "Delay standard deviation",
  jitterS: "Average jitter",
  bitrateKbps: "Average bitrate",
  packetRate: "Average packet rate",
  dropped: "Packets dropped",
};

/** A number as C's printf writes a double: digits, or inf/nan in either sign. */
function printedNumber(label: string, text: string): number {
  // "Packets dropped" carries its percentage: "12 (0.60 %)".
  const head = text.split(" (")[0]!.trim();
  if (/^[-+]?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(head)) return Number(head);
  if (/^[-+]?nan$/i.test(head)) return Number.NaN;
  if (/^\+?inf$/i.test(head)) return Infinity;
  if (/^-inf$/i.test(head)) return -Infinity;
  throw new ItgDecFormatError(`ITGDec's "${label}" reads "${text}", not a number`);
}

/** The figures of the TOTAL block of ITGDec's summary. */
export function itgDecTotals(blocks: readonly ItgDecBlock[]): ItgDecTotals {
  const total = blocks.find((b) => b.heading === "TOTAL");
  if (!total) throw new ItgDecFormatError("ITGDec's summary has no TOTAL RESULTS block");
  const out: Partial<Record<keyof ItgDecTotals, number>> = {};
  for (const [key, label] of Object.entries(TOTAL_LABELS) as [keyof ItgDecTotals, string][]) {
    const text = total.fields.get(label);
    if (text === undefined) throw new ItgDecFormatError(`ITGDec's TOTAL block has no "${label}"`);
    out[key] = printedNumber(label, text);
  }
  return out as ItgDecTotals;
}
