// The loopback backend with real D-ITG processes, and the worker-thread decoder on their logs.
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkerLogDecoder } from "../../measure/campaign-decode.js";
import { ditgJudge } from "../../measure/campaign.js";
import { decodeLogFile } from "../../measure/ditg-log.js";
import { decodeFlow } from "../../measure/ditg-pairing.js";
import { listeningTcpPorts, LoopbackBackend } from "../../backends/loopback.js";
import type { RunKey } from "../../measure/types.js";
import { scenarioSchema } from "../../scenario/schema.js";

const haveDitg = ["/usr/bin/ITGSend", "/usr/bin/ITGRecv"].every((p) => existsSync(p));
const traffic = scenarioSchema.shape.traffic.parse(undefined);
const key = (family: RunKey["family"], profile: RunKey["profile"]): RunKey => ({ dataplane: "iptables", family, profile, services: 1, repetition: 0 });

/** Until no socket listens on the TCP port (a killed process's sockets close as it dies): the socket table, not a time. */
async function socketGone(port: number): Promise<void> {
  while (listeningTcpPorts().has(port)) await new Promise((r) => setTimeout(r, 20));
}

describe.skipIf(!haveDitg || process.platform !== "linux")("LoopbackBackend", () => {
  let backend: LoopbackBackend;
  const decoder = new WorkerLogDecoder();
  beforeAll(async () => {
    backend = await LoopbackBackend.start();
  });
  afterAll(async () => {
    await backend.teardown();
    await decoder.close();
  });

  it("records the steps it is asked to prepare, and nothing else (no dataplane on loopback)", async () => {
    await backend.prepare({ dataplane: "ebpf", services: 1000 });
    await backend.prepare({ dataplane: "iptables", services: 1 });
    expect(backend.steps).toEqual([
      { dataplane: "ebpf", services: 1000 },
      { dataplane: "iptables", services: 1 },
    ]);
  });

  it("runs a real one-way TCP flow over IPv4 and an RTT UDP flow over IPv6 (paired with its receiver log), decoded in the worker", async () => {
    for (const [family, profile, suffix] of [["ipv4", "throughput", ".rlog"], ["ipv6", "latency", ".slog"]] as const) {
      const outcome = await backend.runFlow(key(family, profile), { logName: `t-${family}`, durationS: 1, traffic: traffic[profile] });
      expect(outcome.senderOutput).toContain("Finished sending packets of flow ID");
      expect(outcome.logPath.endsWith(`t-${family}${suffix}`)).toBe(true);
      expect(outcome.receiverLogPath?.endsWith(`t-${family}.rlog`)).toBe(profile === "latency" ? true : undefined);
      expect(outcome.endedAt.getTime() - outcome.startedAt.getTime()).toBeGreaterThanOrEqual(1000);
      const local = await backend.collectLog(outcome);
      const files = { ...local, oneWay: backend.sharedClock };
      const inWorker = await decoder.decode(files);
      expect(inWorker).toEqual(await decodeFlow(files));
      if (profile === "latency") {
        // Exact round trips, every echo paired; the meter's own readings and the one-way delays beside them.
        expect([inWorker.total.delaySource, inWorker.total.excludedRecords]).toEqual(["paired", 0]);
        expect(inWorker.views?.logged?.total).toEqual((await decodeLogFile(local.log)).total);
        expect(inWorker.oneWay?.total).toEqual((await decodeLogFile(local.receiverLog!)).total);
      } else {
        expect(inWorker).toEqual(await decodeLogFile(local.log));
      }
      expect(inWorker.flows).toHaveLength(1);
      const flow = inWorker.flows[0]!;
      expect([flow.srcAddress, flow.destAddress]).toContain(family === "ipv4" ? "127.0.0.1" : "::1");
      // How many records a loaded 2-core machine gets through is its own business (judgeFlow's); here
      // the flow only has to have crossed and been logged.
      expect(inWorker.total.packets).toBeGreaterThan(0);
      if (profile === "latency") expect(inWorker.total.delayMeanS).toBeGreaterThan(0);
    }
  });

  it("reports a killed receiver as dead and brings it back on the same port", async () => {
    expect(await backend.receiverAlive()).toBe(true);
    const pid = backend.receiverPids().ipv4!;
    process.kill(pid, "SIGKILL");
    await socketGone(backend.targets().ipv4!.signalingPort);
    expect(await backend.receiverAlive()).toBe(false);
    await backend.restartReceiver();
    expect(await backend.receiverAlive()).toBe(true);
    expect(backend.receiverPids().ipv4).not.toBe(pid);
    const outcome = await backend.runFlow(key("ipv4", "latency"), { logName: "after-restart", durationS: 1, traffic: traffic.latency });
    const decoded = await decoder.decode(await backend.collectLog(outcome));
    expect(decoded.total.packets).toBeGreaterThan(0);
  });

  it("fails a flow whose receiver is gone, with ITGSend's reason", async () => {
    const pid = backend.receiverPids().ipv6!;
    process.kill(pid, "SIGKILL");
    await socketGone(backend.targets().ipv6!.signalingPort);
    await expect(
      backend.runFlow(key("ipv6", "latency"), { logName: "no-receiver", durationS: 1, traffic: traffic.latency }),
    ).rejects.toThrow(/ITGSend exited with 1: .*Connection refused/);
    await backend.restartReceiver();
  });

  it("judges a real flow log with the D-ITG verdict", async () => {
    const outcome = await backend.runFlow(key("ipv4", "latency"), { logName: "judged", durationS: 1, traffic: traffic.latency });
    const decoded = await decoder.decode(await backend.collectLog(outcome));
    // A 2-second expectation cannot be met by a 1-second flow: the verdict names the shortfall, and that
    // the records stop halfway, as a flow cut short does (not a sender thinned out by a busy host).
    const verdict = ditgJudge(outcome.senderOutput, decoded, { traffic: traffic.latency, durationS: 2, linkMbps: 0 });
    expect(verdict).toEqual({
      ok: false,
      reason: expect.stringMatching(/ has \d+ records, expected at least 1900 \(95% of 2000\): they span [01]\.\d{3} s of the 2 s flow \(a stalled flow/),
    });
  });

  it("stops its receivers and removes its logs on teardown", async () => {
    const other = await LoopbackBackend.start({ families: ["ipv4"] });
    const pid = other.receiverPids().ipv4!;
    const port = other.targets().ipv4!.signalingPort;
    expect(listeningTcpPorts().has(port)).toBe(true);
    await other.teardown();
    expect(existsSync(other.workDir)).toBe(false);
    expect(() => process.kill(pid, 0)).toThrow();
    expect(listeningTcpPorts().has(port)).toBe(false);
  });
});
