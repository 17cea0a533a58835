// The measurement's scripts: real shellcheck, the ITGSend flags the runs take from senderCommand, their
// triggers and time limits; the runs' blocks from real bash runs against a stand-in ITGSend that prints
// what it is told and writes a prepared log; the pairing's blocks from real bash runs against a
// stand-in scp, with the real decoder.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PLACEHOLDERS, parseScenario } from "../../scenario/schema.js";
import { flowLogs, LOG_BUFFER_RECORDS, senderCommand } from "../../measure/ditg-commands.js";
import { timeOfDay, type LogRecord } from "../../measure/ditg-log.js";
import {
  CHECKOUT_DIR,
  CLIENT_MEASUREMENT_DIR,
  measuredFlow,
  measurementCommandLine,
  measurementPlan,
  measurementRunsLimitS,
  measurementScript,
  measurementTimeout,
  measurementIdentity,
  measurementSummary,
  OUTPUT_HEADER,
  pairingScript,
  parseMeasurementOutput,
  parsePairingOutput,
  receiverNodeLog,
  runLogs,
  type MeasurementPlan,
} from "../../infra/measurement.js";
import { RECEIVER_LOG_DIR, RECEIVER_NODE_LOG_DIR } from "../../workloads/receiver.js";
import { writeLog } from "../measure/decode-itgdec.js";

const work = fs.mkdtempSync(path.join(os.tmpdir(), "measurement-script-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const scenarioWith = (measure: object, extra: object = {}) =>
  parseScenario({ dataplane: "iptables", services: 3000, ...PLACEHOLDERS, measure, ...extra });
const endpoint4 = { address: "198.18.1.21", signalingPort: 30900, dataPort: 31000, protocols: ["TCP", "UDP"] as const };
const endpoint6 = { address: "2001:2:0:20::21", signalingPort: 30900, dataPort: 31000, protocols: ["TCP", "UDP"] as const };

const latency = scenarioWith({ profile: "latency", family: "ipv4", runs: 3, runId: "r1" });
const throughput = scenarioWith({ profile: "throughput", family: "ipv6", runs: 2, runId: "tp-2" });
const latencyPlan = measurementPlan(latency, latency.measure!, endpoint4);
const throughputPlan = measurementPlan(throughput, throughput.measure!, endpoint6);

/** The ITGSend command line inside the script, as words. */
function sendWords(script: string): string[] {
  const line = script.split("\n").find((l) => l.includes("ITGSend -a"));
  if (!line) throw new Error("no ITGSend line in the script");
  const inner = /timeout "\$SEND_TIMEOUT_S" (.*) 2>&1\)"$/.exec(line.trim());
  if (!inner) throw new Error(`unexpected ITGSend line: ${line}`);
  return inner[1]!.split(" ");
}

describe("shellcheck", () => {
  const check = (name: string, text: string, shell: string) => {
    const file = path.join(work, `${name}.sh`);
    fs.writeFileSync(file, text);
    const r = spawnSync("shellcheck", [`--shell=${shell}`, "--severity=style", file], { encoding: "utf8" });
    expect(r.error).toBeUndefined();
    expect(r.stdout).toBe("");
    expect(r.status).toBe(0);
  };
  it.each([
    ["latency", latencyPlan],
    ["throughput", throughputPlan],
  ] as const)("the %s script passes (bash)", (name, plan) => check(name, measurementScript(plan), "bash"));

  it("the remote command line around it passes (POSIX sh, the login shell's common ground)", () => {
    check("command-line", measurementCommandLine(measurementScript(latencyPlan), 600), "sh");
  });

  it.each([
    ["latency", latencyPlan],
    ["throughput", throughputPlan],
  ] as const)("the %s pairing passes (bash)", (name, plan) => check(`pairing-${name}`, pairingScript(plan, { bastion: "203.0.113.9", client: "198.19.0.12", worker: "198.19.0.14", user: "ubuntu" }, "x"), "bash"));

  it("shellcheck does fail on a flawed script (the check can fail)", () => {
    const file = path.join(work, "flawed.sh");
    fs.writeFileSync(file, 'for f in $(ls); do echo $f; done\n');
    const r = spawnSync("shellcheck", ["--shell=bash", file], { encoding: "utf8" });
    expect(r.status).not.toBe(0);
  });
});

describe("the flags are senderCommand's", () => {
  it("latency: every flag of senderCommand for the scenario's profile, with the per-run logs left to the loop", () => {
    const words = sendWords(measurementScript(latencyPlan));
    const first = runLogs(latencyPlan, 1);
    const expected = senderCommand({ traffic: latency.traffic.latency, durationS: 30, target: endpoint4, logs: first, linkMbps: 500 }).argv;
    expect(words).toEqual(expected.map((a) => (a === first.senderLog ? '"$slog"' : a === first.receiverLog ? '"$rlog"' : a)));
    const option = (name: string) => words[words.indexOf(name) + 1];
    expect(option("-a")).toBe("198.18.1.21");
    expect(option("-Sdp")).toBe("30900");
    expect(option("-rp")).toBe("31000");
    expect(option("-m")).toBe("rttm");
    expect(option("-T")).toBe("UDP");
    expect(option("-p")).toBe("0");
    expect(option("-t")).toBe("30000");
    expect(option("-q")).toBe(String(LOG_BUFFER_RECORDS));
    expect(words).toContain("-poll");
    expect(option("-x")).toBe('"$rlog"');
    expect(option("-l")).toBe('"$slog"');
  });

  it("throughput over IPv6: TCP without Nagle, the scenario's message size, rate and flow length", () => {
    const s = scenarioWith({ profile: "throughput", family: "ipv6", runs: 1, runId: "x" }, { sweep: { flowSeconds: 12 } });
    const words = sendWords(measurementScript(measurementPlan(s, s.measure!, endpoint6)));
    const option = (name: string) => words[words.indexOf(name) + 1];
    expect(option("-a")).toBe("2001:2:0:20::21");
    expect(option("-T")).toBe("TCP");
    expect(words).toContain("-D");
    expect(option("-c")).toBe("64000");
    expect(option("-C")).toBe("2000");
    expect(option("-t")).toBe("12000");
    expect(option("-m")).toBe("owdm");
    expect(words).toContain("-poll");
    expect(words).toContain("-x");
  });

  it("run k logs where flowLogs puts run `<runId>-<profile>-<family>-s<services>-k`: sender log on the client, receiver log in the pod", () => {
    expect(latencyPlan.senderDir).toBe(CLIENT_MEASUREMENT_DIR);
    expect(latencyPlan.receiverDir).toBe(RECEIVER_LOG_DIR);
    expect(runLogs(latencyPlan, 2)).toEqual(flowLogs("r1-latency-ipv4-s3000-2", { senderDir: CLIENT_MEASUREMENT_DIR, receiverDir: RECEIVER_LOG_DIR }));
  });

  it("the expectation is senderCommand's: records at the profile's rate, the share of MIN_RECORD_SHARE", () => {
    expect(measuredFlow(latencyPlan).expected).toMatchObject({ records: 30000, minShare: 0.95 });
    // 64000-byte messages on a 500 Mbit/s link: about 976 a second get through, of 2000 offered.
    expect(measuredFlow(throughputPlan).expected).toMatchObject({ records: 29296, minShare: 0.9, linkMbps: 500 });
    // The campaign's choice of the measured log: the paired sender log for round trips, the receiver's otherwise.
    expect([measuredFlow(latencyPlan).measuredLog, measuredFlow(throughputPlan).measuredLog]).toEqual(["sender", "receiver"]);
  });

  it("refuses a target that is not an address, naming the key", () => {
    expect(() => measurementScript({ ...latencyPlan, target: { ...latencyPlan.target, address: "worker; rm -rf /" } })).toThrow(/target\.address.*accepted: an IPv4 or IPv6 address literal/);
  });

  it("the remote command waits for cloud-init, bounded, and passes the script unchanged to bash, itself bounded", () => {
    const script = measurementScript(latencyPlan);
    const line = measurementCommandLine(script, 600);
    expect(line).toMatch(/^status=0\ntimeout 1500 cloud-init status --wait >\/dev\/null \|\| status=\$\?\n/);
    // cloud-init and timeout as stand-ins: cloud-init done, timeout hands bash the script it was given.
    const bin = path.join(work, "line-bin");
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, "cloud-init"), "#!/bin/sh\nexit 2\n", { mode: 0o755 });
    fs.writeFileSync(path.join(bin, "timeout"), '#!/bin/sh\nwhile [ "$1" != bash ] && [ "$1" != cloud-init ]; do shift; done\nif [ "$1" = bash ]; then printf "%s" "$3"; else exec "$@"; fi\n', { mode: 0o755 });
    const r = spawnSync("sh", ["-c", line], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    expect(r.stdout).toBe(script);
    expect(r.status).toBe(0);
  });

  it("the remote command gives up on a cloud-init that never finishes, saying so", () => {
    const line = measurementCommandLine("echo never", 600).replace("timeout 1500 cloud-init", "timeout 1 cloud-init");
    const bin = path.join(work, "hung-bin");
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, "cloud-init"), "#!/bin/sh\nexec sleep 30\n", { mode: 0o755 });
    const r = spawnSync("sh", ["-c", line], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe("gave up after 1500 s waiting for cloud-init to finish on the client\n");
    expect(r.stdout).toBe("");
  });
});

describe("triggers and time limit", () => {
  it("re-run on the dataplane, the Service count, the run id, the profile, the family and the run count", () => {
    expect(measurementIdentity(latency, latency.measure!)).toEqual(["iptables", 3000, "r1", "latency", "ipv4", 3]);
    const changed = [
      measurementIdentity({ ...latency, dataplane: "ebpf" }, latency.measure!),
      measurementIdentity({ ...latency, services: 4000 }, latency.measure!),
      measurementIdentity(latency, { ...latency.measure!, runId: "r2" }),
      measurementIdentity(latency, { ...latency.measure!, profile: "throughput" }),
      measurementIdentity(latency, { ...latency.measure!, family: "ipv6" }),
      measurementIdentity(latency, { ...latency.measure!, runs: 4 }),
    ];
    for (const t of changed) expect(t).not.toEqual(measurementIdentity(latency, latency.measure!));
  });

  it("nothing in the script or the triggers depends on the clock", () => {
    expect(measurementScript(latencyPlan)).toBe(measurementScript(measurementPlan(latency, latency.measure!, endpoint4)));
    expect(measurementScript(latencyPlan)).not.toMatch(/\bdate\b/);
  });

  it("the runs' own limit covers every run at its limit; the command's timeout covers the limit and the wait for cloud-init", () => {
    // 3 runs x (30 s flow + 60 s grace + 30 s) = 360 s.
    expect(measurementRunsLimitS(latencyPlan)).toBe(360);
    expect(measurementRunsLimitS({ ...latencyPlan, measure: { ...latency.measure!, runs: 100 } })).toBe(12000);
    // 1500 s for cloud-init + 360 s, the kill grace and room for SSH: 33 minutes.
    expect(measurementTimeout(latencyPlan)).toBe("33m");
  });
});

// ---------------------------------------------------------------------------------------------
// The runs' blocks, from real bash runs with a stand-in ITGSend.

const stubDir = path.join(work, "bin");
const STUB_ITGSEND = `#!/bin/sh
# Stand-in for ITGSend: notes its log arguments, prints STUB_SAY, copies STUB_LOG to the -l log, exits STUB_RC.
log=""; rlog=""
while [ $# -gt 0 ]; do
  case "$1" in
    -l) log="$2"; shift ;;
    -x) rlog="$2"; shift ;;
  esac
  shift
done
echo "$log $rlog" >>"$STUB_CALLS"
printf '%b\\n' "$STUB_SAY"
if [ -n "$STUB_LOG" ]; then cat "$STUB_LOG" >"$log"; fi
exit "$STUB_RC"
`;
const FINISHED = "ITGSend version 2.8.1 (r1023)\\nStarted sending packets of flow ID: 1\\nFinished sending packets of flow ID: 1";

/** The two logs of an rttm flow of n one-millisecond round trips. */
async function flowLogsOf(name: string, n: number): Promise<{ sender: string; receiver: string }> {
  const start = Date.UTC(2025, 2, 1, 10, 0, 0) * 1000;
  const records = (rx: (i: number) => number): LogRecord[] =>
    Array.from({ length: n }, (_, i) => ({
      flowId: 1, seqNum: i + 1, srcAddress: "198.18.0.10", srcPort: 40000, destAddress: "198.18.1.21", destPort: 31000, tx: timeOfDay(start + i * 1000), rx: timeOfDay(rx(i)), size: 512,
    }));
  const sender = path.join(work, `${name}.slog`);
  const receiver = path.join(work, `${name}.rlog`);
  await writeLog(sender, records((i) => start + i * 1000 + 1000 + (i % 7) * 10));
  await writeLog(receiver, records((i) => start + i * 1000 + 500));
  return { sender, receiver };
}

const stubScenario = scenarioWith({ profile: "latency", family: "ipv4", runs: 2, runId: "stub" }, { sweep: { flowSeconds: 1 } });
const stubPlan = (dir: string): MeasurementPlan => ({
  ...measurementPlan(stubScenario, stubScenario.measure!, endpoint4),
  senderDir: dir,
  receiverDir: "/logs",
});

function runWithStub(name: string, stub: { say: string; log?: string; rc: number }, before?: (dir: string) => void) {
  const dir = path.join(work, name);
  fs.mkdirSync(dir, { recursive: true });
  before?.(dir);
  const calls = path.join(dir, "calls");
  const r = spawnSync("bash", ["-c", measurementScript(stubPlan(dir))], {
    encoding: "utf8",
    env: { ...process.env, PATH: `${stubDir}:${process.env.PATH}`, STUB_SAY: stub.say, STUB_LOG: stub.log ?? "", STUB_RC: String(stub.rc), STUB_CALLS: calls },
  });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status, calls: fs.existsSync(calls) ? fs.readFileSync(calls, "utf8").trim().split("\n") : [] };
}

describe("the runs' blocks: what each run sent and logged, judged later", () => {
  let logs: { sender: string; receiver: string };
  beforeAll(async () => {
    fs.mkdirSync(stubDir, { recursive: true });
    fs.writeFileSync(path.join(stubDir, "ITGSend"), STUB_ITGSEND, { mode: 0o755 });
    logs = await flowLogsOf("full", 1000);
  });

  it("one block per run: the sender log's records, where both logs lie, what ITGSend said (whatever its exit code)", () => {
    const r = runWithStub("rc1", { say: FINISHED, log: logs.sender, rc: 1 });
    expect(r.status).toBe(0);
    const plan = stubPlan(path.join(work, "rc1"));
    expect(parseMeasurementOutput(r.stdout)).toEqual(
      [1, 2].map((run) => ({
        run,
        records: 1000,
        senderLog: runLogs(plan, run).senderLog,
        receiverLog: receiverNodeLog(plan, run),
        senderOutput: FINISHED.replaceAll("\\n", "\n"),
      })),
    );
    expect(receiverNodeLog(plan, 2)).toBe(`${RECEIVER_NODE_LOG_DIR}/stub-latency-ipv4-s3000-2.rlog`);
    expect(r.stderr).toContain("run 2 of 2: sent, 1000 records in");
  });

  it("each run logs to its own names, as runLogs gives them", () => {
    const r = runWithStub("names", { say: FINISHED, log: logs.sender, rc: 0 });
    const plan = stubPlan(path.join(work, "names"));
    expect(r.calls).toEqual([1, 2].map((k) => `${runLogs(plan, k).senderLog} ${runLogs(plan, k).receiverLog}`));
  });

  it("a stale log of the same name does not count: no log, no records", () => {
    const r = runWithStub("stale", { say: FINISHED, rc: 0 }, (dir) => {
      for (const k of [1, 2]) fs.copyFileSync(logs.sender, runLogs(stubPlan(dir), k).senderLog);
    });
    expect(parseMeasurementOutput(r.stdout).map((x) => x.records)).toEqual([0, 0]);
  });

  it("refuses to start without ITGSend on the host", () => {
    const dir = path.join(work, "no-itgsend");
    fs.mkdirSync(dir, { recursive: true });
    const bin = path.join(dir, "bin");
    fs.mkdirSync(bin);
    for (const tool of ["timeout", "mkdir", "rm", "stat", "sed"]) {
      const found = spawnSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" }).stdout.trim();
      fs.symlinkSync(found, path.join(bin, tool));
    }
    const r = spawnSync("/bin/bash", ["-c", measurementScript(stubPlan(dir))], { encoding: "utf8", env: { PATH: bin } });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("ITGSend is not installed on this host");
    expect(r.stdout).toBe("");
  });
});

// ---------------------------------------------------------------------------------------------
// The pairing's blocks, from real bash runs with a stand-in scp and the real decoder.

describe("the pairing: each run's logs fetched through the bastion and decoded by the campaign's code", () => {
  const hosts = { bastion: "203.0.113.9", client: "198.19.0.12", worker: "198.19.0.14", user: "ubuntu" };
  let logs: { sender: string; receiver: string };
  beforeAll(async () => {
    logs = await flowLogsOf("pairing", 1000);
  });

  /**
   * scp as a stand-in: records its arguments and the ssh configuration and key it was given, and
   * copies "HOST:PATH" from FILES (lines "HOST:PATH LOCAL"); an unknown one is a missing file.
   */
  function runPairing(name: string, plan: MeasurementPlan, files: Record<string, string>) {
    const dir = path.join(work, name);
    const bin = path.join(dir, "bin");
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(dir, "files"), Object.entries(files).map(([remote, local]) => `${remote} ${local}\n`).join(""));
    fs.writeFileSync(
      path.join(bin, "scp"),
      `#!/usr/bin/env bash
config="$2"
{ echo "$*"; cat "$config"; echo "key: $(stat -c %a "$(awk '$1 == "IdentityFile" { print $2 }' "$config")") $(cat "$(awk '$1 == "IdentityFile" { print $2 }' "$config")")"; } >>${JSON.stringify(path.join(dir, "calls"))}
local_copy="$(awk -v r="$4" '$1 == r { print $2 }' ${JSON.stringify(path.join(dir, "files"))})"
if [ -z "$local_copy" ]; then echo "scp: $4: No such file or directory" >&2; exit 1; fi
cp "$local_copy" "$5"
`,
      { mode: 0o755 },
    );
    const r = spawnSync("bash", ["-c", pairingScript(plan, hosts, "runs output")], {
      encoding: "utf8",
      cwd: CHECKOUT_DIR,
      input: "-----BEGIN OPENSSH PRIVATE KEY-----\nstand-in\n-----END OPENSSH PRIVATE KEY-----\n",
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
      timeout: 120_000,
    });
    return { ...r, calls: fs.existsSync(path.join(dir, "calls")) ? fs.readFileSync(path.join(dir, "calls"), "utf8") : "" };
  }

  it("a round trip: the client's log paired with the worker's receiver log; the key only in a private file", () => {
    const plan = { ...latencyPlan, measure: { ...latency.measure!, runs: 2 } };
    const files = {
      [`client:${runLogs(plan, 1).senderLog}`]: logs.sender,
      [`worker:${receiverNodeLog(plan, 1)}`]: logs.receiver,
      [`client:${runLogs(plan, 2).senderLog}`]: logs.sender,
    };
    const r = runPairing("round-trip", plan, files);
    expect(r.status).toBe(0);
    const paired = parsePairingOutput(r.stdout);
    const first = paired.get(1)!;
    expect("decoded" in first && first.decoded.total).toMatchObject({ packets: 1000, delaySource: "paired", excludedRecords: 0 });
    // Round trips from the receiver's send stamps: the sender log's rx minus the receiver log's tx.
    expect("decoded" in first && first.decoded.total.delayMinS).toBeCloseTo(0.001, 9);
    expect(paired.get(2)).toEqual({ failure: expect.stringMatching(new RegExp(`^fetching worker:${receiverNodeLog(plan, 2)} failed: scp: worker:.* No such file or directory`)) });
    expect(r.stderr).toBe("run 1 of 2: paired\nrun 2 of 2: not paired\n");
    // Through the bastion, batch mode, the session's own known hosts; the key readable by its owner only.
    expect(r.calls).toContain(`-F `);
    expect(r.calls).toMatch(/Host client\n  HostName 198\.19\.0\.12\n  ProxyJump bastion\n/);
    expect(r.calls).toMatch(/Host bastion\n  HostName 203\.0\.113\.9\n  Port 22\n/);
    expect(r.calls).toMatch(/  User ubuntu\n/);
    expect(r.calls).toMatch(/  BatchMode yes\n/);
    expect(r.calls).toContain("key: 600 -----BEGIN OPENSSH PRIVATE KEY-----");
    expect(r.stdout).not.toContain("PRIVATE KEY");
  });

  it("a one-way flow: the worker's receiver log alone, what arrived", () => {
    const plan = { ...throughputPlan, measure: { ...throughput.measure!, runs: 1 } };
    const r = runPairing("one-way", plan, { [`worker:${receiverNodeLog(plan, 1)}`]: logs.receiver });
    expect(r.status).toBe(0);
    const first = parsePairingOutput(r.stdout).get(1)!;
    expect("decoded" in first && first.decoded.total).toMatchObject({ packets: 1000, delaySource: "sender" });
    expect(r.calls.split("\n").filter((l) => l.startsWith("-F ")).map((l) => l.split(" ")[3])).toEqual([`worker:${receiverNodeLog(plan, 1)}`]);
  });

  it("a log the decoder refuses is a failed run, with the decoder's words", () => {
    const plan = { ...throughputPlan, measure: { ...throughput.measure!, runs: 1 } };
    const junk = path.join(work, "junk.rlog");
    fs.writeFileSync(junk, "not a D-ITG log");
    const r = runPairing("junk", plan, { [`worker:${receiverNodeLog(plan, 1)}`]: junk });
    expect(r.status).toBe(0);
    expect(parsePairingOutput(r.stdout).get(1)).toEqual({ failure: expect.stringMatching(/^decoding run 1: .*/) });
  });

  it("the two outputs make the stack's measurement, judged by the campaign's rules", () => {
    const plan = { ...latencyPlan, measure: { ...latency.measure!, runs: 1 }, durationS: 1 };
    const r = runPairing("summary", plan, { [`client:${runLogs(plan, 1).senderLog}`]: logs.sender, [`worker:${receiverNodeLog(plan, 1)}`]: logs.receiver });
    const runs = `${OUTPUT_HEADER} runId=r1 profile=latency family=ipv4 runs=1 target=198.18.1.21\n=== run 1\nrecords=1000\nsenderLog=${runLogs(plan, 1).senderLog}\nreceiverLog=${receiverNodeLog(plan, 1)}\nitgsend> Finished sending packets of flow ID: 1\n=== end run 1\n`;
    const summary = measurementSummary(runs, r.stdout, { measure: plan.measure, dataplane: "iptables", services: 3000, expected: measuredFlow(plan).expected })!;
    expect(summary.runs[0]).toMatchObject({ run: 1, ok: true, packets: 1000, delaySource: "paired" });
    expect(summary.acrossRuns).toMatchObject({ metric: "delayMeanS", okRuns: 1 });
  });
});
