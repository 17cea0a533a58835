// The hop probes on the paths beyond the paper's, with real traffic: latency and setup runs on
// nodeport-remote and clusterip through kube-proxy's iptables and nftables modes, both families, each
// run with its path's probes attached (and every other path's detached), cut into that path's
// sections, which must be there, in path order, and add up to the exact delays. Small: few Services,
// short flows at a rate a busy 2-core host sustains. Needs Linux, root and the lab's tools.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LabBackend, labProblem } from "../../backends/lab.js";
import { HOP_PREF, hopAttachments } from "../../lab/hops/hop-probes.js";
import { decodeFlow } from "../../measure/ditg-pairing.js";
import { decomposeRun, END_TO_END, handshakeSections, HOP_SUM_TOLERANCE_S, PATH_HOPS, SOCKET_LB_SECTION, type HopDirection, type RunHops } from "../../measure/hops.js";
import { run as topologyRun } from "../../lab/netns.js";
import type { RunProfile, TrafficProfile } from "../../measure/types.js";
import type { Family } from "../../scenario/cidr.js";
import type { ServicePath } from "../../scenario/paths.js";
import type { Dataplane } from "../../scenario/schema.js";
import { sampledPairs } from "./hop-sampled-pairs.js";

const problem = labProblem();
const LATENCY: TrafficProfile = { protocol: "UDP", meter: "rttm", payloadBytes: 512, packetsPerSecond: 200 };
const SETUP: TrafficProfile = { protocol: "TCP", meter: "rttm", payloadBytes: 0, packetsPerSecond: 50 };
const FLOW_S = 2;
const SERVICES = 5;
const PATHS_PROBED = ["nodeport-remote", "clusterip"] as const satisfies readonly ServicePath[];
const DATAPLANES = ["iptables", "nftables"] as const satisfies readonly Dataplane[];

const names = (hops: RunHops) => hops.sections.map((s) => `${s.direction} ${s.section}`);
const expected = (sections: Readonly<Record<HopDirection, readonly string[]>>, withEndToEnd: boolean) =>
  (["forward", "return"] as const).flatMap((d) => [...sections[d].map((s) => `${d} ${s}`), ...(withEndToEnd ? [`${d} ${END_TO_END}`] : [])]);

describe.skipIf(problem !== undefined)(`hop probes on the paths beyond the paper's${problem ? ` (skipped: ${problem})` : ""}`, () => {
  let backend: LabBackend;
  let run = 0;

  async function measure(path: ServicePath, dataplane: Dataplane, profile: RunProfile, family: Family) {
    if (backend.step?.dataplane !== dataplane) await backend.prepare({ dataplane, services: SERVICES });
    const traffic = profile === "setup" ? SETUP : LATENCY;
    const outcome = await backend.runFlow({ dataplane, family, profile, services: SERVICES, repetition: run, path }, { logName: `hops-paths-${run++}`, durationS: FLOW_S, traffic });
    // Only the run's path's probes were attached for it.
    for (const [other, probes] of [["nodeport-local", backend.hops], ...backend.pathHops.entries()] as const) {
      expect(probes!.attached, `${other}'s probes during a ${path} run`).toBe(other === path);
    }
    const logs = await backend.collectLog(outcome);
    if (!logs.hops) throw new Error(`the ${path} ${profile} run carried no hop capture`);
    expect(logs.hops.path).toBe(path);
    const decoded = await decodeFlow({ ...logs, oneWay: logs.receiverLog !== undefined });
    const hops = decomposeRun(logs.hops, logs);
    return { hops, paired: decoded.total.packets, sampled: logs.receiverLog !== undefined ? sampledPairs(logs, hops.check.sampleEvery) : NaN };
  }

  beforeAll(async () => {
    backend = await LabBackend.start({ linkMbps: 0, paths: ["nodeport-local", ...PATHS_PROBED] });
  }, 180_000);

  afterAll(async () => {
    await backend?.teardown();
  }, 60_000);

  it("attaches each path's probes where its packets pass: worker 1's uplink both ways, worker 2, its pod, the client pod", () => {
    const { plan } = backend.topology;
    const where = (path: ServicePath) => hopAttachments(plan, path).map((a) => `${a.role} ${a.ifname} ${a.direction} ${a.names.join("+")}`);
    const p = plan.prefix;
    expect(where("nodeport-remote")).toEqual([
      `client ${p}-cli egress client-out`, `router ${p}-rac ingress router-in`, `router ${p}-rdc egress router-out`,
      `worker ${p}-up ingress uplink-in+uplink-in-return`, `worker ${p}-up egress uplink-out-forward+uplink-out`,
      `worker2 ${p}-up2 ingress node2-uplink-in`, `worker2 ${p}-lxc2 egress pod2-veth-out`, `pod2 ${p}-eth2 ingress pod2-in`,
      `pod2 ${p}-eth2 egress pod2-out`, `worker2 ${p}-lxc2 ingress pod2-veth-in`, `worker2 ${p}-up2 egress node2-uplink-out`,
      `router ${p}-rdc ingress router-in-return`, `router ${p}-rac egress router-out-return`, `client ${p}-cli ingress client-in`,
    ]);
    expect(where("clusterip")).toEqual([
      `clientpod ${p}-ethc egress client-pod-out`, `worker ${p}-lxcc ingress client-pod-veth-in`,
      `worker ${p}-up egress uplink-out-forward+uplink-out`,
      `worker2 ${p}-up2 ingress node2-uplink-in`, `worker2 ${p}-lxc2 egress pod2-veth-out`, `pod2 ${p}-eth2 ingress pod2-in`,
      `pod2 ${p}-eth2 egress pod2-out`, `worker2 ${p}-lxc2 ingress pod2-veth-in`, `worker2 ${p}-up2 egress node2-uplink-out`,
      `worker ${p}-up ingress uplink-in+uplink-in-return`,
      `worker ${p}-lxcc egress client-pod-veth-out`, `clientpod ${p}-ethc ingress client-pod-in`,
    ]);
    // Every point of a path's decomposition has a probe of that path.
    for (const path of PATHS_PROBED) {
      const stamped = hopAttachments(plan, path).flatMap((a) => a.points);
      for (const point of [...PATH_HOPS[path].points.forward, ...PATH_HOPS[path].points.return]) expect(stamped, `${path} point ${point}`).toContain(point);
    }
  });

  const cases = PATHS_PROBED.flatMap((path) => DATAPLANES.flatMap((d) => (["ipv4", "ipv6"] as const).map((f) => [path, d, f] as const)));

  it.each(cases)("%s, %s, %s: the latency run's packets are cut into the path's sections, in path order, adding up to the exact delays", async (path, dataplane, family) => {
    const m = await measure(path, dataplane, "latency", family);
    const { check } = m.hops;
    expect(m.paired).toBeGreaterThan((LATENCY.packetsPerSecond * FLOW_S) / 2);
    expect(names(m.hops)).toEqual(expected(PATH_HOPS[path].sections, true));
    // 1 in sampleEvery of the paired packets, each with every stamp of the path, no other packet with any.
    expect(check.sampleEvery).toBeGreaterThan(1);
    expect(m.sampled).toBeGreaterThan(m.paired / (2 * check.sampleEvery));
    expect(check).toMatchObject({ keying: "ditg", packets: m.sampled, decomposed: m.sampled, incomplete: 0, unsampledStamps: 0, outOfOrder: 0, droppedStamps: 0, unreadStamps: 0 });
    expect(Math.abs(check.residualForwardS!)).toBeLessThanOrEqual(HOP_SUM_TOLERANCE_S);
    expect(Math.abs(check.residualRoundTripS!)).toBeLessThanOrEqual(HOP_SUM_TOLERANCE_S);
    expect(check.addsUp).toBe(true);
    const sum = (d: HopDirection) => m.hops.sections.filter((s) => s.direction === d && s.section !== END_TO_END).reduce((a, s) => a + s.meanS, 0);
    const endToEnd = (d: HopDirection) => m.hops.sections.find((s) => s.direction === d && s.section === END_TO_END)!.meanS;
    expect(sum("forward")).toBeCloseTo(endToEnd("forward"), 9);
    expect(sum("return")).toBeCloseTo(endToEnd("return"), 9);
    // A kernel section between two probes takes time: a probe at the wrong place or direction would leave one at zero or below.
    for (const s of m.hops.sections) {
      expect(s.packets, `${s.direction} ${s.section}`).toBe(m.sampled);
      if (!["client-stack", "client-pod-stack", "pod-delivery", "turnaround"].includes(s.section)) expect(s.p50S, `${s.direction} ${s.section}`).toBeGreaterThan(0);
    }
  }, 180_000);

  it.each(cases)("%s, %s, %s: the setup run's handshakes are stamped at every point of the path, through worker 1's Service dataplane", async (path, dataplane, family) => {
    const m = await measure(path, dataplane, "setup", family);
    const { check } = m.hops;
    expect(check.keying).toBe("handshake");
    expect(check.packets).toBeGreaterThanOrEqual(SETUP.packetsPerSecond * FLOW_S * 0.9);
    expect(check).toMatchObject({ decomposed: check.packets, incomplete: 0, outOfOrder: 0, droppedStamps: 0, unreadStamps: 0, addsUp: true });
    expect(names(m.hops)).toEqual(expected(handshakeSections(PATH_HOPS[path]), false));
    const service = m.hops.sections.find((s) => s.direction === "forward" && s.section === PATH_HOPS[path].serviceSection)!;
    expect(service.packets).toBe(check.packets);
    expect(service.p50S).toBeGreaterThan(0);
    if (path === "clusterip") {
      // Each handshake from its connect call: the container's cgroup hook, then the pod's (nothing of kube-proxy between them), then the SYN.
      const socket = m.hops.sections.find((s) => s.direction === "forward" && s.section === SOCKET_LB_SECTION)!;
      expect(socket.packets).toBe(check.packets);
      expect(socket.p50S).toBeGreaterThan(0);
    }
  }, 180_000);

  it("a throughput run detaches every path's probes", async () => {
    await backend.prepare({ dataplane: "iptables", services: SERVICES });
    const outcome = await backend.runFlow(
      { dataplane: "iptables", family: "ipv4", profile: "throughput", services: SERVICES, repetition: run, path: "nodeport-remote" },
      { logName: `hops-paths-${run++}`, durationS: 1, traffic: { protocol: "TCP", meter: "owdm", payloadBytes: 8192, packetsPerSecond: 200 } },
    );
    expect(outcome.hops).toBeUndefined();
    await backend.collectLog(outcome);
    for (const probes of [backend.hops!, ...backend.pathHops.values()]) expect(probes.attached).toBe(false);
    // The connect call's hooks are off the client pod's cgroups too.
    const pod = backend.topology.plan.clientPod!;
    for (const cgroup of [pod.containerCgroup, pod.cgroup]) expect(topologyRun(["bpftool", "-j", "cgroup", "show", cgroup]).trim() || "[]", cgroup).toBe("[]");
    const { topology } = backend;
    for (const direction of ["ingress", "egress"] as const) {
      expect(topology.run("worker", ["tc", "filter", "show", "dev", topology.plan.worker.uplink, direction, "pref", String(HOP_PREF[direction])]).trim()).toBe("");
    }
  }, 120_000);
});
