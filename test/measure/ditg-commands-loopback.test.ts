// The built D-ITG command lines run for real on loopback (IPv4 and IPv6; UDP and TCP one-way, UDP round trip),
// and the decoder must print what the real ITGDec prints for every log they write.
import { testScenario } from "../fixtures/scenario.js";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { createSocket } from "node:dgram";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Family } from "../../scenario/cidr.js";
import { achievedRate, flowLogs, judgeFlow, receiverCommand, senderCommand, type FlowTarget } from "../../measure/ditg-commands.js";
import { decodeLogFile, LogDecoder, type DecodedLog } from "../../measure/ditg-log.js";
import type { TrafficProfile } from "../../measure/types.js";
import { decodePairedLogs } from "../../measure/ditg-pairing.js";
import { expectSameAsItgDec, runItgDec } from "./decode-itgdec.js";
import { expectDelaysOf, independentRoundTrips } from "./round-trips.js";

const scenario = testScenario({
  sweep: { flowSeconds: 2 },
  // A 2-core CI runner shares its cores with another test file: a lighter latency rate keeps -poll on time.
  traffic: { latency: { packetsPerSecond: 400 } },
});

const LOOPBACK: Record<Family, string> = { ipv4: "127.0.0.1", ipv6: "::1" };

/** A port free for both TCP and UDP on every address right now. */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer().listen(0, "::", () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => resolve(p));
      });
      srv.on("error", reject);
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const s = createSocket("udp6");
      s.on("error", () => resolve(false));
      s.bind(port, "::", () => s.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
}

/** True when a TCP socket listens on the port (read from /proc: a probe connection could kill ITGRecv, B1). */
async function listening(port: number): Promise<boolean> {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const text = await readFile(table, "utf8");
    if (text.split("\n").some((l) => l.trim().split(/\s+/)[1]?.endsWith(`:${hex}`) && l.trim().split(/\s+/)[3] === "0A")) return true;
  }
  return false;
}

interface Receiver {
  readonly child: ChildProcess;
  readonly signalingPort: number;
}

async function startReceiver(family: Family): Promise<Receiver> {
  const signalingPort = await freePort();
  const [cmd, ...args] = receiverCommand({ signalingPort, family });
  const child = spawn(cmd!, args, { stdio: "ignore" });
  // Until it listens or exits: no deadline, which a loaded host's start-up would lose to.
  while (!(await listening(signalingPort))) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`ITGRecv exited with ${child.exitCode ?? child.signalCode}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, signalingPort };
}

/** Runs ITGSend; its exit code is returned but decides nothing (B3). */
function runSender(argv: string[]): Promise<{ output: string; code: number }> {
  return new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ output: stdout + stderr, code: err ? Number((err as { code?: number }).code ?? 1) : 0 });
    });
  });
}

async function decodeOrEmpty(path: string): Promise<DecodedLog> {
  return decodeLogFile(path).catch(() => new LogDecoder(path).result());
}

/** Per-record delays in µs from ITGDec's Octave dump (seq, tx h m s, rx h m s, size), sorted. */
async function itgDecDelaysUs(log: string, out: string): Promise<number[]> {
  await new Promise<void>((resolve, reject) =>
    execFile("sh", ["-c", 'exec ITGDec "$1" -o "$2" >/dev/null 2>&1', "sh", log, out], (err) => (err ? reject(err) : resolve())),
  );
  const delays = (await readFile(out, "utf8"))
    .trim()
    .split("\n")
    .map((l) => {
      const [, th, tm, ts, rh, rm, rs] = l.trim().split(/\s+/).map(Number) as number[];
      return Math.round((rh! * 3600 + rm! * 60 + rs! - (th! * 3600 + tm! * 60 + ts!)) * 1e6);
    });
  return delays.sort((a, b) => a - b);
}

const onLinux = process.platform === "linux";

describe.skipIf(!onLinux)("D-ITG flows built by senderCommand, on loopback (needs Linux and the d-itg package)", () => {
  let dir: string;
  const receivers = new Map<Family, Receiver>();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "ditg-loopback-"));
    for (const family of ["ipv4", "ipv6"] as const) receivers.set(family, await startReceiver(family));
  });

  afterAll(async () => {
    for (const r of receivers.values()) r.child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });

  const cases: { name: string; family: Family; traffic: TrafficProfile }[] = [];
  for (const family of ["ipv4", "ipv6"] as const) {
    cases.push({ name: `UDP one-way ${family}`, family, traffic: { ...scenario.traffic.latency, meter: "owdm" } });
    cases.push({ name: `TCP one-way (throughput profile) ${family}`, family, traffic: scenario.traffic.throughput });
    cases.push({ name: `UDP round trip (latency profile, -m rttm) ${family}`, family, traffic: scenario.traffic.latency });
  }

  for (const c of cases) {
    it(`${c.name}: the flow passes judgeFlow and both logs decode to ITGDec's printed numbers`, async () => {
      const receiver = receivers.get(c.family)!;
      const target: FlowTarget = { address: LOOPBACK[c.family], signalingPort: receiver.signalingPort, dataPort: await freePort() };
      const runId = c.name.replace(/[^A-Za-z0-9]+/g, "-");
      const cmd = senderCommand({
        traffic: c.traffic,
        durationS: scenario.sweep.flowSeconds,
        target,
        logs: flowLogs(runId, { senderDir: dir, receiverDir: dir }),
        linkMbps: scenario.linkMbps,
      });
      const sent = await runSender(cmd.argv);
      expect(sent.output).toContain("Finished sending packets of flow ID: 1");

      expect(cmd.measuredLog).toBe(c.traffic.meter === "rttm" ? "sender" : "receiver");
      const [measuredPath, otherPath] =
        cmd.measuredLog === "sender" ? [cmd.logs.senderLog, cmd.logs.receiverLog] : [cmd.logs.receiverLog, cmd.logs.senderLog];
      const measured = await decodeLogFile(measuredPath);
      // D-ITG's sender falls behind its rate when other tests share the cores (B10), which the profile's expectation
      // rightly rejects; here the expectation is what the other end logged (sent, or echoed back), so the verdict
      // checks the output parsing and loss on loopback, not this machine's load.
      const otherEnd = (await decodeLogFile(otherPath)).total.packets;
      expect(otherEnd).toBeGreaterThan(0);
      expect(judgeFlow(sent.output, measured, { records: otherEnd, minShare: cmd.expected.minShare })).toEqual({ ok: true });

      const flow = measured.flows[0]!;
      // ITGRecv logs its bind address (the wildcard of receiverCommand) as the destination; the rttm sender log has the target.
      expect(flow.destAddress).toBe(cmd.measuredLog === "sender" ? target.address : c.family === "ipv4" ? "0.0.0.0" : "::");
      expect(flow.srcAddress).toBe(target.address);
      expect(flow.destPort).toBe(target.dataPort);
      expect(flow.bytes).toBe(flow.packets * c.traffic.payloadBytes);
      expect(achievedRate(measured).kbps).toBeCloseTo((flow.bytes * 8) / 1000 / flow.durationS, 6);

      // ITGDec's numbers: every record as logged (the --itgdec reading).
      for (const log of [cmd.logs.senderLog, cmd.logs.receiverLog]) {
        expectSameAsItgDec(await decodeLogFile(log, { views: ["logged"] }), await runItgDec(log));
      }
      // What wrote each log, from its records alone: ITGRecv's (bound to the wildcard) holds one-way delays; ITGSend's
      // log of a one-way flow holds its own send times; its round-trip log is never taken for a one-way log.
      const senderSide = await decodeLogFile(cmd.logs.senderLog);
      expect((await decodeLogFile(cmd.logs.receiverLog)).content?.kind).toBe("one-way");
      if (c.traffic.meter === "rttm") expect(["round-trip", "unknown"]).toContain(senderSide.content?.kind);
      else expect(senderSide.content?.kind).toBe("sender-one-way");
      if (c.traffic.meter === "rttm") {
        // The two logs in each other's place are refused, naming the receiver's log.
        await expect(decodePairedLogs(cmd.logs.receiverLog, cmd.logs.senderLog)).rejects.toThrow(`${cmd.logs.receiverLog}: is a receiver's log, not ITGSend's round-trip log`);
        // Exact round trips: every echo pairs with its packet's send stamp in the receiver log.
        const truth = await independentRoundTrips(cmd.logs.senderLog, cmd.logs.receiverLog);
        const paired = await decodePairedLogs(cmd.logs.senderLog, cmd.logs.receiverLog);
        expect([truth.unpaired, paired.total.excludedRecords]).toEqual([0, 0]);
        expectDelaysOf(paired.total, truth.paired, `${c.name} paired`);
      }

      // Percentiles: nearest rank over ITGDec's own per-record dump; exact below 2048 µs, within HDR's 0.1% above.
      const delays = await itgDecDelaysUs(measured.file, join(dir, `${runId}.octave`));
      expect(delays.length).toBe(measured.total.packets);
      for (const [key, q] of [["p50S", 50], ["p90S", 90], ["p99S", 99], ["p999S", 99.9]] as const) {
        const exact = delays[Math.max(1, Math.ceil((q * delays.length) / 100 - 1e-9)) - 1]!;
        const ours = Math.round(measured.total[key] * 1e6);
        if (exact < 2048) expect(ours, key).toBe(exact);
        else expect([ours >= exact, ours <= exact * 1.001], `${key}: ${ours} µs against ${exact} µs`).toEqual([true, true]);
      }

      expect(receiver.child.exitCode, "ITGRecv still runs").toBeNull();
    });
  }

  it("a receiver-side bind failure: ITGSend exits 0, judgeFlow fails the run on its output (B3)", async () => {
    const receiver = receivers.get("ipv4")!;
    const dataPort = await freePort();
    const squatter = createSocket("udp4");
    await new Promise<void>((resolve) => squatter.bind(dataPort, "0.0.0.0", resolve));
    try {
      const cmd = senderCommand({
        traffic: { ...scenario.traffic.latency, meter: "owdm" },
        durationS: 1,
        target: { address: "127.0.0.1", signalingPort: receiver.signalingPort, dataPort },
        logs: flowLogs("bind-failure", { senderDir: dir, receiverDir: dir }),
        linkMbps: 0,
      });
      const sent = await runSender(cmd.argv);
      expect(sent.code).toBe(0);
      const verdict = judgeFlow(sent.output, await decodeOrEmpty(cmd.logs.receiverLog), cmd.expected);
      expect(verdict.ok).toBe(false);
      expect(!verdict.ok && verdict.reason).toMatch(/^ITGSend reported an error: Error on bind to receiver side/);
    } finally {
      squatter.close();
    }
    expect(receiver.child.exitCode, "ITGRecv survives a bind failure").toBeNull();
  });

  it("no receiver on the signaling port: judgeFlow fails the run with ITGSend's error", async () => {
    const cmd = senderCommand({
      traffic: scenario.traffic.latency,
      durationS: 1,
      target: { address: "127.0.0.1", signalingPort: await freePort(), dataPort: await freePort() },
      logs: flowLogs("no-receiver", { senderDir: dir, receiverDir: dir }),
      linkMbps: 0,
    });
    const sent = await runSender(cmd.argv);
    const verdict = judgeFlow(sent.output, await decodeOrEmpty(cmd.logs.senderLog), cmd.expected);
    expect(verdict).toEqual({ ok: false, reason: expect.stringMatching(/^ITGSend reported an error: .*Connection refused/i) });
  });
});
