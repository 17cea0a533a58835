// The eBPF model's socket load balancer on this kernel (clusterip path): a client pod on worker 1 to
// ClusterIPs whose only endpoint is the pod on worker 2, TCP and UDP over both families. The cgroup
// hooks translate at connect()/sendmsg(), so the packets leaving the client pod already carry the
// backend's address; replies read from the socket come from the ClusterIP. Without the hooks
// (a mutation: their links unpinned) the same checks fail.
import { existsSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Family } from "../../scenario/cidr.js";
import { echoProbe, startEchoListener, type EchoProtocol } from "../../lab/echo-probe.js";
import { setupEbpfDataplane, type EbpfDataplane } from "../../lab/dataplanes/ebpf/kernel.js";
import { SOCK_LB_HOOKS } from "../../lab/dataplanes/ebpf/sock-lb.js";
import { DEFAULT_IPTABLES_BACKEND, iptablesTools } from "../../lab/dataplanes/iptables/kernel.js";
import { LAB_SERVICE_SUBNETS } from "../../lab/lab-scenario.js";
import { exec, inNetns, run, startProcess } from "../../lab/netns.js";
import { inCgroup, mountType } from "../../lab/pod-cgroups.js";
import { createTopology, findRunObjects, labHostProblem, type LabTopology } from "../../lab/topology.js";
import { bpfObjectGone } from "./bpf-objects.js";
import { fixtureServiceSet } from "./ebpf-fixtures.js";

const hostProblem = labHostProblem();
const FAMILIES = ["ipv4", "ipv6"] as const;
const ANY: Record<Family, string> = { ipv4: "0.0.0.0", ipv6: "::" };
// svc-0: ClusterIP, port 80 -> targetPort 8000, TCP and UDP.
const services = fixtureServiceSet({ nodePort: 0, clusterIp: 2, protocols: ["TCP", "UDP"] });
const SERVICE = services.scaled[0]!;
const TARGET_PORT = 8000;

/** Packets from the client pod into worker 1, counted in the raw table (before any NAT) by destination. */
function podEgressCounters(topology: LabTopology, family: Family, destinations: readonly string[]): Record<string, number> {
  const { save } = iptablesTools(family, DEFAULT_IPTABLES_BACKEND);
  const rules = topology.run("worker", [save, "-c", "-t", "raw"]).split("\n");
  const hostVeth = topology.plan.clientPod!.hostVeth;
  return Object.fromEntries(
    destinations.map((d) => {
      const line = rules.find((l) => l.includes(`-d ${d}/${family === "ipv4" ? 32 : 128} -i ${hostVeth}`));
      if (!line) throw new Error(`no counting rule for ${d} in worker 1's raw table`);
      return [d, Number(/^\[(\d+):/.exec(line)![1])];
    }),
  );
}

describe.skipIf(hostProblem !== undefined)(`eBPF socket load balancing on this kernel${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  let topology: LabTopology;
  let dataplane: EbpfDataplane;
  const clusterIp = (family: Family) => SERVICE.clusterIPs[family]!;
  const backend = (family: Family) => topology.plan.workers![1]!.pod[family];

  beforeAll(() => {
    topology = createTopology({ workers: 2, clientPod: { serviceSubnets: LAB_SERVICE_SUBNETS }, linkMbps: 0 });
    const pod2 = topology.plan.workers![1]!.pod;
    dataplane = setupEbpfDataplane(topology, { services, backendOf: () => pod2 });
    const hostVeth = topology.plan.clientPod!.hostVeth;
    for (const family of FAMILIES) {
      const { iptables } = iptablesTools(family, DEFAULT_IPTABLES_BACKEND);
      for (const d of [clusterIp(family), backend(family)]) topology.run("worker", [iptables, "-w", "60", "-t", "raw", "-A", "PREROUTING", "-i", hostVeth, "-d", d]);
    }
  });
  afterAll(() => topology?.destroy());

  it("runs the client pod's processes in its container's cgroup v2, below the pod's, named with the run's prefix", () => {
    const cgroup = topology.plan.clientPod!.cgroup;
    expect(cgroup.endsWith(`/${topology.prefix}-clientpod`)).toBe(true);
    expect(mountType(cgroup.slice(0, cgroup.lastIndexOf("/")))).toBe("cgroup2");
    expect(topology.run("clientpod", ["cat", "/proc/self/cgroup"])).toMatch(new RegExp(`^0::/${topology.prefix}-clientpod/container$`, "m"));
    // Other roles stay where they were.
    expect(topology.run("pod2", ["cat", "/proc/self/cgroup"])).not.toContain(topology.prefix);
  });

  it("attaches connect, sendmsg, recvmsg and getpeername hooks of both families to the client pod's cgroup, and to no other", () => {
    const hooks = dataplane.sockets!.attached();
    expect(hooks.map((h) => `${h.name} ${h.attachType}`).sort()).toEqual(Object.entries(SOCK_LB_HOOKS).map(([n, t]) => `${n} ${t}`).sort());
    // The root of the hierarchy (what Cilium attaches to) carries none of them.
    const cgroup = topology.plan.clientPod!.cgroup;
    const root = JSON.parse(run(["bpftool", "-j", "cgroup", "show", cgroup.slice(0, cgroup.lastIndexOf("/"))]).trim() || "[]") as { id: number }[];
    expect(root.filter((r) => hooks.some((h) => h.id === r.id))).toEqual([]);
  });

  describe.each(FAMILIES)("%s", (family) => {
    it.each(["tcp", "udp"] as EchoProtocol[])("%s to the ClusterIP reaches the pod on worker 2, the reply reads as from the ClusterIP, and no packet carries the ClusterIP", async (protocol) => {
      const listener = await startEchoListener(topology, "pod2", protocol, ANY[family], TARGET_PORT);
      try {
        const before = podEgressCounters(topology, family, [clusterIp(family), backend(family)]);
        const result = echoProbe(topology, "clientpod", protocol, clusterIp(family), 80);
        // UDP: recvmsg's reverse translation; TCP: getpeername's.
        expect(result).toMatchObject({ ok: true, from: clusterIp(family), fromPort: 80 });
        expect(await listener.seen(1)).toContainEqual({ address: topology.plan.clientPod!.addresses[family], port: result.localPort });
        const after = podEgressCounters(topology, family, [clusterIp(family), backend(family)]);
        expect(after[clusterIp(family)]! - before[clusterIp(family)]!, "packets from the pod to the ClusterIP").toBe(0);
        expect(after[backend(family)]! - before[backend(family)]!, "packets from the pod to the backend").toBeGreaterThan(0);
      } finally {
        await listener.stop();
      }
    });
  });

  it("no Service-table walk on the packet path: the tc load balancer kept no connection of the pod's flows", () => {
    // The tc program creates conntrack entries only for packets whose destination it found in the service map.
    for (const map of ["ct4_global", "ct6_global"]) {
      expect(JSON.parse(run(["bpftool", "-j", "map", "dump", "pinned", dataplane.mapPath(map)])), map).toEqual([]);
    }
  });

  it("remembers each translated socket's frontend by socket cookie (lb4_reverse_sk, lb6_reverse_sk)", () => {
    for (const map of ["lb4_reverse_sk", "lb6_reverse_sk"]) {
      const entries = JSON.parse(run(["bpftool", "-j", "map", "dump", "pinned", dataplane.mapPath(map)])) as { formatted: { key: { cookie: number }; value: { rev_nat_index: number } } }[];
      // The TCP and the UDP probe of the family: one socket each.
      expect(entries.map((e) => e.formatted.key.cookie).filter((c, i, all) => all.indexOf(c) === i), map).toHaveLength(2);
      for (const e of entries) expect(e.formatted.value.rev_nat_index).toBeGreaterThan(0);
    }
  });

  it("translates only inside the cgroup: the same namespace outside it sends to the ClusterIP and gets no answer", async () => {
    const listener = await startEchoListener(topology, "pod2", "udp", ANY.ipv4, TARGET_PORT);
    try {
      const before = podEgressCounters(topology, "ipv4", [clusterIp("ipv4")]);
      const ns = topology.namespace("clientpod");
      // No answer is expected: the wait is wide (it starts once the datagram is sent), so that a wrongly
      // translated one, answered late by a busy host, is still seen; the counters below show it left.
      const probe = exec(inNetns(ns, [process.execPath, "-e", `const s=require("node:dgram").createSocket("udp4");s.on("message",()=>{console.log("answer");process.exit(0)});s.send("x",80,process.argv[1],()=>setTimeout(()=>process.exit(1),5000))`, clusterIp("ipv4")]), { timeoutMs: 120_000 });
      expect(probe.stdout).not.toContain("answer");
      expect(podEgressCounters(topology, "ipv4", [clusterIp("ipv4")])[clusterIp("ipv4")]! - before[clusterIp("ipv4")]!).toBeGreaterThan(0);
      expect(listener.peers()).toEqual([]);
    } finally {
      await listener.stop();
    }
  });

  describe.each(FAMILIES)("mutation, %s: the hooks detached", (family) => {
    it.each(["tcp", "udp"] as EchoProtocol[])("%s leaves the pod with the ClusterIP and reaches no backend", async (protocol) => {
      const listener = await startEchoListener(topology, "pod2", protocol, ANY[family], TARGET_PORT);
      dataplane.sockets!.detach();
      try {
        expect(dataplane.sockets!.attached()).toEqual([]);
        const before = podEgressCounters(topology, family, [clusterIp(family), backend(family)]);
        expect(echoProbe(topology, "clientpod", protocol, clusterIp(family), 80, 1500).ok).toBe(false);
        const after = podEgressCounters(topology, family, [clusterIp(family), backend(family)]);
        expect(after[clusterIp(family)]! - before[clusterIp(family)]!).toBeGreaterThan(0);
        expect(after[backend(family)]! - before[backend(family)]!).toBe(0);
        expect(listener.peers()).toEqual([]);
      } finally {
        dataplane.sockets!.attach();
        await listener.stop();
      }
      expect(dataplane.sockets!.attached()).toHaveLength(Object.keys(SOCK_LB_HOOKS).length);
    });
  });

  it("teardown kills what still runs in the cgroup, removes it with the namespaces, and frees the hooks", async () => {
    const pod = topology.plan.clientPod!;
    // The container's cgroup, below the pod's: removing the pod's removes it first.
    const cgroup = pod.containerCgroup;
    expect(cgroup.startsWith(`${pod.cgroup}/`)).toBe(true);
    const hooks = dataplane.sockets!.attached().map((h) => h.id);
    // A process in the cgroup outside every namespace of the run: only the cgroup's removal can end it.
    const stray = startProcess(inCgroup(cgroup, ["sleep", "3600"]), { stdio: "ignore" });
    const exited = new Promise((resolve) => stray.once("exit", resolve));
    while (!readFileSync(`${cgroup}/cgroup.procs`, "utf8").trim()) await new Promise((r) => setImmediate(r));
    const prefix = topology.prefix;
    topology.destroy();
    await exited;
    expect(existsSync(cgroup)).toBe(false);
    expect(existsSync(pod.cgroup)).toBe(false);
    // The hierarchy is the host's: a cgroup left behind would still show in any other mount of it.
    const elsewhere = readFileSync("/proc/self/mountinfo", "utf8").split("\n").map((l) => l.split(" ")).filter((f) => f[f.indexOf("-") + 1] === "cgroup2").map((f) => f[4]!);
    for (const mount of elsewhere) expect(existsSync(`${mount}/${prefix}-clientpod`), mount).toBe(false);
    for (const id of hooks) expect(await bpfObjectGone("prog", id), `program ${id}`).toBe(true);
    expect(findRunObjects(prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
  });
});
