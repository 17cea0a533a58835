// The D-ITG command builders and the flow verdict, without running D-ITG.
import { testScenario } from "../fixtures/scenario.js";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  expectedRecords,
  flowLogs,
  judgeFlow,
  LOG_BUFFER_RECORDS,
  MIN_RECORD_SHARE,
  receiverCommand,
  senderCommand,
  shellCommand,
} from "../../measure/ditg-commands.js";
import { decodeLogFile, timeOfDay, type DecodedLog } from "../../measure/ditg-log.js";
import { decodePairedLogs } from "../../measure/ditg-pairing.js";
import { writeLog } from "./decode-itgdec.js";
import { craftedPackets, craftedRttmLogs } from "./round-trips.js";

const scenario = testScenario({ dataplane: "ebpf" });
const target = { address: "198.18.1.10", signalingPort: 30900, dataPort: 31000 };
const logs = flowLogs("iptables-ipv4-1000-r7", { senderDir: "/var/lib/testbed/runs", receiverDir: "/logs" });

/** The value after an option, or undefined. */
const option = (argv: string[], name: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);

describe("senderCommand", () => {
  const throughput = senderCommand({
    traffic: scenario.traffic.throughput,
    durationS: scenario.sweep.flowSeconds,
    target,
    logs,
    linkMbps: scenario.linkMbps,
  });
  const latency = senderCommand({
    traffic: scenario.traffic.latency,
    durationS: scenario.sweep.flowSeconds,
    target: { ...target, address: "2001:2:0:20::10" },
    logs,
    linkMbps: scenario.linkMbps,
  });

  it("TCP throughput: paced with -poll, Nagle off, large messages, explicit -p 0, -q 1000, one-way meter", () => {
    const a = throughput.argv;
    expect(a[0]).toBe("ITGSend");
    expect(option(a, "-a")).toBe("198.18.1.10");
    expect(option(a, "-Sdp")).toBe("30900");
    expect(option(a, "-rp")).toBe("31000");
    expect(option(a, "-T")).toBe("TCP");
    expect(a).toContain("-D");
    expect(a).toContain("-poll");
    expect(option(a, "-p")).toBe("0");
    expect(option(a, "-q")).toBe(String(LOG_BUFFER_RECORDS));
    expect(option(a, "-c")).toBe("64000");
    expect(option(a, "-C")).toBe("2000");
    expect(option(a, "-t")).toBe("30000");
    expect(option(a, "-m")).toBe("owdm");
    expect(throughput.measuredLog).toBe("receiver");
  });

  it("UDP latency: round-trip meter measured on the sender's log, no -D", () => {
    const a = latency.argv;
    expect(option(a, "-a")).toBe("2001:2:0:20::10");
    expect(option(a, "-T")).toBe("UDP");
    expect(option(a, "-m")).toBe("rttm");
    expect(a).not.toContain("-D");
    expect(option(a, "-p")).toBe("0");
    expect(a).toContain("-poll");
    expect(latency.measuredLog).toBe("sender");
  });

  it("every flow names both logs, so flows with and without -x can never share a receiver (B2)", () => {
    for (const cmd of [throughput, latency]) {
      expect(option(cmd.argv, "-x")).toBe("/logs/iptables-ipv4-1000-r7.rlog");
      expect(option(cmd.argv, "-l")).toBe("/var/lib/testbed/runs/iptables-ipv4-1000-r7.slog");
      expect(cmd.argv.filter((x) => x === "-x")).toHaveLength(1);
    }
  });

  it("expects rate × duration records, capped by the link for the throughput profile", () => {
    // 500 Mbit/s over 64000-byte messages: 976.5 messages/s, below the offered 2000.
    expect(throughput.expected).toEqual({ records: Math.floor((500e6 / 8 / 64000) * 30), minShare: MIN_RECORD_SHARE.linkLimited, linkMbps: 500, durationS: 30 });
    expect(latency.expected).toEqual({ records: 30_000, minShare: MIN_RECORD_SHARE.paced, durationS: 30 });
    expect(expectedRecords(scenario.traffic.throughput, 10, 0)).toEqual({ records: 20_000, minShare: MIN_RECORD_SHARE.paced, durationS: 10 });
  });

  it("refuses bad input, naming the key, the value and what is accepted", () => {
    const base = { traffic: scenario.traffic.latency, durationS: 2, target, logs, linkMbps: 0 };
    expect(() => senderCommand({ ...base, target: { ...target, address: "node-1" } })).toThrow(
      /^target\.address: "node-1" is not accepted; accepted: an IPv4 or IPv6 address literal/,
    );
    expect(() => senderCommand({ ...base, target: { ...target, dataPort: 70000 } })).toThrow(/^target\.dataPort: 70000 .*1 to 65535/);
    expect(() => senderCommand({ ...base, target: { ...target, signalingPort: 1.5 } })).toThrow(/^target\.signalingPort: 1\.5/);
    expect(() => senderCommand({ ...base, durationS: 0 })).toThrow(/^durationS: 0 .*1 to 3600/);
    expect(() => senderCommand({ ...base, traffic: { ...base.traffic, payloadBytes: 65000 } })).toThrow(/^traffic\.payloadBytes: 65000 .*64000/);
  });
});

describe("flowLogs", () => {
  it("names both logs after the run id, so two runs never share (and truncate) a log", () => {
    const a = flowLogs("run-1", { senderDir: "/tmp/s/", receiverDir: "/tmp/r" });
    const b = flowLogs("run-2", { senderDir: "/tmp/s/", receiverDir: "/tmp/r" });
    expect(a).toEqual({ senderLog: "/tmp/s/run-1.slog", receiverLog: "/tmp/r/run-1.rlog" });
    expect(new Set([a.senderLog, a.receiverLog, b.senderLog, b.receiverLog]).size).toBe(4);
  });

  it("refuses run ids and directories that would not survive a shell or D-ITG's signaling", () => {
    expect(() => flowLogs("a b", { senderDir: "/s", receiverDir: "/r" })).toThrow(/^runId: "a b" is not accepted/);
    expect(() => flowLogs("../x", { senderDir: "/s", receiverDir: "/r" })).toThrow(/^runId/);
    expect(() => flowLogs("ok", { senderDir: "relative", receiverDir: "/r" })).toThrow(/^senderDir: "relative" .*absolute/);
    expect(() => flowLogs("ok", { senderDir: "/s", receiverDir: "/r'; rm -rf /" })).toThrow(/^receiverDir/);
  });
});

describe("receiverCommand", () => {
  it("binds the family's wildcard address, ignores SIGPIPE across exec, and never logs with -l", () => {
    expect(receiverCommand({ signalingPort: 9000, family: "ipv4" })).toEqual(["sh", "-c", "trap '' PIPE; exec ITGRecv -Sp 9000 -a 0.0.0.0 -q 1000"]);
    expect(receiverCommand({ signalingPort: 9001, family: "ipv6" })).toEqual(["sh", "-c", "trap '' PIPE; exec ITGRecv -Sp 9001 -a :: -q 1000"]);
  });

  it("refuses a bad port or family", () => {
    expect(() => receiverCommand({ signalingPort: 0, family: "ipv4" })).toThrow(/^signalingPort: 0/);
    expect(() => receiverCommand({ signalingPort: 9000, family: "ipx" as "ipv4" })).toThrow(/^family: "ipx" .*"ipv4" or "ipv6"/);
  });

  it("the shell line really ignores SIGPIPE in the exec'd program", () => {
    const line = receiverCommand({ signalingPort: 9000, family: "ipv4" })[2]!.replace(/exec ITGRecv.*/, "exec grep SigIgn /proc/self/status");
    const sigIgn = BigInt(`0x${execFileSync("sh", ["-c", line], { encoding: "utf8" }).split(/\s+/)[1]}`);
    expect(sigIgn & (1n << 12n)).toBe(1n << 12n); // SIGPIPE is signal 13: bit 12
  });
});

describe("shellCommand", () => {
  it("quotes each argument so a shell gives back the same argv", () => {
    const argv = ["printf", "%s\\n", "plain", "with space", "it's", "$HOME", "a;b", "", "::1"];
    const out = execFileSync("sh", ["-c", shellCommand(argv)], { encoding: "utf8" });
    expect(out.split("\n").slice(0, -1)).toEqual(argv.slice(2));
  });
});

describe("judgeFlow", () => {
  let dir: string;
  const finished = "ITGSend version 2.8.1 (r1023)\nStarted sending packets of flow ID: 1\nFinished sending packets of flow ID: 1\n";
  const expected = { records: 100, minShare: 0.95 };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "judge-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * A decoded log of `n` records per flow id given, 10 ms apart unless `gapUs` says otherwise; `seqOf`
   * numbers them (default 1..n, nothing lost).
   */
  async function decoded(
    name: string,
    n: number,
    { flowIds = [1], badTime = false, seqOf = (i: number) => i + 1, gapUs = 10_000 }: { flowIds?: number[]; badTime?: boolean; seqOf?: (i: number) => number; gapUs?: number } = {},
  ): Promise<DecodedLog> {
    const t0 = Date.UTC(2026, 0, 5, 12) * 1000;
    const records = flowIds.flatMap((flowId) =>
      Array.from({ length: n }, (_, i) => ({
        flowId,
        seqNum: seqOf(i),
        srcAddress: "198.18.0.10",
        srcPort: 40000,
        destAddress: "0.0.0.0",
        destPort: 31000,
        tx: timeOfDay(t0 + i * gapUs),
        rx: badTime && i === 0 ? { hour: 30, minute: 0, second: 0 } : timeOfDay(t0 + i * gapUs + 150),
        size: 512,
      })),
    );
    const path = join(dir, name);
    await writeLog(path, records);
    return decodeLogFile(path);
  }

  it("accepts a finished flow with enough records", async () => {
    expect(judgeFlow(finished, await decoded("ok.log", 96), expected)).toEqual({ ok: true });
  });

  it("fails on error text even with a full log and whatever the exit code was", async () => {
    const out = "Error on bind to receiver side\nError at Receiver side\nFinished sending packets of flow ID: 1\n";
    expect(judgeFlow(out, await decoded("full.log", 100), expected)).toEqual({
      ok: false,
      reason: "ITGSend reported an error: Error on bind to receiver side",
    });
    const connect = "Connect error in createTransportChan(): Connection refused\n";
    expect(judgeFlow(connect, await decoded("full2.log", 100), expected)).toMatchObject({ ok: false, reason: expect.stringContaining("Connection refused") });
  });

  it("fails when the sender never finished", async () => {
    expect(judgeFlow("Started sending packets of flow ID: 1\n", await decoded("cut.log", 100), expected)).toMatchObject({
      ok: false,
      reason: expect.stringContaining("did not report 'Finished sending packets'"),
    });
  });

  it("fails on too few records, an empty log, two flows in one log, or corrupt records", async () => {
    expect(judgeFlow(finished, await decoded("short.log", 94), expected)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/has 94 records, expected at least 95 \(95% of 100\), none lost on the path$/),
    });
    expect(judgeFlow(finished, await decoded("empty.log", 0), expected)).toMatchObject({ ok: false, reason: expect.stringContaining("holds no records") });
    expect(judgeFlow(finished, await decoded("two.log", 100, { flowIds: [1, 2] }), expected)).toMatchObject({
      ok: false,
      reason: expect.stringContaining("holds 2 flows, expected one"),
    });
    expect(judgeFlow(finished, await decoded("bad.log", 100, { badTime: true }), expected)).toMatchObject({
      ok: false,
      reason: expect.stringContaining("1 records with out-of-range time fields"),
    });
  });

  it("tells a sender that fell behind its rate (a busy host) from a flow the path did not carry whole (a broken pipeline)", async () => {
    // A 1-second flow of 100 packets: the records of a thinned-out flow still span it.
    const oneSecond = { ...expected, durationS: 1 };
    const spread = (n: number) => Math.floor(990_000 / (n - 1));
    // 80 packets sent over the whole second, numbered without gaps: ITGSend never sent the other 20.
    const behind = judgeFlow(finished, await decoded("behind.log", 80, { gapUs: spread(80) }), oneSecond);
    expect(behind).toEqual({
      ok: false,
      reason: `ITGSend could not hold its rate: sent 80 of 100 scheduled (a host too busy to keep pace); ${join(dir, "behind.log")} has 80 records, expected at least 95 (95% of 100), none lost on the path`,
    });
    // Every fifth packet lost on the way: the records' sequence numbers have gaps.
    const lossy = judgeFlow(finished, await decoded("lossy.log", 80, { seqOf: (i) => i + Math.floor(i / 4) + 1, gapUs: spread(80) }), oneSecond);
    expect(lossy).toEqual({
      ok: false,
      reason: `${join(dir, "lossy.log")} has 80 records, expected at least 95 (95% of 100): 19 of 99 packets sent were lost on the path`,
    });
    // The first 40 packets, then nothing: the path stopped passing them, or the flow stalled for longer
    // than a busy host's wait for a core (half a second of a short flow, a fifth of a long one).
    const stopped = judgeFlow(finished, await decoded("stopped.log", 40), oneSecond);
    expect(stopped).toEqual({
      ok: false,
      reason: `${join(dir, "stopped.log")} has 40 records, expected at least 95 (95% of 100): they span 0.390 s of the 1 s flow (a stalled flow, or a path that stopped passing packets)`,
    });
    expect(judgeFlow(finished, await decoded("paused.log", 60), oneSecond)).toMatchObject({ ok: false, reason: expect.stringMatching(/^ITGSend could not hold its rate/) });
    const tenSeconds = { records: 1000, minShare: 0.95, durationS: 10 };
    expect(judgeFlow(finished, await decoded("long-stopped.log", 750), tenSeconds)).toMatchObject({ ok: false, reason: expect.stringMatching(/they span 7\.490 s of the 10 s flow/) });
    expect(judgeFlow(finished, await decoded("long-behind.log", 810), tenSeconds)).toMatchObject({ ok: false, reason: expect.stringMatching(/^ITGSend could not hold its rate: sent 810 of 1000 scheduled/) });
    // Both a slow sender and losses: the sender's shortfall is named first, the loss beside it.
    const both = judgeFlow(finished, await decoded("both.log", 60, { seqOf: (i) => i + Math.floor(i / 4) + 1, gapUs: spread(60) }), oneSecond);
    expect(both).toMatchObject({ ok: false, reason: expect.stringMatching(/^ITGSend could not hold its rate: sent 74 of 100 scheduled .* 14 of 74 packets sent were lost on the path$/) });
    // A link-limited flow names the cap that sets its expectation.
    const capped = judgeFlow(finished, await decoded("capped.log", 50, { gapUs: spread(50) }), { records: 97, minShare: 0.9, linkMbps: 50, durationS: 1 });
    expect(capped).toMatchObject({ ok: false, reason: expect.stringMatching(/^ITGSend could not hold its rate: sent 50 of the 97 its 50 Mbit\/s link cap lets through /) });
  });

  it("fails a round trip whose sender records lack a partner in the receiver log (exact delays need every one)", async () => {
    // The two logs of one rttm flow, as ITGSend (-l) and ITGRecv (-x) write them: 100 packets 10 ms apart.
    const t0 = Date.UTC(2026, 0, 5, 12) * 1000;
    const flow = craftedRttmLogs(craftedPackets(100, t0, 10_000), { spacingUs: 10_000 });
    const senderLog = join(dir, "rtt.slog");
    await writeLog(senderLog, flow.sender);
    await writeLog(join(dir, "rtt.rlog"), flow.receiver);
    expect(judgeFlow(finished, await decodePairedLogs(senderLog, join(dir, "rtt.rlog")), expected)).toEqual({ ok: true });
    // The receiver's log cut before its last 3 records (ITGRecv killed before it flushed them).
    await writeLog(join(dir, "cut.rlog"), flow.receiver.slice(0, 97));
    const cut = await decodePairedLogs(senderLog, join(dir, "cut.rlog"));
    expect(judgeFlow(finished, cut, expected)).toEqual({
      ok: false,
      reason: `${senderLog}: 3 of 100 round trips have no partner in the receiver log (cut or not flushed)`,
    });
    const sender = await decodeLogFile(senderLog);
    // Read alone, the same sender log has nothing to pair and passes.
    expect(judgeFlow(finished, sender, expected)).toEqual({ ok: true });
  });
});
