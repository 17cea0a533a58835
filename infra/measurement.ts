// The measurement of one stack as a Pulumi resource: with `testbed:measure` set, a remote command on
// the client runs D-ITG against the worker's NodePort `runs` times, decodes every run's log there
// with ITGDec and prints one block per run; its stdout, parsed, is the stack output `measurement`.
//
// When it runs again. A command's stdout is frozen until one of its inputs changes, so the command
// line names everything the result depends on: the script itself (addresses, ports, traffic flags,
// flow length, run count) and a first line with the dataplane, the Service count and the run id
// (measurementIdentity). Any change is an update of the command, which pulumi-command runs by
// running its create again. There is no clock among the inputs: a time stamp would re-run the
// measurement on every preview.
//
// Which log is decoded. Always the sender's, on the client: the receiver's log lies inside the pod
// on the worker, out of reach of a command on the client.
// - latency (rttm): the sender's log holds the round trips, both ends of each on the client's clock.
// - throughput (TCP): ITGSend logs a message once its blocking send() has returned, that is once
//   the kernel has taken the whole message into the socket; a failed send is not logged. TCP
//   delivers every accepted byte in order, and a full receive window blocks the sender, so over a
//   flow the bytes logged by the sender exceed the bytes the receiver got by at most what the
//   socket buffers hold at the end (a few MB against the 1.9 GB of a 30 s flow at 500 Mbit/s). The
//   sender's bitrate is therefore what TCP delivered, and it needs no second clock.
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import type { Family } from "../scenario/cidr.js";
import type { Dataplane, Scenario } from "../scenario/schema.js";
import { flowLogs, senderCommand, shellCommand, type FlowTarget } from "../measure/ditg-commands.js";
import { RECORD_BYTES } from "../measure/ditg-log.js";
import { ItgDecFormatError, itgDecTotals, parseItgDec } from "../measure/itgdec-summary.js";
import { describe } from "../measure/statistics.js";
import type { TrafficProfile } from "../measure/types.js";
import { RECEIVER_LOG_DIR } from "../workloads/receiver.js";
import { shellAssignments, shellQuote } from "./cluster/shell.js";
import type { HostAccess } from "./hosts.js";
import type { DitgEndpoint, Workloads } from "./workloads.js";

/** Where the client keeps the sender logs of the stack's measurements. */
export const CLIENT_MEASUREMENT_DIR = "/var/tmp/testbed-measurement";
/** First line of the script's output; the number changes with the block format. */
export const OUTPUT_HEADER = "testbed-measurement format=1";
/** Seconds a run may take beyond its flow before ITGSend is stopped (signaling, a stalled TCP send). */
const SEND_GRACE_S = 60;

export type MeasureSettings = NonNullable<Scenario["measure"]>;
/** The scenario's D-ITG profiles, which a stack measures. */
export type MeasuredProfile = MeasureSettings["profile"];

/** Everything one measurement script depends on. */
export interface MeasurementPlan {
  readonly measure: MeasureSettings;
  /** Scaled Services of the step: part of the log names, so logs of different steps stay apart. */
  readonly services: number;
  readonly traffic: TrafficProfile;
  readonly durationS: number;
  readonly linkMbps: number;
  readonly target: FlowTarget;
  /** Sender logs, on the host that runs the script. */
  readonly senderDir: string;
  /** Receiver logs (`-x`), as ITGRecv names them on its own host. */
  readonly receiverDir: string;
}

/** The plan of a stack's measurement against one family's D-ITG endpoint. */
export function measurementPlan(s: Scenario, measure: MeasureSettings, endpoint: DitgEndpoint): MeasurementPlan {
  return {
    measure,
    services: s.services,
    traffic: s.traffic[measure.profile],
    durationS: s.sweep.flowSeconds,
    linkMbps: s.linkMbps,
    target: { address: endpoint.address, signalingPort: endpoint.signalingPort, dataPort: endpoint.dataPort },
    senderDir: CLIENT_MEASUREMENT_DIR,
    receiverDir: RECEIVER_LOG_DIR,
  };
}

/** The common part of the log names of a measurement's runs; run k logs to `<prefix>-<k>`. */
export function runLogPrefix(p: Pick<MeasurementPlan, "measure" | "services">): string {
  return `${p.measure.runId}-${p.measure.profile}-${p.measure.family}-s${p.services}`;
}

/** The logs of run k (1-based), as the script names them. */
export function runLogs(p: MeasurementPlan, run: number) {
  return flowLogs(`${runLogPrefix(p)}-${run}`, { senderDir: p.senderDir, receiverDir: p.receiverDir });
}

/**
 * The bash script that runs the measurement on the sender's host and prints one block per run:
 *
 *   testbed-measurement format=1 runId=R profile=P family=F runs=N target=ADDR
 *   === run K
 *   status=ok|failed
 *   reason=TEXT            (failed runs only)
 *   records=N              (records in the sender log)
 *   log=PATH
 *   itgsend> LINE          (ITGSend's own output)
 *   --- itgdec
 *   ITGDec's summary of the sender log
 *   === end run K
 *
 * A run is judged from what it printed and logged, by the rules of judgeFlow (measure/ditg-commands.ts):
 * ITGSend exits 0 after some failures and non-zero after others, so its exit code is not consulted.
 */
export function measurementScript(p: MeasurementPlan): string {
  const first = runLogs(p, 1);
  const flow = senderCommand({ traffic: p.traffic, durationS: p.durationS, target: p.target, logs: first, linkMbps: p.linkMbps });
  // The one definition of the flags, with the per-run log names left to the loop.
  const send = flow.argv
    .map((a) => (a === first.senderLog ? '"$slog"' : a === first.receiverLog ? '"$rlog"' : shellCommand([a])))
    .join(" ");
  const minRecords = Math.ceil(flow.expected.records * flow.expected.minShare);
  return `set -uo pipefail
# No set -e: a failed run is reported and the next one runs.
${shellAssignments({
  RUN_ID: p.measure.runId,
  PROFILE: p.measure.profile,
  FAMILY: p.measure.family,
  RUNS: p.measure.runs,
  TARGET: p.target.address,
  LOG_PREFIX: runLogPrefix(p),
  SENDER_DIR: p.senderDir,
  RECEIVER_DIR: p.receiverDir,
  RECORD_BYTES,
  MIN_RECORDS: minRecords,
  EXPECTED_RECORDS: flow.expected.records,
  SEND_TIMEOUT_S: Math.ceil(p.durationS) + SEND_GRACE_S,
})}
for tool in ITGSend ITGDec timeout; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool is not installed on this host (d-itg and coreutils are in the client's cloud-init)" >&2
    exit 1
  fi
done
# A figure of the TOTAL block of ITGDec's summary in $decoded, by its label.
total() { printf '%s\\n' "$decoded" | sed -n '/TOTAL RESULTS/,$p' | awk -F= -v label="$1" '$1 ~ "^" label " *$" { gsub(/ /, "", $2); print $2; exit }'; }
mkdir -p -- "$SENDER_DIR"
echo "${OUTPUT_HEADER} runId=$RUN_ID profile=$PROFILE family=$FAMILY runs=$RUNS target=$TARGET"
for ((run = 1; run <= RUNS; run++)); do
  slog="$SENDER_DIR/$LOG_PREFIX-$run.slog"
  rlog="$RECEIVER_DIR/$LOG_PREFIX-$run.rlog"
  # A log left by an earlier run of the same name must not pass for this run's.
  rm -f -- "$slog"
  sent="$(timeout "$SEND_TIMEOUT_S" ${send} 2>&1)"
  records=0
  if [ -f "$slog" ]; then records=$(($(stat -c %s -- "$slog") / RECORD_BYTES)); fi
  decoded=""
  # ITGDec writes a spinner character to stderr per record.
  if [ "$records" -gt 0 ]; then decoded="$(ITGDec "$slog" 2>/dev/null)"; fi
  flows="$(total "Number of flows")"
  error_lines="$(total "Error lines")"
  # Searched from a here-string, not a pipe: a grep that stops early would give the writer a SIGPIPE (pipefail).
  error_line="$(grep -i -m 1 error <<<"$sent")"
  status=failed
  if [ -n "$error_line" ]; then
    reason="ITGSend reported an error: $error_line"
  elif ! grep -q "Finished sending packets of flow ID" <<<"$sent"; then
    reason="ITGSend did not report 'Finished sending packets' (killed, crashed or stopped after $SEND_TIMEOUT_S s)"
  elif [ "$records" -eq 0 ]; then
    reason="$slog holds no records"
  elif [ -z "$decoded" ]; then
    reason="ITGDec printed no summary of $slog"
  elif [ "$error_lines" != "0" ]; then
    reason="$slog has \${error_lines:-an unknown number of} records with out-of-range time fields (corrupt log)"
  elif [ "$flows" != "1" ]; then
    reason="$slog holds \${flows:-no} flows, expected one (a log name reused?)"
  elif [ "$records" -lt "$MIN_RECORDS" ]; then
    reason="$slog has $records records, expected at least $MIN_RECORDS of $EXPECTED_RECORDS"
  else
    status=ok
    reason=""
  fi
  echo "=== run $run"
  echo "status=$status"
  if [ -n "$reason" ]; then echo "reason=$reason"; fi
  echo "records=$records"
  echo "log=$slog"
  printf '%s\\n' "$sent" | sed '/^$/d; s/^/itgsend> /'
  echo "--- itgdec"
  if [ -n "$decoded" ]; then printf '%s\\n' "$decoded"; fi
  echo "=== end run $run"
  echo "run $run of $RUNS: $status\${reason:+ ($reason)}" >&2
done
`;
}

/** The remote command line: wait until cloud-init has installed the client's tools, then run the script. */
export function measurementCommandLine(script: string): string {
  // Exit code 2 is "done, with recoverable errors" on newer cloud-init.
  return `cloud-init status --wait >/dev/null || [ $? -eq 2 ] || { echo "cloud-init failed on the client" >&2; exit 1; }
exec bash -c ${shellQuote(script)}`;
}

/** Minutes the whole measurement may take: every run at its limit, ITGDec, and cloud-init. */
export function measurementTimeoutMinutes(p: Pick<MeasurementPlan, "durationS" | "measure">): number {
  const perRunS = Math.ceil(p.durationS) + SEND_GRACE_S + 60;
  return Math.ceil((p.measure.runs * perRunS) / 60) + 30;
}

/** The command's `create`: the identity line, then the command line of the script. */
export function measurementCreate(s: Pick<Scenario, "dataplane" | "services">, m: MeasureSettings, script: string): string {
  return `# testbed measurement: ${measurementIdentity(s, m).join(" ")}\n${measurementCommandLine(script)}`;
}

/** What the measurement's result depends on beyond its script: a change re-runs it. */
export function measurementIdentity(s: Pick<Scenario, "dataplane" | "services">, m: MeasureSettings): (string | number)[] {
  return [s.dataplane, s.services, m.runId, m.profile, m.family, m.runs];
}

// ---------------------------------------------------------------------------------------------
// The output.

/** One run as the stack output shows it; figures are ITGDec's TOTAL of the sender log (null: no log to decode). */
export interface MeasuredRun {
  readonly run: number;
  readonly ok: boolean;
  readonly reason?: string;
  /** Records in the sender log. */
  readonly records: number;
  readonly packets: number | null;
  readonly bytes: number | null;
  readonly durationS: number | null;
  readonly delayMinS: number | null;
  readonly delayMaxS: number | null;
  readonly delayMeanS: number | null;
  readonly delayStdS: number | null;
  readonly jitterS: number | null;
  readonly bitrateKbps: number | null;
  readonly packetRate: number | null;
  readonly dropped: number | null;
}

/** The profile's figure of merit: achieved bitrate for throughput, mean (round-trip) delay for latency. */
export const PROFILE_METRIC = { throughput: "bitrateKbps", latency: "delayMeanS" } as const satisfies Record<MeasuredProfile, keyof MeasuredRun>;

/** The profile's metric over the runs that passed; null where there are too few of them. */
export interface AcrossRuns {
  readonly metric: (typeof PROFILE_METRIC)[MeasuredProfile];
  /** Runs that passed, of all runs. */
  readonly okRuns: number;
  readonly min: number | null;
  readonly max: number | null;
  readonly mean: number | null;
  readonly median: number | null;
  /** Sample standard deviation (n - 1); null below two runs. */
  readonly std: number | null;
}

export interface MeasurementSummary {
  readonly runId: string;
  readonly profile: MeasuredProfile;
  readonly family: Family;
  readonly dataplane: Dataplane;
  readonly services: number;
  readonly runs: MeasuredRun[];
  readonly acrossRuns: AcrossRuns;
}

/** Output that is not what measurementScript prints. */
export class MeasurementOutputError extends Error {
  constructor(message: string) {
    super(`measurement output: ${message}`);
    this.name = "MeasurementOutputError";
  }
}

const finite = (v: number): number | null => (Number.isFinite(v) ? v : null);

/** The runs in the script's output, in order. */
export function parseMeasurementOutput(text: string): MeasuredRun[] {
  const lines = text.split("\n");
  const headerAt = lines.findIndex((l) => l.startsWith(OUTPUT_HEADER));
  if (headerAt < 0) throw new MeasurementOutputError(`no line starting "${OUTPUT_HEADER}"; the script did not run or is of another version`);
  const announced = Number(/ runs=(\d+)/.exec(lines[headerAt]!)?.[1]);
  const runs: MeasuredRun[] = [];
  for (let i = headerAt + 1; i < lines.length; i++) {
    const open = /^=== run (\d+)$/.exec(lines[i]!);
    if (!open) continue;
    const run = Number(open[1]);
    const end = lines.indexOf(`=== end run ${run}`, i + 1);
    if (end < 0) throw new MeasurementOutputError(`run ${run} has no "=== end run ${run}" line (output cut short)`);
    const body = lines.slice(i + 1, end);
    const split = body.indexOf("--- itgdec");
    if (split < 0) throw new MeasurementOutputError(`run ${run} has no "--- itgdec" line`);
    const facts = new Map<string, string>();
    for (const l of body.slice(0, split)) {
      const kv = /^(status|reason|records|log)=(.*)$/.exec(l);
      if (kv) facts.set(kv[1]!, kv[2]!);
    }
    const status = facts.get("status");
    if (status !== "ok" && status !== "failed") throw new MeasurementOutputError(`run ${run}: status "${status ?? ""}", accepted: ok or failed`);
    runs.push(measuredRun(run, status === "ok", facts.get("reason"), Number(facts.get("records") ?? 0), body.slice(split + 1).join("\n")));
    i = end;
  }
  if (!Number.isInteger(announced) || runs.length !== announced) {
    throw new MeasurementOutputError(`the header announces ${Number.isNaN(announced) ? "no count of" : announced} runs, the output holds ${runs.length}`);
  }
  return runs;
}

function measuredRun(run: number, ok: boolean, reason: string | undefined, records: number, itgdec: string): MeasuredRun {
  const none = {
    packets: null, bytes: null, durationS: null, delayMinS: null, delayMaxS: null, delayMeanS: null,
    delayStdS: null, jitterS: null, bitrateKbps: null, packetRate: null, dropped: null,
  };
  if (itgdec.trim() === "") {
    return ok ? { run, ok: false, reason: "the script judged the run ok but printed no ITGDec summary", records, ...none } : { run, ok, ...(reason ? { reason } : {}), records, ...none };
  }
  let t;
  try {
    t = itgDecTotals(parseItgDec(itgdec));
  } catch (err) {
    if (!(err instanceof ItgDecFormatError)) throw err;
    return { run, ok: false, reason: `ITGDec's summary could not be read: ${err.message}`, records, ...none };
  }
  return {
    run,
    ok,
    ...(ok || !reason ? {} : { reason }),
    records,
    packets: finite(t.packets),
    bytes: finite(t.bytes),
    durationS: finite(t.durationS),
    delayMinS: finite(t.delayMinS),
    delayMaxS: finite(t.delayMaxS),
    delayMeanS: finite(t.delayMeanS),
    delayStdS: finite(t.delayStdS),
    jitterS: finite(t.jitterS),
    bitrateKbps: finite(t.bitrateKbps),
    packetRate: finite(t.packetRate),
    dropped: finite(t.dropped),
  };
}

/** The profile's metric across the runs that passed. */
export function acrossRuns(profile: MeasuredProfile, runs: readonly MeasuredRun[]): AcrossRuns {
  const metric = PROFILE_METRIC[profile];
  const values = runs.filter((r) => r.ok).map((r) => r[metric]).filter((v): v is number => v !== null);
  if (values.length === 0) return { metric, okRuns: 0, min: null, max: null, mean: null, median: null, std: null };
  const d = describe(values);
  return { metric, okRuns: values.length, min: d.min, max: d.max, mean: d.mean, median: d.median, std: finite(d.std) };
}

export interface MeasurementIdentity {
  readonly measure: MeasureSettings;
  readonly dataplane: Dataplane;
  readonly services: number;
}

/** The stack output from the command's stdout; undefined while stdout is not known (a first preview). */
export function measurementSummary(stdout: string | undefined, id: MeasurementIdentity): MeasurementSummary | undefined {
  if (stdout === undefined || stdout === "") return undefined;
  const runs = parseMeasurementOutput(stdout);
  const { runId, profile, family } = id.measure;
  return { runId, profile, family, dataplane: id.dataplane, services: id.services, runs, acrossRuns: acrossRuns(profile, runs) };
}

// ---------------------------------------------------------------------------------------------
// The component.

export interface MeasurementArgs {
  readonly scenario: Scenario;
  readonly measure: MeasureSettings;
  /** The client host, where ITGSend and ITGDec run. */
  readonly client: HostAccess;
  /** The router VM on the measured path. */
  readonly router: HostAccess;
  /** The Services and the receiver: the endpoint per family, and the apply the runs wait for. */
  readonly workloads: Pick<Workloads, "ditgEndpoints" | "applied">;
}

export class Measurement extends pulumi.ComponentResource {
  /** The runs' parsed summary (stack output `measurement`). */
  readonly summary: pulumi.Output<MeasurementSummary | undefined>;
  readonly runs: command.remote.Command;

  constructor(name: string, args: MeasurementArgs, opts?: pulumi.ComponentResourceOptions) {
    super("testbed:measurement:Measurement", name, {}, opts);
    const s = args.scenario;
    const m = args.measure;
    const script = args.workloads.ditgEndpoints.apply((endpoints) => {
      const endpoint = endpoints[m.family];
      if (!endpoint) {
        throw new Error(`testbed:measure.family: "${m.family}" has no D-ITG endpoint on the worker; accepted: one of ${Object.keys(endpoints).join(", ") || "(none)"}`);
      }
      return measurementScript(measurementPlan(s, m, endpoint));
    });
    const timeout = `${measurementTimeoutMinutes({ durationS: s.sweep.flowSeconds, measure: m })}m`;
    this.runs = new command.remote.Command(
      `${name}-ditg-runs`,
      {
        connection: pulumi.secret(pulumi.output(args.client.connection)),
        create: script.apply((text) => measurementCreate(s, m, text)),
        // Per-run progress goes to stderr; stdout is the result and becomes the output.
        logging: "stderr",
        // The previous stdout would travel as an environment variable of up to megabytes.
        addPreviousOutputInEnv: false,
      },
      {
        parent: this,
        // The client runs the flows and the router forwards them: both hosts checked ready.
        dependsOn: [args.workloads.applied, args.client.ready, args.router.ready],
        deletedWith: args.client.server,
        customTimeouts: { create: timeout, update: timeout },
      },
    );
    const identity: MeasurementIdentity = { measure: m, dataplane: s.dataplane, services: s.services };
    this.summary = this.runs.stdout.apply((stdout) => measurementSummary(stdout, identity));
    this.registerOutputs({ summary: this.summary });
  }
}
