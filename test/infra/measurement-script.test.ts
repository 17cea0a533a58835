// The measurement script of the stack: real shellcheck, the ITGSend flags it takes from senderCommand,
// its triggers and time limit, and its verdicts, from real bash runs against a stand-in ITGSend that
// prints what it is told and writes a prepared log, decoded by the real ITGDec.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PLACEHOLDERS, parseScenario } from "../../scenario/schema.js";
import { flowLogs, LOG_BUFFER_RECORDS, senderCommand } from "../../measure/ditg-commands.js";
import { timeOfDay, type LogRecord } from "../../measure/ditg-log.js";
import {
  CLIENT_MEASUREMENT_DIR,
  measurementCommandLine,
  measurementPlan,
  measurementScript,
  measurementTimeoutMinutes,
  measurementIdentity,
  parseMeasurementOutput,
  runLogs,
  type MeasurementPlan,
} from "../../infra/measurement.js";
import { RECEIVER_LOG_DIR } from "../../workloads/receiver.js";
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
    check("command-line", measurementCommandLine(measurementScript(latencyPlan)), "sh");
  });

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
    const script = measurementScript(latencyPlan);
    expect(script).toContain("EXPECTED_RECORDS='30000'");
    expect(script).toContain("MIN_RECORDS='28500'");
    // 64000-byte messages on a 500 Mbit/s link: about 976 a second get through, of 2000 offered.
    const tp = measurementScript(throughputPlan);
    expect(tp).toContain("EXPECTED_RECORDS='29296'");
    expect(tp).toContain("MIN_RECORDS='26367'");
  });

  it("refuses a target that is not an address, naming the key", () => {
    expect(() => measurementScript({ ...latencyPlan, target: { ...latencyPlan.target, address: "worker; rm -rf /" } })).toThrow(/target\.address.*accepted: an IPv4 or IPv6 address literal/);
  });

  it("the remote command waits for cloud-init and passes the script unchanged to bash", () => {
    const script = measurementScript(latencyPlan);
    const line = measurementCommandLine(script);
    expect(line.split("\n")[0]).toMatch(/^cloud-init status --wait >\/dev\/null \|\| \[ \$\? -eq 2 \]/);
    const r = spawnSync("sh", ["-c", `bash() { shift; printf '%s' "$1"; }\n${line.slice(line.indexOf("\n") + 1).replace(/^exec /, "")}`], { encoding: "utf8" });
    expect(r.stdout).toBe(script);
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

  it("the time limit covers every run at its own limit plus the wait for cloud-init", () => {
    // 3 runs x (30 s flow + 60 s grace + 60 s decode) = 7.5 min, rounded up, plus 30.
    expect(measurementTimeoutMinutes(latencyPlan)).toBe(38);
    expect(measurementTimeoutMinutes({ ...latencyPlan, measure: { ...latency.measure!, runs: 100 } })).toBe(280);
  });
});

// ---------------------------------------------------------------------------------------------
// Verdicts from real bash runs with a stand-in ITGSend and the real ITGDec.

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

/** A sender log of `n` one-millisecond round trips, of one flow or of two. */
async function senderLog(name: string, n: number, flows = 1): Promise<string> {
  const start = Date.UTC(2025, 2, 1, 10, 0, 0) * 1000;
  const records: LogRecord[] = Array.from({ length: n }, (_, i) => ({
    flowId: 1 + (i % flows),
    seqNum: Math.floor(i / flows) + 1,
    srcAddress: "198.18.0.10",
    srcPort: 40000,
    destAddress: "198.18.1.21",
    destPort: 31000,
    tx: timeOfDay(start + i * 1000),
    rx: timeOfDay(start + i * 1000 + 1000 + (i % 7) * 10),
    size: 512,
  }));
  const file = path.join(work, `${name}.log`);
  await writeLog(file, records);
  return file;
}

const stubScenario = scenarioWith({ profile: "latency", family: "ipv4", runs: 2, runId: "stub" }, { sweep: { flowSeconds: 1 } });
const stubPlan = (dir: string): MeasurementPlan => ({
  ...measurementPlan(stubScenario, stubScenario.measure!, endpoint4),
  senderDir: dir,
  receiverDir: "/logs",
});

interface StubRun {
  readonly stdout: string;
  readonly stderr: string;
  readonly status: number | null;
  readonly calls: string[];
}

function runWithStub(name: string, stub: { say: string; log?: string; rc: number; path?: string }, before?: (dir: string) => void): StubRun {
  const dir = path.join(work, name);
  fs.mkdirSync(dir, { recursive: true });
  before?.(dir);
  const calls = path.join(dir, "calls");
  const r = spawnSync("bash", ["-c", measurementScript(stubPlan(dir))], {
    encoding: "utf8",
    env: { ...process.env, PATH: `${stub.path ? `${stub.path}:` : ""}${stubDir}:${process.env.PATH}`, STUB_SAY: stub.say, STUB_LOG: stub.log ?? "", STUB_RC: String(stub.rc), STUB_CALLS: calls },
  });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status, calls: fs.existsSync(calls) ? fs.readFileSync(calls, "utf8").trim().split("\n") : [] };
}

describe("verdicts, from what was printed and logged", () => {
  let full: string;
  let short: string;
  let twoFlows: string;
  beforeAll(async () => {
    fs.mkdirSync(stubDir, { recursive: true });
    fs.writeFileSync(path.join(stubDir, "ITGSend"), STUB_ITGSEND, { mode: 0o755 });
    // 1 s at 1000 pkt/s: 1000 expected, 950 needed.
    full = await senderLog("full", 1000);
    short = await senderLog("short", 600);
    twoFlows = await senderLog("two-flows", 1000, 2);
  });

  it("a complete log passes even when ITGSend exits non-zero; the ITGDec summary comes along", () => {
    const r = runWithStub("rc1", { say: FINISHED, log: full, rc: 1 });
    expect(r.status).toBe(0);
    const runs = parseMeasurementOutput(r.stdout);
    expect(runs.map((x) => x.ok)).toEqual([true, true]);
    expect(runs[0]).toMatchObject({ run: 1, records: 1000, packets: 1000, bytes: 512_000, dropped: 0, delayMinS: 0.001, delayMaxS: 0.00106 });
    expect(r.stderr).toContain("run 2 of 2: ok");
  });

  it("each run logs to its own names, as runLogs gives them", () => {
    const r = runWithStub("names", { say: FINISHED, log: full, rc: 0 });
    const plan = stubPlan(path.join(work, "names"));
    expect(r.calls).toEqual([1, 2].map((k) => `${runLogs(plan, k).senderLog} ${runLogs(plan, k).receiverLog}`));
  });

  it("an error printed by ITGSend fails the run although it exits 0 (receiver-side bind error, B3)", () => {
    const r = runWithStub("bind", { say: "Error on bind to receiver side\\nError at Receiver side\\nFinished sending packets of flow ID: 1", log: full, rc: 0 });
    const runs = parseMeasurementOutput(r.stdout);
    expect(runs.map((x) => x.ok)).toEqual([false, false]);
    expect(runs[0]!.reason).toBe("ITGSend reported an error: Error on bind to receiver side");
    // The log was decoded all the same: the numbers are there for a look.
    expect(runs[0]!.packets).toBe(1000);
  });

  it("too few records fail the run, with the counts", () => {
    const runs = parseMeasurementOutput(runWithStub("short", { say: FINISHED, log: short, rc: 0 }).stdout);
    expect(runs[0]).toMatchObject({ ok: false, records: 600, packets: 600 });
    expect(runs[0]!.reason).toMatch(/has 600 records, expected at least 950 of 1000$/);
  });

  it("no 'Finished sending packets' (killed or crashed) fails the run", () => {
    const runs = parseMeasurementOutput(runWithStub("killed", { say: "Started sending packets of flow ID: 1", log: full, rc: 0 }).stdout);
    expect(runs[0]!.ok).toBe(false);
    expect(runs[0]!.reason).toMatch(/did not report 'Finished sending packets'/);
  });

  it("two flows in one log fail the run", () => {
    const runs = parseMeasurementOutput(runWithStub("two-flows", { say: FINISHED, log: twoFlows, rc: 0 }).stdout);
    expect(runs[0]!.ok).toBe(false);
    expect(runs[0]!.reason).toMatch(/holds 2 flows, expected one/);
  });

  it("no log: failed, no figures; a stale log of the same name does not count", () => {
    const r = runWithStub("stale", { say: FINISHED, rc: 0 }, (dir) => {
      for (const k of [1, 2]) fs.copyFileSync(full, runLogs(stubPlan(dir), k).senderLog);
    });
    const runs = parseMeasurementOutput(r.stdout);
    expect(runs[0]).toMatchObject({ ok: false, records: 0, packets: null, bitrateKbps: null });
    expect(runs[0]!.reason).toMatch(/holds no records$/);
  });

  it("a log ITGDec prints nothing for fails the run", () => {
    const silent = path.join(work, "silent-itgdec");
    fs.mkdirSync(silent, { recursive: true });
    fs.writeFileSync(path.join(silent, "ITGDec"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    const runs = parseMeasurementOutput(runWithStub("silent", { say: FINISHED, log: full, rc: 0, path: silent }).stdout);
    expect(runs[0]).toMatchObject({ ok: false, records: 1000, packets: null });
    expect(runs[0]!.reason).toMatch(/^ITGDec printed no summary of .*-1\.slog$/);
  });

  it("refuses to start without ITGDec on the host", () => {
    const dir = path.join(work, "no-itgdec");
    fs.mkdirSync(dir, { recursive: true });
    // PATH with the stand-in ITGSend and the basic tools, but no ITGDec.
    const bin = path.join(dir, "bin");
    fs.mkdirSync(bin);
    for (const tool of ["timeout", "mkdir", "rm", "stat", "sed", "awk", "grep", "cat"]) {
      const found = spawnSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" }).stdout.trim();
      fs.symlinkSync(found, path.join(bin, tool));
    }
    fs.symlinkSync(path.join(stubDir, "ITGSend"), path.join(bin, "ITGSend"));
    const r = spawnSync("/bin/bash", ["-c", measurementScript(stubPlan(dir))], { encoding: "utf8", env: { PATH: bin } });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("ITGDec is not installed on this host");
    expect(r.stdout).toBe("");
  });
});
