// `testbed decode LOG... [--json]`: ITGDec's summary of D-ITG binary logs plus delay percentiles.
import { access, constants, stat } from "node:fs/promises";
import { Command } from "commander";
import { checkLogSize, decodeLogFile, LogFormatError, type DecodedLog, type DelayReport } from "../measure/ditg-log.js";

const RULE = "----------------------------------------------------------";

const fixed = (v: number, digits = 6) => (Number.isFinite(v) ? v.toFixed(digits) : String(v)).padStart(13);
const line = (label: string, value: string, unit = "") => `${label.padEnd(25)}= ${value}${unit ? ` ${unit}` : ""}`;

function summaryLines(r: DelayReport): string[] {
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
  if (r.negativeDelays > 0) {
    lines.push(line("Negative delays", String(r.negativeDelays).padStart(13), "(clocks not synchronised: percentiles floored at 0)"));
  }
  return lines;
}

/** The readable report of one log: ITGDec's layout, then the percentiles. */
export function formatDecodedLog(log: DecodedLog): string {
  const out = [`Log: ${log.file}`];
  for (const f of log.flows) {
    out.push(RULE, `Flow number: ${f.flowId}`, `From ${f.srcAddress}:${f.srcPort}`, `To    ${f.destAddress}:${f.destPort}`, RULE);
    out.push(...summaryLines(f), RULE);
  }
  out.push("", "__________________________________________________________", "****************  TOTAL RESULTS   ******************");
  out.push("__________________________________________________________");
  out.push(line("Number of flows", String(log.total.flowCount).padStart(13)));
  out.push(...summaryLines(log.total));
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

export async function decodeCommand(): Promise<Command> {
  return new Command("decode")
    .description("ITGDec's summary of D-ITG binary logs (per flow and total) plus delay percentiles, in constant memory")
    .argument("<log...>", "D-ITG binary log files written by ITGSend/ITGRecv (-l or -x)")
    .option("--json", "one JSON object per log and line: {file, flows, total, histogram}; seconds and Kbit/s, null where undefined")
    .action(async (logs: string[], opts: { json?: boolean }) => {
      await checkLogs(logs);
      for (const path of logs) {
        const log = await decodeLogFile(path);
        process.stdout.write(opts.json ? JSON.stringify(log) + "\n" : formatDecodedLog(log));
      }
    });
}
