// Benchmark: installing the Services of one sweep step in the lab's worker, kube-proxy's way (the
// rules of kube-proxy-rules.ts, one iptables-restore per family) against the eBPF load balancer's
// (one `bpftool batch` filling the service, backend and reverse-NAT maps of both families).
// Same process, same topology, alternating, a few rounds; prints every round, the medians and the ratio.
// Run as root: npx tsx bench/lab-install.ts [SERVICES] [ROUNDS]   (default 10000 Services, 5 rounds)
import { labKubeProxyRules, labScenario } from "../lab/backend.js";
import { setupEbpfDataplane } from "../lab/ebpf-dataplane.js";
import { bpftoolBatch, planServiceMaps } from "../lab/ebpf/service-maps.js";
import { applyKubeProxyRules, countNatRules, removeKubeProxyRules } from "../lab/iptables-dataplane.js";
import { createTopology, labHostProblem } from "../lab/topology.js";
import { medianOf } from "../measure/statistics.js";
import { buildServiceSet } from "../workloads/service-set.js";

const services = Number(process.argv[2] ?? 10_000);
const rounds = Number(process.argv[3] ?? 5);
if (!Number.isInteger(services) || services < 1 || !Number.isInteger(rounds) || rounds < 1) {
  console.error("usage: npx tsx bench/lab-install.ts [SERVICES >= 1] [ROUNDS >= 1]");
  process.exit(2);
}
const problem = labHostProblem();
if (problem) {
  console.error(`bench/lab-install: ${problem}`);
  process.exit(1);
}

const ms = (start: number) => performance.now() - start;
const fmt = (x: number) => x.toFixed(0).padStart(7);

const topology = createTopology({ linkMbps: 0 });
try {
  const worker = topology.namespace("worker");
  const scenario = labScenario(topology);
  const set = buildServiceSet(scenario, services);
  const empty = buildServiceSet(scenario, 0);
  const rows: { genIpt: number; restore: number; natRules: number; genBpf: number; fill: number; entries: number }[] = [];
  console.log(`installing ${services} Services (${set.counts.nodePort} NodePort, ${set.counts.clusterIp} ClusterIP), both families, ${rounds} rounds`);
  console.log("round | iptables: generate ms  restore ms  nat rules | eBPF: plan ms  fill ms  service entries");
  for (let round = 1; round <= rounds; round++) {
    // iptables: kube-proxy's jumps and base chains in place first (an empty sync), as after its first sync;
    // then the timed full sync: one iptables-restore per family.
    await applyKubeProxyRules(worker, labKubeProxyRules(empty, topology));
    let t = performance.now();
    const ruleSets = labKubeProxyRules(set, topology);
    const genIpt = ms(t);
    t = performance.now();
    await applyKubeProxyRules(worker, ruleSets);
    const restore = ms(t);
    const nat = await countNatRules(worker, "ipv4");
    if (nat.kube !== ruleSets[0]!.ruleCounts.nat) throw new Error(`kernel holds ${nat.kube} nat rules, generated ${ruleSets[0]!.ruleCounts.nat}`);
    await removeKubeProxyRules(worker);

    // eBPF: what the fill writes, then the dataplane (compile, attach, one bpftool batch).
    t = performance.now();
    const plan = planServiceMaps(set, { node: topology.addresses.node, pod: topology.addresses.pod });
    bpftoolBatch(plan, (name) => name);
    const genBpf = ms(t);
    const ebpf = setupEbpfDataplane(topology, { services: set });
    const fill = ebpf.timings.fillMs;
    const entries = ebpf.serviceMapEntries().ipv4;
    ebpf.teardown();

    rows.push({ genIpt, restore, natRules: nat.kube, genBpf, fill, entries });
    console.log(`${String(round).padStart(5)} | ${fmt(genIpt)}      ${fmt(restore)}    ${String(nat.kube).padStart(7)} | ${fmt(genBpf)}  ${fmt(fill)}  ${String(entries).padStart(7)}`);
  }
  const med = (f: (r: (typeof rows)[number]) => number) => medianOf(rows.map(f));
  console.log(`median | iptables-restore ${med((r) => r.restore).toFixed(0)} ms (${rows[0]!.natRules} nat rules per family) | eBPF map fill ${med((r) => r.fill).toFixed(0)} ms (${rows[0]!.entries} service entries per family)`);
  console.log(`ratio iptables-restore / eBPF fill: ${(med((r) => r.restore) / med((r) => r.fill)).toFixed(2)}`);
  console.log(
    `with generation: iptables ${(med((r) => r.genIpt + r.restore)).toFixed(0)} ms, eBPF ${(med((r) => r.genBpf + r.fill)).toFixed(0)} ms, ratio ${(med((r) => r.genIpt + r.restore) / med((r) => r.genBpf + r.fill)).toFixed(2)}`,
  );
} finally {
  topology.destroy();
}
