// The measurement of one stack as Pulumi resources: with `testbed:measure` set, a remote command on
// the client runs D-ITG against the worker's NodePort `runs` times, and a local command on the
// Pulumi host fetches each run's logs over the management network and decodes them as
// `testbed campaign` does; the two outputs, parsed, are the stack output `measurement`.
//
// Why the decoding runs on the Pulumi host. The figures must be the campaign's: a round trip's
// sender log paired with the receiver's `-x` log (measure/ditg-pairing.ts), because ITGDec's own
// round-trip meter mixes the send times of two packets (D-ITG B15). The receiver's log is on the
// worker (a hostPath of the receiver pod), the sender's on the client, and the pairing is the
// project's TypeScript, which neither host can run (Ubuntu 20.04's Node is 10). The Pulumi host runs
// the program's own checkout already: the pairing command copies both logs there through the
// bastion (scp, never over the measured path) and runs infra/measurement-decode.ts on them, so the
// figures come from the very code the campaign runs, and the output stays a resource's stdout.
//
// When they run again. A command's stdout is frozen until one of its inputs changes, so the runs'
// command line names everything the result depends on: the script itself (addresses, ports, traffic
// flags, flow length, run count) and a first line with the dataplane, the Service count and the run
// id (measurementIdentity). Any change is an update, which pulumi-command runs by running its create
// again; the pairing command names the runs' output (its hash), so it decodes each new set of logs.
// There is no clock among the inputs: a time stamp would re-run the measurement on every preview.
//
// Which log is measured: the campaign's choice (senderCommand's measuredLog). A latency run (rttm)
// is measured by the client's log paired with the receiver's; a throughput run by the receiver's log
// (what arrived). Each run is judged by judgeFlow, the campaign's own rules.
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import type { Family } from "../scenario/cidr.js";
import type { Dataplane, Scenario } from "../scenario/schema.js";
import { flowLogs, judgeFlow, senderCommand, shellCommand, type FlowExpectation, type FlowTarget, type SenderCommand } from "../measure/ditg-commands.js";
import { RECORD_BYTES, type DelaySource } from "../measure/ditg-log.js";
import { describe } from "../measure/statistics.js";
import type { TrafficProfile } from "../measure/types.js";
import { RECEIVER_LOG_DIR, RECEIVER_NODE_LOG_DIR } from "../workloads/receiver.js";
import { pulumiTimeout, shellAssignments, shellQuote } from "./cluster/shell.js";
import type { HostAccess } from "./hosts.js";
import { contentHash } from "./remote-files.js";
import { fromCompact, type CompactDecodedLog } from "./measurement-decode.js";
import type { DitgEndpoint, Workloads } from "./workloads.js";

/** Where the client keeps the sender logs of the stack's measurements. */
export const CLIENT_MEASUREMENT_DIR = "/var/tmp/testbed-measurement";
/** First line of the runs' output; the number changes with the block format. */
export const OUTPUT_HEADER = "testbed-measurement format=2";
/** First line of the pairing's output. */
export const PAIRING_HEADER = "testbed-measurement-pairing format=1";
/** Seconds a run may take beyond its flow before ITGSend is stopped (signaling, a stalled TCP send). */
const SEND_GRACE_S = 60;
/** Seconds the runs wait for the client's cloud-init (its packages) before they give up. */
export const CLIENT_CLOUD_INIT_WAIT_S = 1500;
/** Seconds one log may take to come over (scp), and one run's logs to be decoded. */
const FETCH_TIMEOUT_S = 600;
const DECODE_TIMEOUT_S = 600;
/** The checkout the program runs from: the pairing command decodes with its code. */
export const CHECKOUT_DIR = path.resolve(fileURLToPath(new URL("..", import.meta.url)));
/** The decoder the pairing command runs, relative to the checkout. */
export const DECODE_ENTRY = "infra/measurement-decode.ts";

export type MeasureSettings = NonNullable<Scenario["measure"]>;
/** The scenario's D-ITG profiles, which a stack measures. */
export type MeasuredProfile = MeasureSettings["profile"];

/** Everything one measurement depends on. */
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
  /** Receiver logs (`-x`), as ITGRecv names them in its pod. */
  readonly receiverDir: string;
  /** The same receiver logs on the worker node, where the pairing fetches them. */
  readonly receiverNodeDir: string;
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
    receiverNodeDir: RECEIVER_NODE_LOG_DIR,
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

/** Where run k's receiver log lies on the worker node (the pod's log directory is a hostPath). */
export function receiverNodeLog(p: MeasurementPlan, run: number): string {
  return path.posix.join(p.receiverNodeDir, path.posix.basename(runLogs(p, run).receiverLog));
}

/** The D-ITG flow of run 1: the flags of every run, what a complete run logs, which log is measured. */
export function measuredFlow(p: MeasurementPlan): SenderCommand {
  return senderCommand({ traffic: p.traffic, durationS: p.durationS, target: p.target, logs: runLogs(p, 1), linkMbps: p.linkMbps });
}

/**
 * The bash script that runs the measurement on the sender's host and prints one block per run:
 *
 *   testbed-measurement format=2 runId=R profile=P family=F runs=N target=ADDR
 *   === run K
 *   records=N              (records in the sender log)
 *   senderLog=PATH         (on this host)
 *   receiverLog=PATH       (on the worker node)
 *   itgsend> LINE          (ITGSend's own output)
 *   === end run K
 *
 * It judges nothing: a run is judged from what ITGSend printed and what the decoded logs hold, by
 * the campaign's rules (judgeFlow), once the pairing has decoded them.
 */
export function measurementScript(p: MeasurementPlan): string {
  const first = runLogs(p, 1);
  const flow = measuredFlow(p);
  // The one definition of the flags, with the per-run log names left to the loop.
  const send = flow.argv
    .map((a) => (a === first.senderLog ? '"$slog"' : a === first.receiverLog ? '"$rlog"' : shellCommand([a])))
    .join(" ");
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
  RECEIVER_NODE_DIR: p.receiverNodeDir,
  RECORD_BYTES,
  SEND_TIMEOUT_S: Math.ceil(p.durationS) + SEND_GRACE_S,
})}
for tool in ITGSend timeout; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool is not installed on this host (d-itg and coreutils are in the client's cloud-init)" >&2
    exit 1
  fi
done
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
  echo "=== run $run"
  echo "records=$records"
  echo "senderLog=$slog"
  echo "receiverLog=$RECEIVER_NODE_DIR/\${rlog##*/}"
  printf '%s\\n' "$sent" | sed '/^$/d; s/^/itgsend> /'
  echo "=== end run $run"
  echo "run $run of $RUNS: sent, $records records in $slog" >&2
done
`;
}

/** Seconds the runs may take: every run at its limit. */
export function measurementRunsLimitS(p: Pick<MeasurementPlan, "durationS" | "measure">): number {
  return p.measure.runs * (Math.ceil(p.durationS) + SEND_GRACE_S + 30);
}

/**
 * The remote command line: wait (bounded) until cloud-init has installed the client's tools, then
 * run the script, itself bounded by measurementRunsLimitS.
 */
export function measurementCommandLine(script: string, limitS: number): string {
  // Exit code 2 is "done, with recoverable errors" on newer cloud-init.
  return `status=0
timeout ${CLIENT_CLOUD_INIT_WAIT_S} cloud-init status --wait >/dev/null || status=$?
case "$status" in
  0 | 2) ;;
  124) echo "gave up after ${CLIENT_CLOUD_INIT_WAIT_S} s waiting for cloud-init to finish on the client" >&2; exit 1 ;;
  *) echo "cloud-init failed on the client (status $status)" >&2; exit 1 ;;
esac
# The script travels single-quoted: its expansions are the inner bash's.
# shellcheck disable=SC2016
timeout --kill-after=30 ${limitS} bash -c ${shellQuote(script)} || { rc=$?; if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo ${shellQuote(`gave up after ${limitS} s (the runs' own limit) waiting for the D-ITG runs to finish`)} >&2; fi; exit "$rc"; }`;
}

/** The runs' Pulumi timeout: cloud-init's wait and the runs' own limit. */
export function measurementTimeout(p: Pick<MeasurementPlan, "durationS" | "measure">): string {
  return pulumiTimeout(CLIENT_CLOUD_INIT_WAIT_S + measurementRunsLimitS(p));
}

/** The command's `create`: the identity line, then the command line of the script. */
export function measurementCreate(s: Pick<Scenario, "dataplane" | "services">, m: MeasureSettings, p: MeasurementPlan): string {
  return `# testbed measurement: ${measurementIdentity(s, m).join(" ")}\n${measurementCommandLine(measurementScript(p), measurementRunsLimitS(p))}`;
}

/** What the measurement's result depends on beyond its script: a change re-runs it. */
export function measurementIdentity(s: Pick<Scenario, "dataplane" | "services">, m: MeasureSettings): (string | number)[] {
  return [s.dataplane, s.services, m.runId, m.profile, m.family, m.runs];
}

// ---------------------------------------------------------------------------------------------
// The pairing, on the Pulumi host.

/** How the Pulumi host reaches the client and the worker: through the bastion, as the SSH user. */
export interface PairingHosts {
  readonly bastion: string;
  readonly bastionPort?: number;
  readonly client: string;
  readonly worker: string;
  readonly user: string;
}

/**
 * The bash script of the pairing command, run in the checkout (CHECKOUT_DIR) with the SSH private key
 * on standard input. Per run it fetches the measured log (and a round trip's receiver log) into a
 * private scratch directory, decodes them with DECODE_ENTRY and prints:
 *
 *   testbed-measurement-pairing format=1 runs=N
 *   === run K
 *   decoded {JSON}              (CompactDecodedLog)
 *   failed REASON               (instead, when a log could not be fetched or decoded)
 *   === end run K
 *
 * `runs` names the runs' output it pairs (a hash), so that new runs are paired again.
 */
export function pairingScript(p: MeasurementPlan, hosts: PairingHosts, runs: string): string {
  const flow = measuredFlow(p);
  const lines: string[] = [];
  for (let run = 1; run <= p.measure.runs; run++) {
    const sender = runLogs(p, run).senderLog;
    const receiver = receiverNodeLog(p, run);
    // m: the measured log; r: the receiver's log it is paired with.
    const fetches = flow.measuredLog === "sender" ? [["client", sender, "m"], ["worker", receiver, "r"]] : [["worker", receiver, "m"]];
    lines.push(`pair_run ${run} ${fetches.map((f) => f.map((w) => shellQuote(w)).join(" ")).join(" ")}`);
  }
  return `set -uo pipefail
# testbed measurement pairing: runs ${contentHash(runs)}
${shellAssignments({
  PROFILE: p.measure.profile,
  FAMILY: p.measure.family,
  RUNS: p.measure.runs,
  BASTION: hosts.bastion,
  BASTION_PORT: hosts.bastionPort ?? 22,
  CLIENT: hosts.client,
  WORKER: hosts.worker,
  LOGIN: hosts.user,
  DECODE: DECODE_ENTRY,
  FETCH_TIMEOUT_S,
  DECODE_TIMEOUT_S,
})}
for tool in ssh scp node timeout; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool is not installed on the Pulumi host: the measurement's pairing fetches the logs with scp and decodes them with node" >&2
    exit 1
  fi
done
umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The key comes on standard input (a secret input of the command), never in an argument.
cat >"$work/id"
cat >"$work/ssh_config" <<EOF
Host bastion
  HostName $BASTION
  Port $BASTION_PORT
Host client
  HostName $CLIENT
  ProxyJump bastion
Host worker
  HostName $WORKER
  ProxyJump bastion
Host *
  User $LOGIN
  IdentityFile $work/id
  IdentitiesOnly yes
  BatchMode yes
  StrictHostKeyChecking accept-new
  UserKnownHostsFile $work/known_hosts
  ConnectTimeout 20
  ServerAliveInterval 15
  ServerAliveCountMax 4
  LogLevel ERROR
EOF
# pair_run K [HOST PATH m|r]...: fetch the measured log (m) and the receiver log it pairs with (r),
# decode, print the run's block.
pair_run() {
  local run="$1" measured="" receiver="" failure="" copy out
  shift
  while [ "$#" -ge 3 ]; do
    copy="$work/$run.$3"
    if ! out="$(timeout "$FETCH_TIMEOUT_S" scp -F "$work/ssh_config" -q "$1:$2" "$copy" 2>&1)"; then
      failure="\${failure:-fetching $1:$2 failed: $(printf '%s' "$out" | tail -n 2 | tr '\\n' ' ')}"
    elif [ "$3" = m ]; then
      measured="$copy"
    else
      receiver="$copy"
    fi
    shift 3
  done
  echo "=== run $run"
  if [ -n "$failure" ]; then
    echo "failed $failure"
  elif decoded="$(timeout "$DECODE_TIMEOUT_S" node --import tsx/esm "$DECODE" "$measured" \${receiver:+"$receiver"} 2>"$work/decode.err")"; then
    echo "decoded $decoded"
  else
    echo "failed decoding run $run: $(tail -n 2 "$work/decode.err" | tr '\\n' ' ')"
  fi
  echo "=== end run $run"
  echo "run $run of $RUNS: \${failure:+not }paired" >&2
  rm -f -- "$work/$run.m" "$work/$run.r"
}
echo "${PAIRING_HEADER} profile=$PROFILE family=$FAMILY runs=$RUNS"
${lines.join("\n")}
`;
}

/** The pairing's Pulumi timeout: every log fetched and decoded at its limit. */
export function pairingTimeout(p: Pick<MeasurementPlan, "measure">): string {
  return pulumiTimeout(p.measure.runs * (2 * FETCH_TIMEOUT_S + DECODE_TIMEOUT_S));
}

// ---------------------------------------------------------------------------------------------
// The output.

/** One run as the stack output shows it; figures are the measured log's decoded total (null: no log was decoded). */
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
  readonly p50S: number | null;
  readonly p90S: number | null;
  readonly p99S: number | null;
  readonly p999S: number | null;
  readonly bitrateKbps: number | null;
  readonly packetRate: number | null;
  readonly dropped: number | null;
  /** Where the delays' send times come from: "paired" (the receiver's log, exact) or "sender". */
  readonly delaySource: DelaySource | null;
  /** Records left out of the delays (no partner in the receiver log). */
  readonly excludedRecords: number | null;
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

/** Output that is not what measurementScript or pairingScript prints. */
export class MeasurementOutputError extends Error {
  constructor(message: string) {
    super(`measurement output: ${message}`);
    this.name = "MeasurementOutputError";
  }
}

const finite = (v: number): number | null => (Number.isFinite(v) ? v : null);

/** One run as the runs' output reports it. */
export interface RunRecord {
  readonly run: number;
  readonly records: number;
  readonly senderLog: string;
  readonly receiverLog: string;
  /** What ITGSend printed. */
  readonly senderOutput: string;
}

/** The blocks `=== run K` ... `=== end run K` after a header line, in order; checks the announced count. */
function runBlocks(text: string, header: string): { run: number; body: string[] }[] {
  const lines = text.split("\n");
  const headerAt = lines.findIndex((l) => l.startsWith(header));
  if (headerAt < 0) throw new MeasurementOutputError(`no line starting "${header}"; the script did not run or is of another version`);
  const announced = Number(/ runs=(\d+)/.exec(lines[headerAt]!)?.[1]);
  const blocks: { run: number; body: string[] }[] = [];
  for (let i = headerAt + 1; i < lines.length; i++) {
    const open = /^=== run (\d+)$/.exec(lines[i]!);
    if (!open) continue;
    const run = Number(open[1]);
    const end = lines.indexOf(`=== end run ${run}`, i + 1);
    if (end < 0) throw new MeasurementOutputError(`run ${run} has no "=== end run ${run}" line (output cut short)`);
    blocks.push({ run, body: lines.slice(i + 1, end) });
    i = end;
  }
  if (!Number.isInteger(announced) || blocks.length !== announced) {
    throw new MeasurementOutputError(`the header "${header}" announces ${Number.isNaN(announced) ? "no count of" : announced} runs, the output holds ${blocks.length}`);
  }
  return blocks;
}

/** The runs in the runs' output, in order. */
export function parseMeasurementOutput(text: string): RunRecord[] {
  return runBlocks(text, OUTPUT_HEADER).map(({ run, body }) => {
    const fact = (key: string) => {
      const line = body.find((l) => l.startsWith(`${key}=`));
      if (line === undefined) throw new MeasurementOutputError(`run ${run} has no ${key}= line`);
      return line.slice(key.length + 1);
    };
    const records = Number(fact("records"));
    if (!Number.isInteger(records) || records < 0) throw new MeasurementOutputError(`run ${run}: records=${fact("records")}, accepted: a whole number`);
    const senderOutput = body.filter((l) => l.startsWith("itgsend> ")).map((l) => l.slice("itgsend> ".length)).join("\n");
    return { run, records, senderLog: fact("senderLog"), receiverLog: fact("receiverLog"), senderOutput };
  });
}

/** Each run's decoded logs, or why there are none, from the pairing's output. */
export function parsePairingOutput(text: string): Map<number, { decoded: CompactDecodedLog } | { failure: string }> {
  const out = new Map<number, { decoded: CompactDecodedLog } | { failure: string }>();
  for (const { run, body } of runBlocks(text, PAIRING_HEADER)) {
    const line = body.find((l) => l.startsWith("decoded ") || l.startsWith("failed "));
    if (line === undefined) throw new MeasurementOutputError(`pairing of run ${run} says neither "decoded" nor "failed"`);
    if (line.startsWith("failed ")) {
      out.set(run, { failure: line.slice("failed ".length) });
      continue;
    }
    let decoded: CompactDecodedLog;
    try {
      decoded = JSON.parse(line.slice("decoded ".length)) as CompactDecodedLog;
    } catch (err) {
      throw new MeasurementOutputError(`pairing of run ${run}: its decoded log is not JSON (${(err as Error).message})`);
    }
    if (!decoded || typeof decoded !== "object" || !decoded.total || !Array.isArray(decoded.flows)) {
      throw new MeasurementOutputError(`pairing of run ${run}: its decoded log has no flows and total`);
    }
    out.set(run, { decoded });
  }
  return out;
}

const NO_FIGURES = {
  packets: null, bytes: null, durationS: null, delayMinS: null, delayMaxS: null, delayMeanS: null, delayStdS: null, jitterS: null,
  p50S: null, p90S: null, p99S: null, p999S: null, bitrateKbps: null, packetRate: null, dropped: null, delaySource: null, excludedRecords: null,
} as const;

/** One run: judged by the campaign's rules from ITGSend's output and the decoded measured log. */
export function measuredRun(r: RunRecord, paired: { decoded: CompactDecodedLog } | { failure: string } | undefined, expected: FlowExpectation): MeasuredRun {
  if (paired === undefined) return { run: r.run, ok: false, reason: "the pairing did not report this run", records: r.records, ...NO_FIGURES };
  if ("failure" in paired) return { run: r.run, ok: false, reason: paired.failure, records: r.records, ...NO_FIGURES };
  const verdict = judgeFlow(r.senderOutput, fromCompact(paired.decoded), expected);
  const t = paired.decoded.total;
  return {
    run: r.run,
    ok: verdict.ok,
    ...(verdict.ok ? {} : { reason: verdict.reason }),
    records: r.records,
    packets: finite(t.packets),
    bytes: finite(t.bytes),
    durationS: finite(t.durationS),
    delayMinS: finite(t.delayMinS),
    delayMaxS: finite(t.delayMaxS),
    delayMeanS: finite(t.delayMeanS),
    delayStdS: finite(t.delayStdS),
    jitterS: finite(t.jitterS),
    p50S: finite(t.p50S),
    p90S: finite(t.p90S),
    p99S: finite(t.p99S),
    p999S: finite(t.p999S),
    bitrateKbps: finite(t.bitrateKbps),
    packetRate: finite(t.packetRate),
    dropped: finite(t.dropped),
    delaySource: t.delaySource,
    excludedRecords: finite(t.excludedRecords),
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
  /** What a complete run logs (measuredFlow(plan).expected). */
  readonly expected: FlowExpectation;
}

/** The stack output from both commands' stdout; undefined while either is not known (a first preview). */
export function measurementSummary(runsStdout: string | undefined, pairingStdout: string | undefined, id: MeasurementIdentity): MeasurementSummary | undefined {
  if (!runsStdout || !pairingStdout) return undefined;
  const paired = parsePairingOutput(pairingStdout);
  const runs = parseMeasurementOutput(runsStdout).map((r) => measuredRun(r, paired.get(r.run), id.expected));
  const { runId, profile, family } = id.measure;
  return { runId, profile, family, dataplane: id.dataplane, services: id.services, runs, acrossRuns: acrossRuns(profile, runs) };
}

// ---------------------------------------------------------------------------------------------
// The component.

export interface MeasurementArgs {
  readonly scenario: Scenario;
  readonly measure: MeasureSettings;
  /** The client host, where ITGSend runs. */
  readonly client: HostAccess;
  /** The router VM on the measured path. */
  readonly router: HostAccess;
  /** The worker, where the receiver's logs lie (reached over the management network). */
  readonly worker: HostAccess;
  /** The bastion's address: the pairing reaches client and worker through it. */
  readonly bastionAddress: pulumi.Input<string>;
  /** The Services and the receiver: the endpoint per family, and the apply the runs wait for. */
  readonly workloads: Pick<Workloads, "ditgEndpoints" | "applied">;
}

function managementAddress(host: HostAccess, role: string): pulumi.Output<string> {
  const m = host.addresses.management ?? {};
  const address = m.ipv4 ?? m.ipv6;
  if (!address) throw new Error(`the ${role} has no management address: the measurement's logs could not be fetched`);
  return address;
}

export class Measurement extends pulumi.ComponentResource {
  /** The runs' judged and decoded summary (stack output `measurement`). */
  readonly summary: pulumi.Output<MeasurementSummary | undefined>;
  readonly runs: command.remote.Command;
  readonly pairing: command.local.Command;

  constructor(name: string, args: MeasurementArgs, opts?: pulumi.ComponentResourceOptions) {
    super("testbed:measurement:Measurement", name, {}, opts);
    const s = args.scenario;
    const m = args.measure;
    const plan = args.workloads.ditgEndpoints.apply((endpoints) => {
      const endpoint = endpoints[m.family];
      if (!endpoint) {
        throw new Error(`testbed:measure.family: "${m.family}" has no D-ITG endpoint on the worker; accepted: one of ${Object.keys(endpoints).join(", ") || "(none)"}`);
      }
      return measurementPlan(s, m, endpoint);
    });
    const limits = { durationS: s.sweep.flowSeconds, measure: m };
    this.runs = new command.remote.Command(
      `${name}-ditg-runs`,
      {
        connection: pulumi.secret(pulumi.output(args.client.connection)),
        create: plan.apply((p) => measurementCreate(s, m, p)),
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
        customTimeouts: { create: measurementTimeout(limits), update: measurementTimeout(limits) },
      },
    );
    const hosts = pulumi
      .all([args.bastionAddress, managementAddress(args.client, "client"), managementAddress(args.worker, "worker")])
      .apply(([bastion, client, worker]): PairingHosts => ({ bastion, client, worker, user: s.openstack.sshUser }));
    const key = pulumi.secret(pulumi.output(args.client.connection).apply((c) => String(c.privateKey ?? "")));
    this.pairing = new command.local.Command(
      `${name}-ditg-pairing`,
      {
        create: pulumi.all([plan, hosts, this.runs.stdout]).apply(([p, h, runs]) => pairingScript(p, h, runs)),
        interpreter: ["/bin/bash", "-c"],
        dir: CHECKOUT_DIR,
        stdin: key,
        logging: "stderr",
        addPreviousOutputInEnv: false,
      },
      { parent: this, dependsOn: [this.runs], customTimeouts: { create: pairingTimeout(limits), update: pairingTimeout(limits) } },
    );
    const identity = plan.apply((p): MeasurementIdentity => ({ measure: m, dataplane: s.dataplane, services: s.services, expected: measuredFlow(p).expected }));
    this.summary = pulumi.all([this.runs.stdout, this.pairing.stdout, identity]).apply(([runs, pairing, id]) => measurementSummary(runs, pairing, id));
    this.registerOutputs({ summary: this.summary });
  }
}
