// `testbed decode LOG... [--json]`, `testbed decode SENDER_LOG --receiver-log RECEIVER_LOG [--json]`: ITGDec's
// summary of D-ITG binary logs plus delay percentiles, with round trips exact from the paired logs (D-ITG B15) or
// without B15's signature records from the sender log alone; `--itgdec` reads every record as logged.
import { access, constants, stat } from "node:fs/promises";
import { Command } from "commander";
import {
  checkDitgLog,
  checkLogSize,
  decodeLogAlone,
  decodeLogFile,
  LogFormatError,
  RTTM_SIGNATURE_S,
  type DecodedLog,
  type DelayReport,
  type DelayView,
  type LogContent,
} from "../measure/ditg-log.js";
import { decodePairedLogs, echoesFirst, type PairedLog } from "../measure/ditg-pairing.js";

const RULE = "----------------------------------------------------------";

const fixed = (v: number, digits = 6) => (Number.isFinite(v) ? v.toFixed(digits) : String(v)).padStart(13);
const line = (label: string, value: string, unit = "") => `${label.padEnd(25)}= ${value}${unit ? ` ${unit}` : ""}`;

/** Why a view leaves records out of the delay statistics, as the text output names it. */
const EXCLUDED_BECAUSE: Record<DelayView, string> = {
  paired: "(no partner in the receiver log: left out of the delays)",
  sender: `(round trip of ${RTTM_SIGNATURE_S} s or more, D-ITG B15's signature: left out of the delays)`,
  logged: "",
};

/** What wrote the log, as its records tell (LogContent), in the text output's words. */
const KIND_HEADING: Record<LogContent["kind"], string> = {
  "round-trip": "round trips: ITGSend's log of a round-trip flow (-m rttm -l)",
  "one-way": "one-way delays: a receiver's log (ITGRecv -l, or ITGSend -x)",
  "sender-one-way": "no delays: ITGSend's own log of a one-way flow (-l without -m rttm); the receiver's log holds the flow's one-way delays",
  unknown: "round trips or one-way delays: the records do not tell",
};

/** What the log is and what its delays are, as the text output's first lines say it. */
function delayHeading(view: DelayView, log: DecodedLog & { receiverLog?: string }): string[] {
  if (view === "paired") {
    const order = (log as Partial<PairedLog>).arrivalOrder;
    const swapped = order && echoesFirst(order)
      ? [
          `Warning: each of the ${order.compared} packets compared reached ${log.receiverLog} after its echo was back in ${log.file}, by the two logs' clocks.`,
          `         On one clock that means the two logs are swapped (--same-clock refuses such a pair); on two, the receiver's clock runs ahead.`,
        ]
      : [];
    return [
      `Log kind: round trips, paired with the receiver's log ${log.receiverLog}`,
      `Delays: exact round trips, receive times of ${log.file} minus send stamps of ${log.receiverLog} (D-ITG B15)`,
      ...swapped,
    ];
  }
  const content = log.content;
  const kind = content ? [`Log kind: ${KIND_HEADING[content.kind]} (${content.because})`] : [];
  if (view === "sender") {
    return [
      ...kind,
      `Delays: as the sender log holds them; records of ${RTTM_SIGNATURE_S} s or more left out (D-ITG B15's signature in rttm logs).`,
      "        Exact round trips: --receiver-log with ITGRecv's -x log; every record as logged (ITGDec's numbers): --itgdec",
    ];
  }
  const long = content && content.kind === "unknown" && content.longRecords > 0
    ? [`        ${content.longRecords} record(s) of ${RTTM_SIGNATURE_S} s or more kept: if this is ITGSend's rttm log, --receiver-log gives exact round trips (D-ITG B15 mis-stamps such records)`]
    : [];
  return [...kind, "Delays: every record as logged (ITGDec's numbers)", ...long];
}

function summaryLines(r: DelayReport, view: DelayView): string[] {
  const lines = [
    line("Total time", fixed(r.durationS), "s"),
    line("Total packets", String(r.packets).padStart(13)),
    line("Minimum delay", fixed(r.delayMinS), "s"),
    line("Maximum delay", fixed(r.delayMaxS), "s"),
    line("Average delay", fixed(r.delayMeanS), "s"),
    line("Average jitter", fixed(r.jitterS), "s"),
    line("Delay standard deviation", fixed(r.delayStdS), "s"),
    line("Bytes received", String(r.bytes).padStart(13)),
    line("Average bitrate", fixed(r.bitrateKbps), "Kbit/s"),
    line("Average packet rate", fixed(r.packetRate), "pkt/s"),
    line("Packets dropped", `${String(r.dropped).padStart(13)} (${r.droppedPercent.toFixed(2)} %)`),
    line("Average loss-burst size", fixed(r.lossBurstSize), "pkt"),
    line("Delay p50", fixed(r.p50S), "s"),
    line("Delay p90", fixed(r.p90S), "s"),
    line("Delay p99", fixed(r.p99S), "s"),
    line("Delay p99.9", fixed(r.p999S), "s"),
  ];
  if (view !== "logged") lines.push(line("Excluded records", String(r.excludedRecords).padStart(13), EXCLUDED_BECAUSE[view]));
  if (r.negativeDelays > 0) {
    lines.push(line("Negative delays", String(r.negativeDelays).padStart(13), "(clocks not synchronised: percentiles floored at 0)"));
  }
  return lines;
}

/** The readable report of one log in one view: what its delays are, ITGDec's layout, then the percentiles. */
export function formatDecodedLog(log: DecodedLog & { receiverLog?: string }, view: DelayView): string {
  const out = [`Log: ${log.file}`, ...delayHeading(view, log)];
  for (const f of log.flows) {
    out.push(RULE, `Flow number: ${f.flowId}`, `From ${f.srcAddress}:${f.srcPort}`, `To    ${f.destAddress}:${f.destPort}`, RULE);
    out.push(...summaryLines(f, view), RULE);
  }
  out.push("", "__________________________________________________________", "****************  TOTAL RESULTS   ******************");
  out.push("__________________________________________________________");
  out.push(line("Number of flows", String(log.total.flowCount).padStart(13)));
  out.push(...summaryLines(log.total, view));
  out.push(line("Error lines", String(log.total.errorLines).padStart(13)), RULE);
  return out.join("\n") + "\n";
}

/** Checks every log before decoding any, so a bad argument produces no partial output. */
async function checkLogs(paths: string[]): Promise<void> {
  const problems: string[] = [];
  for (const path of paths) {
    try {
      const s = await stat(path);
      if (!s.isFile()) throw new LogFormatError(path, "is not a regular file; accepted: a D-ITG binary log (ITGSend/ITGRecv -l or -x)");
      checkLogSize(path, s.size);
      await access(path, constants.R_OK);
    } catch (err) {
      problems.push(
        err instanceof LogFormatError ? err.message : `${path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
      );
    }
  }
  if (problems.length > 0) {
    throw new Error(`decode: ${problems.length} of ${paths.length} log(s) cannot be decoded:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

interface DecodeFlags {
  json?: boolean;
  receiverLog?: string;
  sameClock?: boolean;
  itgdec?: boolean;
}

/** The pairing the flags ask for; errors name the flag and what is accepted. */
function checkFlags(logs: string[], opts: DecodeFlags): void {
  if (opts.receiverLog === undefined) {
    if (opts.sameClock) throw new Error("decode: --same-clock checks a pair's order and needs --receiver-log; accepted: SENDER_LOG --receiver-log RECEIVER_LOG --same-clock");
    return;
  }
  if (opts.itgdec) throw new Error("decode: --itgdec reads a log as ITGDec does and takes no --receiver-log; accepted: one of the two");
  if (logs.length !== 1) {
    throw new Error(`decode: --receiver-log pairs one sender log with it, ${logs.length} logs were given; accepted: SENDER_LOG --receiver-log RECEIVER_LOG`);
  }
}

/** One log decoded the way the flags ask, refused when it is not a D-ITG log. */
async function decodeOne(path: string, opts: DecodeFlags): Promise<{ log: DecodedLog; view: DelayView }> {
  if (opts.receiverLog !== undefined) {
    const log = await decodePairedLogs(path, opts.receiverLog, [], { sameClock: opts.sameClock === true });
    checkDitgLog(log);
    return { log, view: "paired" };
  }
  if (opts.itgdec) {
    const log = await decodeLogFile(path, { views: ["logged"] });
    checkDitgLog(log);
    return { log, view: "logged" };
  }
  return decodeLogAlone(path);
}

export async function decodeCommand(): Promise<Command> {
  return new Command("decode")
    .description(
      "ITGDec's summary of D-ITG binary logs (per flow and total) plus delay percentiles, in constant memory. What wrote a log (ITGSend's round-trip log, a receiver's one-way log, ITGSend's own log of a one-way flow) is told from its records and printed. Round trips of ITGSend's rttm log are wrong whenever an echo returns after the next packet left (D-ITG B15): with --receiver-log they are exact; without it, records of 0.5 s or more (the bug's signature) are left out of a round-trip log's delays and counted. Files that are not D-ITG logs, and two logs that are not a flow's sender and receiver logs, are refused",
    )
    .argument("<log...>", "D-ITG binary log files written by ITGSend/ITGRecv (-l or -x); with --receiver-log, the one sender log (ITGSend -m rttm -l)")
    .option("--receiver-log <file>", "the receiver's log of the same flow (ITGSend -x): pairs records by flow id and sequence number for exact round trips")
    .option("--same-clock", "with --receiver-log: both logs were written on one clock (one host, the lab), so a pair whose every packet reached the receiver after its echo was back is refused as swapped")
    .option("--itgdec", "every record as logged: ITGDec's numbers (parity checks)")
    .option(
      "--json",
      'one JSON object per log and line: {file, flows, total, histogram, content} (and receiverLog, and arrivalOrder {compared, echoFirst} of a pair); seconds and Kbit/s, null where undefined; "delaySource" paired or sender, "excludedRecords" per flow and total; content.kind round-trip, one-way, sender-one-way or unknown',
    )
    .action(async (logs: string[], opts: DecodeFlags) => {
      checkFlags(logs, opts);
      await checkLogs(opts.receiverLog !== undefined ? [...logs, opts.receiverLog] : logs);
      // Every log is decoded and checked before anything is printed: a bad one leaves no partial output.
      const decoded: { log: DecodedLog; view: DelayView }[] = [];
      const problems: string[] = [];
      for (const path of logs) {
        try {
          decoded.push(await decodeOne(path, opts));
        } catch (err) {
          if (!(err instanceof LogFormatError)) throw err;
          problems.push(err.message);
        }
      }
      if (problems.length > 0) {
        throw new Error(`decode: ${problems.length} of ${logs.length} log(s) cannot be decoded:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
      }
      for (const { log, view } of decoded) process.stdout.write(opts.json ? JSON.stringify(log) + "\n" : formatDecodedLog(log, view));
    });
}
