// The worker's hop probes (backends/worker-hops/) on a lab worker, as the cloud backend would use them
// on a stack's worker: the module's own scripts over a shell into the lab's worker namespace, the C
// built there by the worker's recipe, the perf event array forced (the paper's 5.4 has no ring
// buffer), real D-ITG latency flows and real TCP handshakes of the setup profile through each of the
// lab's three dataplanes. Needs Linux, root and the lab's tools; run under the kernel lock.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { machine, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LabBackend, labProblem } from "../../backends/lab.js";
import { WorkerHops, WorkerHopsError, type WorkerRun } from "../../backends/worker-hops/module.js";
import { isWorkerProbe, WORKER_PLACES, WORKER_PROBE_OBJECT, WORKER_PROBE_PREF } from "../../backends/worker-hops/points.js";
import { run as runCommand } from "../../lab/netns.js";
import { decodeFlow } from "../../measure/ditg-pairing.js";
import { decomposeRun, WORKER_SECTIONS, WORKER_SPAN, type HopCapture, type RunHops } from "../../measure/hops.js";
import type { RunProfile, TrafficProfile } from "../../measure/types.js";
import type { Family } from "../../scenario/cidr.js";
import { DATAPLANES, type Dataplane } from "../../scenario/schema.js";
import { bpfObjectGone, mounted } from "./bpf-objects.js";
import { builtSampleEvery, sampledPairs } from "./hop-sampled-pairs.js";
import { namespaceWorkerShell } from "./namespace-worker-shell.js";

const problem = labProblem();
const LATENCY: TrafficProfile = { protocol: "UDP", meter: "rttm", payloadBytes: 512, packetsPerSecond: 200 };
const FLOW_S = 2;
const SETUP: TrafficProfile = { protocol: "TCP", meter: "rttm", payloadBytes: 0, packetsPerSecond: 100 };
const SERVICES = 200;

interface Measured {
  readonly hops: RunHops;
  readonly capture: HopCapture;
  readonly run: WorkerRun;
  readonly paired: number;
  /** Of the paired packets, those the probes sample (a D-ITG run; read off the logs). */
  readonly sampled: number;
}

const sectionsOf = (hops: RunHops) => hops.sections.map((s) => `${s.direction} ${s.section}`);
/** True while the process runs (a zombie waiting for its reaper does not). */
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
};

describe.skipIf(problem !== undefined)(`the worker's hop probes on a lab worker${problem ? ` (skipped: ${problem})` : ""}`, () => {
  let backend: LabBackend;
  let hops: WorkerHops;
  let localDir: string;
  let runs = 0;
  const shell = () => namespaceWorkerShell(backend.topology.namespace("worker"));
  const workDir = (name: string) => join(backend.topology.runDir, name);
  const options = () => ({
    dataPort: backend.scenario.receiver.dataPort,
    // The lab's flows alternate between the receiver pod's two ITGRecv: both data ports are stamped.
    alternateDataPort: backend.scenario.receiver.alternate.dataPort,
    receiver: { pid: backend.receiverPid! },
    dataNic: backend.topology.plan.worker.uplink,
    output: "perf" as const,
  });

  /** One run through the lab with the worker's probes around it, decoded as the campaign decodes it. */
  async function measure(probes: WorkerHops, dataplane: Dataplane, profile: RunProfile, traffic: TrafficProfile, family: Family = "ipv4", during?: (run: WorkerRun) => void): Promise<Measured> {
    if (backend.step?.dataplane !== dataplane || backend.step.services !== SERVICES) await backend.prepare({ dataplane, services: SERVICES });
    const name = `worker-${runs++}`;
    const run = (await probes.begin(profile, name, { maxSeconds: FLOW_S }))!;
    const logs = await (async () => {
      try {
        during?.(run);
        const flow = await backend.runFlow({ dataplane, family, profile, services: SERVICES, repetition: runs }, { logName: name, durationS: FLOW_S, traffic });
        return await backend.collectLog(flow);
      } catch (error) {
        await probes.abandon(run);
        throw error;
      }
    })();
    const capture = await probes.end(run, localDir);
    const decoded = await decodeFlow({ ...logs, oneWay: logs.receiverLog !== undefined });
    const hops = decomposeRun(capture, logs);
    return { hops, capture, run, paired: decoded.total.packets, sampled: logs.receiverLog !== undefined ? sampledPairs(logs, hops.check.sampleEvery) : NaN };
  }

  beforeAll(async () => {
    backend = await LabBackend.start({ linkMbps: 0, hops: false });
    localDir = mkdtempSync(join(tmpdir(), `${backend.topology.prefix}-worker-hops-`));
    hops = await WorkerHops.install(shell(), { ...options(), workDir: workDir("worker-hops") });
  }, 180_000);

  afterAll(async () => {
    await hops?.remove();
    await backend?.teardown();
    if (localDir) rmSync(localDir, { recursive: true, force: true });
  }, 120_000);

  it("builds on the worker for its tc (built with libbpf here: pinned BTF maps), with the perf event array forced", () => {
    expect(hops.build.maps).toBe(runCommand(["tc", "-V"]).includes("libbpf") ? "btf-pinned" : "legacy");
    expect(hops.build.output).toBe("perf");
    expect(existsSync(join(hops.workDir, WORKER_PROBE_OBJECT))).toBe(true);
    expect(mounted(join(hops.workDir, "bpffs"))).toBe(true);
  });

  it.each(DATAPLANES.flatMap((d) => (["ipv4", "ipv6"] as const).map((f) => [d, f] as const)))(
    "%s, %s: every paired packet is cut into the worker's sections, which add up to its spans, inside its round trip",
    async (dataplane, family) => {
      const m = await measure(hops, dataplane, "latency", LATENCY, family);
      const { check } = m.hops;
      // A busy host's ITGSend skips send slots; half the flow is plenty for an identity per packet.
      expect(m.paired).toBeGreaterThan((LATENCY.packetsPerSecond * FLOW_S) / 2);
      // 1 in sampleEvery of the paired packets, each with every worker stamp, no other packet with any.
      expect(check.sampleEvery).toBeGreaterThan(1);
      expect(m.sampled).toBeGreaterThan(m.paired / (2 * check.sampleEvery));
      expect(check).toMatchObject({ scope: "worker", keying: "ditg", packets: m.sampled, decomposed: m.sampled, incomplete: 0, unsampledStamps: 0, outOfOrder: 0, droppedStamps: 0, unreadStamps: 0, addsUp: true });
      expect(check.bypassed).toBeUndefined();
      expect(m.capture.lost).toBe(0);
      expect(sectionsOf(m.hops)).toEqual([
        ...WORKER_SECTIONS.forward.map((s) => `forward ${s}`),
        ...WORKER_SECTIONS.return.map((s) => `return ${s}`),
        `forward ${WORKER_SPAN}`,
        `return ${WORKER_SPAN}`,
      ]);
      // Every section takes time: a probe at the wrong place or a wrong key would leave one at zero or below.
      for (const s of m.hops.sections) {
        expect(s.packets, `${s.direction} ${s.section}`).toBe(m.sampled);
        expect(s.p50S, `${s.direction} ${s.section}`).toBeGreaterThan(0);
      }
      // Only the worker's points stamped.
      m.capture.stamped.forEach((n, p) => expect(n > 0, `point ${p}`).toBe(p >= 3 && p <= 8));
      // Each probe is the first filter of its hook; the eBPF dataplane's programs run after it, on both sides.
      for (const hook of m.run.hooks) expect(isWorkerProbe(hook.filters[0]!), `${hook.iface} ${hook.direction}`).toBe(true);
      if (dataplane === "ebpf") {
        const nic = (direction: string) => m.run.hooks.find((h) => h.iface === "nic" && h.direction === direction)!.filters.map((f) => f.name);
        expect(nic("ingress")).toEqual([`${WORKER_PROBE_OBJECT}:[tc/hf_uplink_in]`, "service-lb.o:[tc/nodeport]"]);
        expect(nic("egress")).toEqual([`${WORKER_PROBE_OBJECT}:[tc/hr_uplink_out]`, "service-lb.o:[tc/revnat]"]);
      }
    },
    120_000,
  );

  it.each([...DATAPLANES])("%s: the setup profile's SYNs are stamped through the worker's Service dataplane", async (dataplane) => {
    const m = await measure(hops, dataplane, "setup", SETUP);
    const { check } = m.hops;
    expect(check.keying).toBe("handshake");
    expect(check.packets).toBeGreaterThanOrEqual(190);
    expect(check).toMatchObject({ scope: "worker", decomposed: check.packets, incomplete: 0, outOfOrder: 0, droppedStamps: 0, unreadStamps: 0, addsUp: true });
    const first = m.hops.sections.find((s) => s.direction === "forward" && s.section === "service-dataplane")!;
    expect(first.packets).toBe(check.packets);
    expect(first.p50S).toBeGreaterThan(0);
  }, 120_000);

  it("a reader that cannot keep up: every stamp the perf rings could not take is counted, and the run does not add up", async () => {
    // One page per CPU's ring (about a hundred stamps), and the reader stopped while the flow runs.
    const small = await WorkerHops.install(shell(), { ...options(), workDir: workDir("worker-hops-small"), perfPages: 1 });
    try {
      const m = await measure(small, "iptables", "latency", { ...LATENCY, packetsPerSecond: 500 }, "ipv4", (run) => {
        const pid = Number(readFileSync(join(small.workDir, "runs", run.name, "pid"), "utf8"));
        process.kill(pid, "SIGSTOP");
        setTimeout(() => process.kill(pid, "SIGCONT"), 1500);
      });
      const dropped = m.capture.dropped.reduce((a, b) => a + b, 0);
      expect(dropped).toBeGreaterThan(0);
      // The rings report their own losses too (a ring reports them with its next record, if any came).
      expect(m.capture.lost).toBeGreaterThan(0);
      expect(m.capture.lost).toBeLessThanOrEqual(dropped);
      // What the kernel stamped, the reader read: nothing lost silently.
      expect(m.capture.records).toBe(m.capture.stamped.reduce((a, b) => a + b, 0));
      expect(m.hops.check).toMatchObject({ droppedStamps: dropped, unreadStamps: 0, addsUp: false });
      expect(m.hops.check.incomplete).toBeGreaterThan(0);
    } finally {
      await small.remove();
    }
  }, 180_000);

  it("a direct-action program that returns TC_ACT_OK ends the chain: a probe after it never runs, and begin() refuses such a hook", async () => {
    await backend.prepare({ dataplane: "iptables", services: SERVICES });
    const { topology } = backend;
    const veth = topology.plan.worker.podVeth;
    const build = mkdtempSync(join(tmpdir(), `${topology.prefix}-ok-`));
    const ok = join(build, "ok.o");
    writeFileSync(join(build, "ok.c"), '#include <linux/pkt_cls.h>\n__attribute__((section("tc/ok"), used)) int ok(void *skb) { return TC_ACT_OK; }\nchar LICENSE[] __attribute__((section("license"), used)) = "GPL";\n');
    const multiarch = `/usr/include/${machine()}-linux-gnu`;
    execFileSync("clang", ["-O2", "-target", "bpf", ...(existsSync(multiarch) ? ["-I", multiarch] : []), "-c", join(build, "ok.c"), "-o", ok]);
    const tc = (...argv: string[]) => topology.run("worker", ["tc", ...argv], { env: { TC_BPF_MNT: join(hops.workDir, "bpffs") } });
    // Runs of the pod veth's probe on a packet to stamp: stamped, or dropped (no reader holds a perf ring now).
    const counts = () => {
      const dump = JSON.parse(runCommand(["bpftool", "-j", "map", "dump", "pinned", join(hops.workDir, "bpffs/tc/globals/hop_counts")])) as {
        formatted: { key: number; values: { value: { stamped: number; dropped: number } }[] };
      }[];
      return dump.find((e) => e.formatted.key === 4)!.formatted.values.reduce((a, v) => a + v.value.stamped + v.value.dropped, 0);
    };
    // The flow's round trips the probe samples.
    const flow = async () => {
      const outcome = await backend.runFlow({ dataplane: "iptables", family: "ipv4", profile: "latency", services: SERVICES, repetition: runs }, { logName: `chain-${runs++}`, durationS: 1, traffic: LATENCY });
      return sampledPairs(await backend.collectLog(outcome), builtSampleEvery());
    };
    topology.run("worker", ["tc", "qdisc", "add", "dev", veth, "clsact"]);
    try {
      tc("filter", "add", "dev", veth, "egress", "pref", String(WORKER_PROBE_PREF), "bpf", "da", "obj", ok, "sec", "tc/ok");
      const error = await hops.begin("latency", "refused", { maxSeconds: 5 }).catch((e: Error) => e);
      expect(error).toBeInstanceOf(WorkerHopsError);
      expect((error as Error).message).toContain(`${veth} egress: ok.o:[tc/ok] holds tc priority ${WORKER_PROBE_PREF}`);
      // Nothing attached by the refused begin, on any hook.
      for (const p of WORKER_PLACES.filter((x) => x.iface !== "pod")) {
        const device = p.iface === "nic" ? topology.plan.worker.uplink : veth;
        expect(topology.run("worker", ["tc", "filter", "show", "dev", device, p.direction])).not.toContain(WORKER_PROBE_OBJECT);
      }
      // The probe after the OK program: packets delivered, never stamped.
      tc("filter", "add", "dev", veth, "egress", "pref", "2", "bpf", "da", "obj", join(hops.workDir, WORKER_PROBE_OBJECT), "sec", "tc/hf_pod_veth");
      const before = counts();
      expect(await flow()).toBeGreaterThan(0);
      expect(counts()).toBe(before);
      // The same probe first: every sampled packet stamped.
      tc("filter", "del", "dev", veth, "egress", "pref", "2");
      tc("filter", "del", "dev", veth, "egress", "pref", String(WORKER_PROBE_PREF));
      tc("filter", "add", "dev", veth, "egress", "pref", String(WORKER_PROBE_PREF), "bpf", "da", "obj", join(hops.workDir, WORKER_PROBE_OBJECT), "sec", "tc/hf_pod_veth");
      tc("filter", "add", "dev", veth, "egress", "pref", "2", "bpf", "da", "obj", ok, "sec", "tc/ok");
      const delivered = await flow();
      expect(counts() - before).toBeGreaterThanOrEqual(delivered);
    } finally {
      topology.exec("worker", ["tc", "qdisc", "del", "dev", veth, "clsact"]);
      rmSync(build, { recursive: true, force: true });
    }
  }, 120_000);

  it("a crashed session's probes and reader are removed by the next install, and remove() leaves nothing on the worker", async () => {
    await backend.prepare({ dataplane: "ebpf", services: SERVICES });
    const { topology } = backend;
    const { uplink, podVeth } = topology.plan.worker;
    const dir = workDir("worker-hops-crash");
    // A session that dies with its probes attached and its reader running.
    const crashed = await WorkerHops.install(shell(), { ...options(), workDir: dir });
    const run = (await crashed.begin("latency", "orphan", { maxSeconds: 600 }))!;
    const orphan = Number(readFileSync(join(dir, "runs", run.name, "pid"), "utf8"));
    const mapId = (JSON.parse(runCommand(["bpftool", "-j", "map", "show", "pinned", join(dir, "bpffs/tc/globals/hop_events")])) as { id: number }).id;
    const next = await WorkerHops.install(shell(), { ...options(), workDir: dir });
    expect(alive(orphan)).toBe(false);
    expect(await bpfObjectGone("map", mapId)).toBe(true);
    const hooks = [[uplink, "ingress"], [uplink, "egress"], [podVeth, "ingress"], [podVeth, "egress"]] as const;
    for (const [dev, dir_] of hooks) expect(topology.run("worker", ["tc", "filter", "show", "dev", dev, dir_]), `${dev} ${dir_}`).not.toContain(WORKER_PROBE_OBJECT);
    // A probed run, then remove(): no filter, no qdisc the probes added, no mount, no file, no reader, no map.
    const last = (await next.begin("latency", "last", { maxSeconds: 60 }))!;
    const reader = Number(readFileSync(join(dir, "runs", last.name, "pid"), "utf8"));
    const maps = ["hop_events", "hop_counts"].map((m) => (JSON.parse(runCommand(["bpftool", "-j", "map", "show", "pinned", join(dir, "bpffs/tc/globals", m)])) as { id: number }).id);
    await next.abandon(last);
    await next.remove();
    expect(alive(reader)).toBe(false);
    for (const [dev, direction] of hooks) expect(topology.run("worker", ["tc", "filter", "show", "dev", dev, direction])).not.toContain(WORKER_PROBE_OBJECT);
    // The pod's veth and interface had no qdisc before the probes; the uplink keeps the eBPF dataplane's.
    expect(topology.run("worker", ["tc", "qdisc", "show", "dev", podVeth])).not.toMatch(/clsact/);
    expect(topology.run("pod", ["tc", "qdisc", "show", "dev", topology.plan.links.pod.host.ifname])).not.toMatch(/clsact/);
    expect(topology.run("worker", ["tc", "filter", "show", "dev", uplink, "ingress"])).toMatch(/service-lb\.o:\[tc\/nodeport\]/);
    expect(mounted(join(dir, "bpffs"))).toBe(false);
    expect(mounted(join(dir, "state/podns"))).toBe(false);
    expect(existsSync(dir)).toBe(false);
    for (const id of maps) expect(await bpfObjectGone("map", id), `map ${id}`).toBe(true);
  }, 180_000);
});
