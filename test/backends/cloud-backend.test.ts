// The cloud backend's sequencing over fake transports (the Pulumi engine and the cloud are the only
// mocks), and its setup errors: missing CLI, missing stack, missing key or output, refused SSH.
import { campaignTraffic } from "../../measure/connection-setup.js";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runCampaign, runJudge, type LogDecoder } from "../../measure/campaign.js";
import { setupTraffic } from "../../measure/connection-setup.js";
import { decodeLogFile } from "../../measure/ditg-log.js";
import { campaignIdFor, planCampaign, type CampaignDefinition } from "../../measure/campaign-plan.js";
import {
  CloudBackend,
  CloudSetupError,
  cloudPaths,
  stepReadinessOf,
  type CommandResult,
  type RemoteHost,
  endpointTargets,
  receiversPerHost,
  type CloudPath,
  type RemoteShell,
  type SshAccess,
  type StackControl,
} from "../../backends/cloud.js";
import { describeSshFailure, findOnPath, PulumiStack, SshShell, sshConfig } from "../../backends/cloud-transport.js";
import type { DecodedFlow, FlowLogFiles } from "../../measure/ditg-pairing.js";
import { ResultStore } from "../../measure/store.js";
import { ReceiverSessionError } from "../../measure/types.js";
import { PLACEHOLDERS } from "../../scenario/schema.js";

const KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";

function stackConfig(over: Record<string, string | undefined> = {}): Record<string, { value: string; secret?: boolean }> {
  const base: Record<string, string | undefined> = {
    "testbed:dataplane": "ebpf",
    "testbed:adminCidr": "203.0.113.7/32",
    "testbed:sshPublicKey": PLACEHOLDERS.sshPublicKey,
    "testbed:services": "1",
    "testbed:families": '["ipv4","ipv6"]',
    "testbed:sweep": '{"services":[1,1000],"runs":2,"flowSeconds":30,"seed":5}',
    "testbed:sshPrivateKey": KEY,
    ...over,
  };
  return Object.fromEntries(Object.entries(base).filter(([, v]) => v !== undefined).map(([k, v]) => [k, { value: v! }]));
}

function stackOutputs(over: Record<string, unknown> = {}): Record<string, { value: unknown }> {
  const base: Record<string, unknown> = {
    bastionAddress: "203.0.113.50",
    clientAddress: "198.19.0.10",
    masterAddress: "198.19.0.20",
    ditgEndpoints: {
      ipv4: { address: "198.18.1.21", signalingPort: 30900, dataPort: 31000 },
      ipv6: { address: "2001:2:0:20::21", signalingPort: 30901, dataPort: 31001 },
    },
    ditgReceiver: { namespace: "ditg", deployment: "ditg-receiver", nodeAddress: "198.19.0.21", podLogDir: "/logs", nodeLogDir: "/var/lib/ditg-logs" },
    connectionSetupProbe: { client: "/opt/testbed/bin/connection-setup-probe", worker: "/opt/testbed/bin/connection-setup-probe" },
    hostAddresses: { client: { client: { ipv4: "198.18.0.10", ipv6: "2001:2:0:10::10" } } },
    step: { services: 1, endpointsReadyAfterS: 0.5, programmedAfterS: 1.5, programmedServices: { ipv4: 1, ipv6: 1 } },
    ...over,
  };
  return Object.fromEntries(Object.entries(base).filter(([, v]) => v !== undefined).map(([k, v]) => [k, { value: v }]));
}

class FakeStack implements StackControl {
  readonly calls: string[];
  upError: Error | undefined;
  constructor(
    readonly name: string,
    private readonly cfg: ReturnType<typeof stackConfig>,
    private readonly outs: ReturnType<typeof stackOutputs>,
    calls: string[],
  ) {
    this.calls = calls;
  }
  async outputs() {
    return this.outs;
  }
  async config() {
    return this.cfg;
  }
  /** What the worker holds after an update, when it is not the step's count (a dataplane that lags). */
  holds: number | undefined;
  async setServices(services: number) {
    this.calls.push(`up services=${services}`);
    if (this.upError) throw this.upError;
    this.cfg["testbed:services"] = { value: String(services) };
    const held = this.holds ?? services;
    this.outs.step = { value: { services, endpointsReadyAfterS: 2 + services / 1000, programmedAfterS: 3 + services / 1000, programmedServices: { ipv4: held, ipv6: held } } };
  }
}

/** Answers like the lab's hosts would; ITGSend "sends" unless told to fail. */
class FakeShell implements RemoteShell {
  access: SshAccess | undefined;
  closed = false;
  sendFailures = 0;
  /** The next flows' sender answers, first first: a receiver-side bind error (exit 0, D-ITG B3) or a sender stopped by its bound. */
  sessionFailures: ("bind" | "hang")[] = [];
  receivers = 2;
  constructor(readonly calls: string[]) {}
  async run(host: RemoteHost, command: string): Promise<CommandResult> {
    this.calls.push(`run ${host}: ${command}`);
    if (/^(sudo kubectl --kubeconfig \S+ -n \S+ exec \S+ -- )?timeout --kill-after=5 \d+ ITGSend /.test(command)) {
      const session = this.sessionFailures.shift();
      if (session === "bind") return { code: 0, stdout: "Error on bind to receiver side\nError at Receiver side\nFinished sending packets of flow ID: 1\n", stderr: "" };
      if (session === "hang") return { code: 124, stdout: "", stderr: "" };
      if (this.sendFailures > 0) {
        this.sendFailures--;
        return { code: 1, stdout: "Connect error in createTransportChan(): Connection refused\n", stderr: "" };
      }
      return { code: 0, stdout: "Started sending packets of flow ID: 1\nFinished sending packets of flow ID: 1\n", stderr: "" };
    }
    const pickedReceiver = command.startsWith('pids="$(pgrep -x ITGRecv)"');
    if (pickedReceiver && command.includes(" -n ss -Htuanp ")) return { code: 0, stdout: 'LISTEN 0 4096 *:31000 *:* users:(("connection-setu",pid=77,fd=3))\n', stderr: "" };
    if (command.startsWith("pgrep")) return { code: 0, stdout: `${this.receivers}\n`, stderr: "" };
    if (pickedReceiver && command.includes("connection-setup-probe listen")) return { code: 0, stdout: "listener 4242\n", stderr: "" };
    const probe = /connection-setup-probe probe \S+ \d+ (\d+) (\d+) (\d+) /.exec(command);
    if (probe) {
      // Every connection set up in 150 µs, one per 1/rate seconds, from consecutive source ports.
      const [rate, durationMs, first] = probe.slice(1).map(Number) as [number, number, number];
      const n = Math.floor((rate * durationMs) / 1000);
      const t0 = Date.UTC(2026, 11, 7, 12) * 1000;
      const lines = Array.from({ length: n }, (_, i) => `ok ${i + 1} ${first + i} ${t0 + i * 5000} ${t0 + i * 5000 + 150}`);
      return { code: 0, stdout: `${lines.join("\n")}\ndone ${n} ${n} 0 ${first + n}\n`, stderr: "" };
    }
    return { code: 0, stdout: "/usr/bin/ITGSend\n", stderr: "" };
  }
  async fetch(host: RemoteHost, remotePath: string, localPath: string): Promise<void> {
    this.calls.push(`fetch ${host}:${remotePath}`);
    writeFileSync(localPath, remotePath);
  }
  async close() {
    this.calls.push("close");
    this.closed = true;
  }
}

/** What each decode was asked for: the fetched files' texts (their remote paths), and whether one-way delays were. */
const decoded: { log: string; receiverLog?: string; oneWay?: boolean }[] = [];

/** Decodes the fetched file (its text is the remote path) into a plausible one-flow log. */
const decoder: LogDecoder = {
  async decode({ log: logPath, receiverLog, oneWay }: FlowLogFiles): Promise<DecodedFlow> {
    decoded.push({ log: readFileSync(logPath, "utf8"), ...(receiverLog ? { receiverLog: readFileSync(receiverLog, "utf8") } : {}), oneWay });
    const total = {
      packets: 1000, bytes: 512000, durationS: 1, delayMinS: 0.001, delayMaxS: 0.002, delayMeanS: 0.0015, delayStdS: 0.0001,
      jitterS: 0.0001, bitrateKbps: 4096, packetRate: 1000, dropped: 0, p50S: 0.0015, p90S: 0.0018, p99S: 0.0019, p999S: 0.002,
      droppedPercent: 0, lossBurstSize: 0, negativeDelays: 0, excludedRecords: 0, delaySource: "sender" as const, flowCount: 1, errorLines: 0,
    };
    return { file: readFileSync(logPath, "utf8"), flows: [], total, histogram: "" };
  },
};

let calls: string[];
let dir: string;
beforeEach(() => {
  calls = [];
  decoded.length = 0;
  dir = mkdtempSync(path.join(tmpdir(), "cloud-test-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The hop probes are off here: test/lab/worker-hops.test.ts runs them on a lab worker, the rehearsal through this backend. */
async function openFake(opts: { config?: ReturnType<typeof stackConfig>; outputs?: ReturnType<typeof stackOutputs> } = {}) {
  const stack = new FakeStack("ebpf", opts.config ?? stackConfig(), opts.outputs ?? stackOutputs(), calls);
  const shell = new FakeShell(calls);
  const backend = await CloudBackend.open({
    stack,
    shell: (access) => {
      shell.access = access;
      return shell;
    },
    hops: false,
  });
  return { stack, shell, backend };
}

function definition(backend: CloudBackend): CampaignDefinition {
  const s = backend.scenario;
  return {
    backend: backend.name,
    dataplanes: [s.dataplane],
    families: ["ipv4", "ipv6"],
    profiles: ["throughput", "latency"],
    services: [1, 1000],
    runs: 1,
    flowSeconds: 30,
    linkMbps: s.linkMbps,
    seed: 1,
    order: { randomize: false, interleave: 0 },
    traffic: campaignTraffic(s.traffic),
  };
}

describe("CloudBackend over fake transports", () => {
  it("reads the scenario and outputs of the stack and reaches the client through the bastion", async () => {
    const { backend, shell } = await openFake();
    expect(backend.name).toBe("stack:ebpf");
    expect(backend.scenario.dataplane).toBe("ebpf");
    expect(shell.access).toEqual({
      user: "ubuntu",
      privateKey: KEY,
      bastion: { address: "203.0.113.50", port: 22 },
      hosts: { client: "198.19.0.10", master: "198.19.0.20", receiver: "198.19.0.21" },
    });
    expect(calls).toEqual(["run client: mkdir -p /var/tmp/testbed-ditg && command -v ITGSend"]);
    await backend.teardown();
    expect(shell.closed).toBe(true);
  });

  it("updates the stack per step, runs each flow on the client and fetches its log after the flow", async () => {
    const { backend } = await openFake();
    const store = ResultStore.open(path.join(dir, "r.db"));
    const def = definition(backend);
    const id = campaignIdFor(def);
    const plan = planCampaign(id, def);
    store.ensureCampaign(id, def, plan);
    calls.length = 0;
    await runCampaign({ store, campaignId: id, backend, decoder, judge: () => ({ ok: true }), retries: 0 });

    const ups = calls.filter((c) => c.startsWith("up"));
    expect(ups).toEqual(["up services=1", "up services=1000"]);
    const flows = calls.filter((c) => /^run client: timeout --kill-after=5 \d+ ITGSend /.test(c));
    expect(flows).toHaveLength(8);
    for (const run of plan) {
      const logName = `${run.runId}-1`;
      const flowAt = calls.findIndex((c) => /^run client: timeout --kill-after=5 \d+ ITGSend /.test(c) && c.includes(logName));
      const upAt = calls.indexOf(`up services=${run.key.services}`);
      expect(upAt).toBeLessThan(flowAt);
      const endpoint = run.key.family === "ipv4" ? "-a 198.18.1.21 -Sdp 30900 -rp 31000" : "-a 2001:2:0:20::21 -Sdp 30901 -rp 31001";
      expect(calls[flowAt]).toContain(endpoint);
      expect(calls[flowAt]).toContain(`-x /logs/${logName}.rlog`);
      expect(calls[flowAt]).toContain(`-l /var/tmp/testbed-ditg/${logName}.slog`);
      // Throughput is one-way (receiver's log on its node); latency is rttm: the sender's log on the client, paired
      // with the receiver's from the node for exact round trips (D-ITG B15); no one-way delays across two clocks.
      const [slog, rlog] = [`client:/var/tmp/testbed-ditg/${logName}.slog`, `receiver:/var/lib/ditg-logs/${logName}.rlog`];
      const fetched = run.key.profile === "throughput" ? [rlog] : [slog, rlog];
      for (const f of fetched) expect(calls.indexOf(`fetch ${f}`), f).toBeGreaterThan(flowAt);
      const fetchAt = Math.max(...fetched.map((f) => calls.indexOf(`fetch ${f}`)));
      const asked = decoded.find((d) => d.log.endsWith(`${logName}.${run.key.profile === "throughput" ? "rlog" : "slog"}`));
      expect(asked).toEqual(
        run.key.profile === "throughput"
          ? { log: `/var/lib/ditg-logs/${logName}.rlog`, oneWay: false }
          : { log: `/var/tmp/testbed-ditg/${logName}.slog`, receiverLog: `/var/lib/ditg-logs/${logName}.rlog`, oneWay: false },
      );
      // Both remote logs are removed once fetched; the pod's file needs root.
      expect(calls.indexOf(`run receiver: sudo rm -f /var/lib/ditg-logs/${logName}.rlog`)).toBeGreaterThan(fetchAt);
      expect(calls.indexOf(`run client: rm -f /var/tmp/testbed-ditg/${logName}.slog`)).toBeGreaterThan(fetchAt);
      // The receiver is checked (pgrep, never a probe connection) before every flow.
      const previousFlow = calls.slice(0, flowAt).findLastIndex((c) => /^run client: timeout --kill-after=5 \d+ ITGSend /.test(c));
      expect(calls.slice(previousFlow + 1, flowAt)).toContain("run receiver: pgrep -c -x ITGRecv");
    }
    // A step's runs never straddle an update.
    const secondUp = calls.indexOf("up services=1000");
    for (const run of plan.filter((r) => r.key.services === 1)) {
      expect(calls.findIndex((c) => c.includes(`${run.runId}-1`) && c.startsWith("fetch"))).toBeLessThan(secondUp);
    }
    expect(store.results(id).map((r) => r.status)).toEqual(Array(8).fill("ok"));
    expect(calls.at(-1)).toBe("close");
    store.close();
  });

  it("runs a setup run as the lab does: the listener in the receiver pod's namespace, the probe on the client, the log made here", async () => {
    const { backend } = await openFake();
    await backend.prepare({ dataplane: "ebpf", services: 1 });
    calls.length = 0;
    const traffic = setupTraffic(200);
    const key = { dataplane: "ebpf", family: "ipv6", profile: "setup", services: 1, repetition: 0 } as const;
    const outcome = await backend.runFlow(key, { logName: "s1", durationS: 1, traffic });
    expect(calls[0]).toMatch(/^run receiver: pids="\$\(pgrep -x ITGRecv\)"/);
    expect(calls[0]).toContain(`sudo nsenter -t "$pid" -n -- /opt/testbed/bin/connection-setup-probe listen 31001`);
    expect(calls[1]).toBe("run client: /opt/testbed/bin/connection-setup-probe probe 2001:2:0:20::21 31001 200 1000 1024 1233 1000 2>&1");
    expect(calls[2]).toBe("run receiver: sudo kill 4242 2>/dev/null; true");
    expect(outcome.senderOutput).toBe("connection setup: 200 connections, 200 established, 0 failed");
    const logs = await backend.collectLog(outcome);
    expect(calls).toHaveLength(3);
    const decoded = await decodeLogFile(logs.log);
    expect(decoded.total).toMatchObject({ packets: 200, dropped: 0 });
    expect(decoded.total.delayMeanS).toBeCloseTo(150e-6, 9);
    expect(runJudge(outcome.senderOutput, decoded, { profile: "setup", traffic, durationS: 1, linkMbps: 500 })).toEqual({ ok: true });
    // The next run of the family starts where this one's source ports ended: no 5-tuple twice.
    await backend.runFlow(key, { logName: "s2", durationS: 1, traffic });
    expect(calls[4]).toContain("probe 2001:2:0:20::21 31001 200 1000 1224 ");
    await backend.teardown();
  });

  it("has the worker's dataplane forget its connections once the probe has used every fresh source port, then starts the ports over", async () => {
    const { backend } = await openFake();
    await backend.prepare({ dataplane: "ebpf", services: 1 });
    const key = { dataplane: "ebpf", family: "ipv4", profile: "setup", services: 1, repetition: 0 } as const;
    // 20000 connections a run: the second run does not fit in the 31744 fresh ports left.
    await backend.runFlow(key, { logName: "s1", durationS: 4, traffic: setupTraffic(5000) });
    expect(calls.some((c) => c.includes("bpf ct flush"))).toBe(false);
    calls.length = 0;
    await backend.runFlow(key, { logName: "s2", durationS: 4, traffic: setupTraffic(5000) });
    const flush = calls.findIndex((c) => c.startsWith("run receiver: sudo -n bash -c ") && c.includes("cilium-dbg bpf ct flush global"));
    const probe = calls.findIndex((c) => c.startsWith("run client: /opt/testbed/bin/connection-setup-probe probe "));
    expect(flush).toBeGreaterThanOrEqual(0);
    expect(flush).toBeLessThan(probe);
    expect(calls[probe]).toContain(" 5000 4000 1024 ");
    await backend.teardown();
  });

  it("bounds ITGSend: a sender that never ends is stopped a minute after its flow", async () => {
    const { backend } = await openFake();
    await backend.prepare({ dataplane: "ebpf", services: 1 });
    const traffic = { protocol: "UDP", meter: "owdm", payloadBytes: 512, packetsPerSecond: 100 } as const;
    await backend.runFlow({ dataplane: "ebpf", family: "ipv4", profile: "throughput", services: 1, repetition: 0 }, { logName: "t1", durationS: 30, traffic });
    expect(calls.find((c) => c.startsWith("run client: timeout"))).toMatch(/^run client: timeout --kill-after=5 90 ITGSend /);
    await backend.teardown();
  });

  it("fails a flow whose receiver session broke with a ReceiverSessionError that says what holds the data port, and any other failure with a plain one", async () => {
    const { backend, shell } = await openFake();
    await backend.prepare({ dataplane: "ebpf", services: 1 });
    const key = { dataplane: "ebpf", family: "ipv4", profile: "throughput", services: 1, repetition: 0 } as const;
    const traffic = { protocol: "TCP", meter: "owdm", payloadBytes: 512, packetsPerSecond: 100 } as const;
    shell.sessionFailures = ["bind", "hang"];
    shell.sendFailures = 1;
    const failures = [];
    for (const logName of ["b", "h", "c"]) failures.push(await backend.runFlow(key, { logName, durationS: 1, traffic }).catch((e: Error) => e));
    const [bind, hang, refused] = failures as Error[];
    expect(bind).toBeInstanceOf(ReceiverSessionError);
    expect(bind!.message).toMatch(/^ITGSend on the client exited with 0: .*Error on bind to receiver side.*; on the receiver's node, the data port \d+: LISTEN 0 4096 \*:31000 .*connection-setu/);
    expect(hang).toBeInstanceOf(ReceiverSessionError);
    expect(hang!.message).toMatch(/^ITGSend on the client exited with 124: ; on the receiver's node, the data port \d+: /);
    expect(refused).not.toBeInstanceOf(ReceiverSessionError);
    expect(refused!.message).toMatch(/^ITGSend on the client exited with 1: Connect error/);
    // The failed flows' logs are removed on both hosts.
    expect(calls.filter((c) => /^run (client: rm|receiver: sudo rm) -f \S+\/[bhc]\.[sr]log$/.test(c))).toHaveLength(6);
    await backend.teardown();
  });

  it("refuses setup runs on a stack deployed without the probe, saying how to fix it", async () => {
    const { backend } = await openFake({ outputs: stackOutputs({ connectionSetupProbe: undefined }) });
    await expect(
      backend.runFlow({ dataplane: "ebpf", family: "ipv4", profile: "setup", services: 1, repetition: 0 }, { logName: "s", durationS: 1, traffic: setupTraffic(200) }),
    ).rejects.toThrow("stack ebpf exports no `connectionSetupProbe` output: it was deployed before the setup profile; update it with `pulumi up --stack ebpf`, or leave setup out of --profiles");
    await backend.teardown();
  });

  it("reports each step's readiness from the stack, and refuses a step whose worker holds another count", async () => {
    const { backend, stack } = await openFake();
    expect(await backend.prepare({ dataplane: "ebpf", services: 1000 })).toEqual({ endpointsReadyAfterS: 3, programmedAfterS: 4, programmedServices: { ipv4: 1000, ipv6: 1000 } });
    // A step down whose worker still held the larger set: the step is not measured.
    stack.holds = 1000;
    await expect(backend.prepare({ dataplane: "ebpf", services: 1 })).rejects.toThrow(
      "stack ebpf: the worker's dataplane held 1000 ipv4 Services at the step of 1; a step is measured only on exactly its Services",
    );
    await backend.teardown();
    expect(() => stepReadinessOf("x", 5, ["ipv4"], { services: 1, endpointsReadyAfterS: 1, programmedAfterS: 1, programmedServices: 1 })).toThrow(
      "stack x reports its step at 1 Services after an update to 5: the update did not apply the step",
    );
    expect(() => stepReadinessOf("x", 5, ["ipv4"], undefined)).toThrow(/^stack x has no usable output `step`/);
    expect(stepReadinessOf("x", 5, ["ipv4", "ipv6"], { services: 5, endpointsReadyAfterS: 1, programmedAfterS: 2, programmedServices: 5 }).programmedServices).toEqual({ ipv4: 5, ipv6: 5 });
  });

  it("skips an update when the Service count is unchanged, except the first one of a session", async () => {
    const { backend } = await openFake();
    await backend.prepare({ dataplane: "ebpf", services: 1 });
    await backend.prepare({ dataplane: "ebpf", services: 1 });
    await backend.prepare({ dataplane: "ebpf", services: 3000 });
    expect(calls.filter((c) => c.startsWith("up"))).toEqual(["up services=1", "up services=3000"]);
    await backend.teardown();
  });

  it("propagates errors: a failed update stops the campaign, a failed flow is retried with ITGSend's reason", async () => {
    const { backend, stack, shell } = await openFake();
    const store = ResultStore.open(path.join(dir, "r.db"));
    const def = { ...definition(backend), families: ["ipv4"] as const, profiles: ["latency"] as const };
    const id = campaignIdFor(def);
    store.ensureCampaign(id, def, planCampaign(id, def));
    shell.sendFailures = 1;
    stack.upError = undefined;
    const failing = new Error("pulumi up --stack ebpf with 1000 Services failed: quota exceeded");
    const originalSet = stack.setServices.bind(stack);
    stack.setServices = async (n: number) => {
      if (n === 1000) throw failing;
      return originalSet(n);
    };
    await expect(runCampaign({ store, campaignId: id, backend, decoder, judge: () => ({ ok: true }), retries: 1 })).rejects.toThrow(
      /1000 Services failed: quota exceeded/,
    );
    const [first] = store.results(id);
    expect(first).toMatchObject({ services: 1, status: "ok", retries: 1 });
    expect(store.attempts(first!.runId)[0]!.failure).toMatch(/^flow failed: ITGSend on the client exited with 1: Connect error .*Connection refused/);
    expect(shell.closed).toBe(true);
    store.close();
  });

  it("refuses a step of the other dataplane and a receiver count below the endpoints'", async () => {
    const { backend, shell } = await openFake();
    await expect(backend.prepare({ dataplane: "iptables", services: 1 })).rejects.toThrow(
      "stack ebpf runs the ebpf dataplane, the campaign asked for iptables; accepted: ebpf (the other dataplane is another stack)",
    );
    expect(await backend.receiverAlive()).toBe(true);
    shell.receivers = 1;
    expect(await backend.receiverAlive()).toBe(false);
    await backend.restartReceiver();
    expect(calls.at(-1)).toBe(
      "run master: sudo kubectl --kubeconfig /etc/kubernetes/admin.conf rollout restart -n ditg deployment/ditg-receiver && sudo kubectl --kubeconfig /etc/kubernetes/admin.conf rollout status -n ditg deployment/ditg-receiver --timeout=180s",
    );
    await backend.teardown();
  });
});

/** A stack of two workers serving every path, as infra/workloads.ts exports them (worker 2: 198.19.0.22). */
function pathsOutputs(over: Record<string, unknown> = {}): ReturnType<typeof stackOutputs> {
  const receiver = (deployment: string, nodeAddress: string) => ({ namespace: "ditg", deployment, nodeAddress, podLogDir: "/logs", nodeLogDir: "/var/lib/ditg-logs" });
  const remoteEndpoints = {
    ipv4: { address: "198.18.1.21", signalingPort: 30902, dataPort: 31002, protocols: ["TCP", "UDP"] },
    ipv6: { address: "2001:2:0:20::21", signalingPort: 30902, dataPort: 31002, protocols: ["TCP", "UDP"] },
  };
  const clusterEndpoints = {
    ipv4: { address: "10.96.15.253", signalingPort: 9000, dataPort: 31003, protocols: ["TCP", "UDP"] },
    ipv6: { address: "fd00:10:96::fffd", signalingPort: 9000, dataPort: 31003, protocols: ["TCP", "UDP"] },
  };
  return stackOutputs({
    ditgPaths: {
      "nodeport-local": { description: "paper", endpoints: {}, receiver: receiver("ditg-receiver", "198.19.0.21"), client: { kind: "external", host: "client" } },
      "nodeport-remote": { description: "remote", endpoints: remoteEndpoints, receiver: receiver("ditg-receiver-remote", "198.19.0.22"), client: { kind: "external", host: "client" } },
      clusterip: {
        description: "clusterip",
        endpoints: clusterEndpoints,
        receiver: receiver("ditg-receiver-clusterip", "198.19.0.22"),
        client: { kind: "pod", namespace: "ditg", deployment: "ditg-client", nodeAddress: "198.19.0.21", podLogDir: "/logs", nodeLogDir: "/var/lib/ditg-client-logs", setupProbe: "/opt/testbed/bin/connection-setup-probe" },
      },
    },
    ...over,
  });
}
const PATHS_CONFIG = { "testbed:workers": "2", "testbed:paths": '["nodeport-local","nodeport-remote","clusterip"]' };

describe("CloudBackend on the paths beyond the paper's", () => {
  it("sends each path's flows from its client to its Service, and fetches the logs from the nodes its pods run on", async () => {
    const { backend, shell } = await openFake({ config: stackConfig(PATHS_CONFIG), outputs: pathsOutputs() });
    expect(backend.paths).toEqual(["nodeport-local", "nodeport-remote", "clusterip"]);
    expect(shell.access!.hosts).toEqual({ client: "198.19.0.10", master: "198.19.0.20", receiver: "198.19.0.21", worker2: "198.19.0.22" });
    const store = ResultStore.open(path.join(dir, "r.db"));
    const def: CampaignDefinition = { ...definition(backend), profiles: ["throughput", "latency"], services: [1], families: ["ipv4"], paths: [...backend.paths] };
    const id = campaignIdFor(def);
    const plan = planCampaign(id, def);
    store.ensureCampaign(id, def, plan);
    calls.length = 0;
    await runCampaign({ store, campaignId: id, backend, decoder, judge: () => ({ ok: true }), retries: 0 });
    expect(store.results(id).map((r) => r.status)).toEqual(Array(6).fill("ok"));
    const flowOf = (logName: string) => calls.find((c) => / ITGSend /.test(c) && c.includes(logName))!;
    for (const run of plan) {
      const logName = `${run.runId}-1`;
      const flow = flowOf(logName);
      const path_ = run.key.path ?? "nodeport-local";
      if (path_ === "clusterip") {
        // The client pod sends, through kubectl exec on the control-plane node; its log lands on worker 1.
        expect(flow).toMatch(/^run master: sudo kubectl --kubeconfig \/etc\/kubernetes\/admin.conf -n ditg exec deployment\/ditg-client -- timeout --kill-after=5 \d+ ITGSend /);
        expect(flow).toContain("-a 10.96.15.253 -Sdp 9000 -rp 31003");
        expect(flow).toContain(`-l /logs/${logName}.slog`);
      } else {
        expect(flow).toMatch(/^run client: timeout --kill-after=5 \d+ ITGSend /);
        expect(flow).toContain(path_ === "nodeport-remote" ? "-a 198.18.1.21 -Sdp 30902 -rp 31002" : "-a 198.18.1.21 -Sdp 30900 -rp 31000");
      }
      const receiverHost = path_ === "nodeport-local" ? "receiver" : "worker2";
      expect(calls).toContain(`fetch ${receiverHost}:/var/lib/ditg-logs/${logName}.rlog`);
      expect(calls).toContain(`run ${receiverHost}: sudo rm -f /var/lib/ditg-logs/${logName}.rlog`);
      if (run.key.profile === "latency") {
        const sender = path_ === "clusterip" ? `receiver:/var/lib/ditg-client-logs/${logName}.slog` : `client:/var/tmp/testbed-ditg/${logName}.slog`;
        expect(calls).toContain(`fetch ${sender}`);
      }
    }
    // Every receiver node is checked: worker 1 runs the paper's receiver (two signaling ports here), worker 2 the other two paths'.
    expect(calls).toContain("run receiver: pgrep -c -x ITGRecv");
    expect(calls).toContain("run worker2: pgrep -c -x ITGRecv");
    store.close();
    await backend.teardown();
  });

  it("runs a setup run of the clusterip path: the listener in that path's receiver pod on worker 2, the probe in the client pod", async () => {
    const { backend } = await openFake({ config: stackConfig(PATHS_CONFIG), outputs: pathsOutputs() });
    calls.length = 0;
    const key = { dataplane: "ebpf", family: "ipv4", profile: "setup", services: 1, repetition: 0, path: "clusterip" } as const;
    const outcome = await backend.runFlow(key, { logName: "s1", durationS: 1, traffic: setupTraffic(200) });
    expect(calls[0]).toMatch(/^run worker2: pids="\$\(pgrep -x ITGRecv\)"/);
    expect(calls[0]).toContain('if [ "${pod%-*}" = ditg-receiver-clusterip ]; then pid="$p"');
    expect(calls[0]).toContain("connection-setup-probe listen 31003");
    expect(calls[1]).toBe("run master: sudo kubectl --kubeconfig /etc/kubernetes/admin.conf -n ditg exec deployment/ditg-client -- /opt/testbed/bin/connection-setup-probe probe 10.96.15.253 31003 200 1000 1024 1233 1000 2>&1");
    expect(calls[2]).toBe("run worker2: sudo kill 4242 2>/dev/null; true");
    expect(outcome.senderOutput).toBe("connection setup: 200 connections, 200 established, 0 failed");
    await backend.teardown();
  });

  it("is alive only when every receiver node runs its receivers, and restarts every path's receiver", async () => {
    const { backend, shell } = await openFake({ config: stackConfig(PATHS_CONFIG), outputs: pathsOutputs() });
    // Worker 1: the paper's receiver, one ITGRecv per signaling port (2 here); worker 2: one per path (2).
    shell.receivers = 2;
    expect(await backend.receiverAlive()).toBe(true);
    shell.receivers = 1;
    expect(await backend.receiverAlive()).toBe(false);
    calls.length = 0;
    await backend.restartReceiver();
    expect(calls.filter((c) => c.includes("rollout restart")).map((c) => /deployment\/(\S+)/.exec(c)![1])).toEqual(["ditg-receiver", "ditg-receiver-remote", "ditg-receiver-clusterip"]);
    await backend.teardown();
  });

  it("serves only the paths of testbed:paths that the outputs describe, and refuses a run on another", async () => {
    const { backend } = await openFake({ config: stackConfig({ "testbed:workers": "2", "testbed:paths": '["nodeport-local","nodeport-remote"]' }), outputs: pathsOutputs() });
    expect(backend.paths).toEqual(["nodeport-local", "nodeport-remote"]);
    const key = { dataplane: "ebpf", family: "ipv4", profile: "latency", services: 1, repetition: 0, path: "clusterip" } as const;
    await expect(backend.runFlow(key, { logName: "x", durationS: 1, traffic: setupTraffic(200) })).rejects.toThrow(
      "stack ebpf does not serve the clusterip path; accepted: nodeport-local, nodeport-remote (testbed:paths, then `pulumi up --stack ebpf`)",
    );
    await backend.teardown();
  });

  it("refuses ditgPaths whose hosts disagree or whose client is incomplete, naming the field", () => {
    const paper = { endpoints: { ipv4: { address: "198.18.1.21", signalingPort: 30900, dataPort: 31000 } }, receiver: { namespace: "ditg", deployment: "ditg-receiver", nodeAddress: "198.19.0.21", podLogDir: "/logs", nodeLogDir: "/l" } };
    const raw = pathsOutputs().ditgPaths!.value as Record<string, Record<string, unknown>>;
    expect(Object.keys(cloudPaths("s", undefined, paper).paths)).toEqual(["nodeport-local"]);
    expect(cloudPaths("s", raw, paper).workerHosts).toEqual({ worker2: "198.19.0.22" });
    const clientOn = (nodeAddress: string) => ({ ...raw, clusterip: { ...raw.clusterip, client: { ...(raw.clusterip!.client as object), nodeAddress } } });
    expect(() => cloudPaths("s", clientOn("198.19.0.99"), paper)).toThrow("stack s has no usable output `ditgPaths` (clusterip: worker 1 is 198.19.0.21 (ditgReceiver.nodeAddress), not 198.19.0.99)");
    const remoteOn = { ...raw, clusterip: { ...raw.clusterip, receiver: { ...(raw.clusterip!.receiver as object), nodeAddress: "198.19.0.23" } } };
    expect(() => cloudPaths("s", remoteOn, paper)).toThrow("clusterip: worker 2 is 198.19.0.22 for another path, not 198.19.0.23");
    const noProbe = { ...raw, clusterip: { ...raw.clusterip, client: { kind: "pod", namespace: "ditg", deployment: "ditg-client", nodeAddress: "198.19.0.21", podLogDir: "/logs", nodeLogDir: "/x" } } };
    expect(() => cloudPaths("s", noProbe, paper)).toThrow("clusterip.client: {kind: \"pod\", namespace, deployment, nodeAddress, podLogDir, nodeLogDir, setupProbe}");
    expect(() => cloudPaths("s", { podpath: {} }, paper)).toThrow("podpath: not a path; accepted: nodeport-local, nodeport-remote, clusterip");
  });
});

describe("CloudBackend setup errors", () => {
  it("names the missing SSH key and how to set it", async () => {
    await expect(openFake({ config: stackConfig({ "testbed:sshPrivateKey": undefined }) })).rejects.toThrow(
      "stack ebpf has no SSH private key in testbed:sshPrivateKey (needed to reach the client through the bastion); set it with `pulumi config set --stack ebpf --secret testbed:sshPrivateKey < ~/.ssh/id_ed25519`",
    );
    await expect(openFake({ config: stackConfig({ "testbed:sshPrivateKey": "ssh-ed25519 AAAA me@host" }) })).rejects.toThrow(
      /testbed:sshPrivateKey of stack ebpf is not a private key file's text; accepted: the private half of testbed:sshPublicKey/,
    );
    expect(calls).toEqual([]);
  });

  it("names a missing or malformed stack output", async () => {
    await expect(openFake({ outputs: stackOutputs({ clientAddress: undefined }) })).rejects.toThrow(
      "stack ebpf has no usable output `clientAddress` (the client VM's management address); deploy the stack with `pulumi up --stack ebpf`, whose program exports it",
    );
    await expect(openFake({ outputs: stackOutputs({ ditgEndpoints: { ipv4: { address: "198.18.1.21" } } }) })).rejects.toThrow(
      /no usable output `ditgEndpoints` \(ipv4: \{address, signalingPort, dataPort, alternate\?: \{signalingPort, dataPort\}\}\)/,
    );
    const halfAlternate = { ipv4: { address: "198.18.1.21", signalingPort: 30900, dataPort: 31000, alternate: { signalingPort: 30902 } } };
    await expect(openFake({ outputs: stackOutputs({ ditgEndpoints: halfAlternate }) })).rejects.toThrow(/no usable output `ditgEndpoints` \(ipv4: \{address, signalingPort, dataPort, alternate\?/);
  });

  it("alternates the D-ITG flows between the receiver pod's two ITGRecv where the stack exports the second, and stamps both data ports", async () => {
    const ditgEndpoints = {
      ipv4: { address: "198.18.1.21", signalingPort: 30900, dataPort: 31000, alternate: { signalingPort: 30902, dataPort: 31002 } },
      ipv6: { address: "2001:2:0:20::21", signalingPort: 30900, dataPort: 31000, alternate: { signalingPort: 30902, dataPort: 31002 } },
    };
    expect(endpointTargets(ditgEndpoints.ipv4)).toEqual({
      target: { address: "198.18.1.21", signalingPort: 30900, dataPort: 31000 },
      alternate: { address: "198.18.1.21", signalingPort: 30902, dataPort: 31002 },
    });
    expect(endpointTargets({ address: "198.18.1.21", signalingPort: 30900, dataPort: 31000 })).toEqual({ target: { address: "198.18.1.21", signalingPort: 30900, dataPort: 31000 } });
    const { backend, shell } = await openFake({ outputs: stackOutputs({ ditgEndpoints }) });
    // Alive only while the receiver pod runs both ITGRecv.
    shell.receivers = 1;
    expect(await backend.receiverAlive()).toBe(false);
    shell.receivers = 2;
    expect(await backend.receiverAlive()).toBe(true);
    expect(receiversPerHost(Object.values(backend.lab.paths) as CloudPath[])).toEqual(new Map([["receiver", 2]]));
    calls.length = 0;
    const traffic = campaignTraffic(backend.scenario.traffic);
    const key = (profile: "throughput" | "latency" | "setup", repetition: number) => ({ dataplane: backend.scenario.dataplane, family: "ipv4" as const, profile, services: 1, repetition });
    for (const [i, profile] of (["latency", "throughput", "setup", "latency", "latency"] as const).entries()) {
      await backend.runFlow(key(profile, i), { logName: `alt-${i}`, durationS: 1, traffic: traffic[profile] });
    }
    const sent = calls.filter((c) => / ITGSend /.test(c)).map((c) => /-Sdp (\d+) -rp (\d+)/.exec(c)!.slice(1).join("/"));
    expect(sent).toEqual(["30900/31000", "30902/31002", "30900/31000", "30902/31002"]);
    // The setup run (between the second and third flows) listens on the data port of the ITGRecv the next flow takes.
    expect(calls.find((c) => c.includes("connection-setup-probe") && c.startsWith("run client"))).toMatch(/ 31000\b/);
  });

  it("says the Pulumi CLI is missing when `pulumi` is not on PATH", async () => {
    const saved = process.env.PATH;
    process.env.PATH = dir;
    try {
      expect(findOnPath("pulumi")).toBeUndefined();
      await expect(PulumiStack.select("ebpf", dir)).rejects.toThrow(
        /^the Pulumi CLI \(`pulumi`\) is not on PATH; `testbed campaign --stack ebpf` reads the stack's outputs and updates its Service count through it/,
      );
    } finally {
      process.env.PATH = saved;
    }
  });

  it("says the stack does not exist (Pulumi CLI stand-in answering like the real one)", async () => {
    const bin = path.join(dir, "bin");
    execFileSync("mkdir", ["-p", bin]);
    // The messages of pulumi 3.x for `version` and for selecting an unknown stack.
    writeFileSync(
      path.join(bin, "pulumi"),
      `#!/bin/sh\ncase "$1" in\n  version) echo v3.248.0 ;;\n  stack) echo "error: no stack named '$4' found" >&2; exit 255 ;;\n  *) exit 1 ;;\nesac\n`,
    );
    chmodSync(path.join(bin, "pulumi"), 0o755);
    const saved = process.env.PATH;
    process.env.PATH = `${bin}${path.delimiter}${saved}`;
    try {
      await expect(PulumiStack.select("nope", dir)).rejects.toThrow(
        `stack nope does not exist in the Pulumi project at ${dir}; accepted: an existing, deployed stack (see \`pulumi stack ls\`), e.g. iptables or ebpf after \`pulumi up --stack nope\``,
      );
    } finally {
      process.env.PATH = saved;
    }
  });

  it("says SSH to the bastion is refused, with real ssh against a closed loopback port", async () => {
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, "127.0.0.1", () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => resolve(p));
      });
    });
    const keyFile = path.join(dir, "id");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", keyFile]);
    const stack = new FakeStack(
      "ebpf",
      stackConfig({ "testbed:sshPrivateKey": readFileSync(keyFile, "utf8") }),
      stackOutputs({ bastionAddress: "127.0.0.1", bastionSshPort: port }),
      calls,
    );
    // ProxyJump: ssh only ever connects to the bastion (here 127.0.0.1), never to the lab addresses.
    await expect(CloudBackend.open({ stack, shell: (access) => new SshShell(access) })).rejects.toThrow(
      new RegExp(`^cannot reach the client \\(198\\.19\\.0\\.10\\) through the bastion 127\\.0\\.0\\.1 over SSH: connection refused; check that the stack is deployed`),
    );
  });

  it("explains a rejected key and writes an ssh_config that jumps through the bastion", () => {
    const access: SshAccess = {
      user: "ubuntu",
      privateKey: KEY,
      bastion: { address: "203.0.113.50", port: 22 },
      hosts: { client: "198.19.0.10", master: "198.19.0.20", receiver: "198.19.0.21" },
    };
    expect(describeSshFailure("bastion", access, "ubuntu@203.0.113.50: Permission denied (publickey).\n")).toBe(
      "SSH to the bastion (203.0.113.50:22) as ubuntu was refused (permission denied): testbed:sshPrivateKey must be the private half of testbed:sshPublicKey (ubuntu@203.0.113.50: Permission denied (publickey).)",
    );
    const cfg = sshConfig(access, "/run/x", "/run/x/id");
    expect(cfg).toContain("Host client\n  HostName 198.19.0.10\n  ProxyJump bastion\n");
    expect(cfg).toContain("Host bastion\n  HostName 203.0.113.50\n  Port 22\n");
    expect(cfg).toContain("  IdentityFile /run/x/id\n  IdentitiesOnly yes\n  BatchMode yes");
    expect(new CloudSetupError("x").name).toBe("CloudSetupError");
  });
});
