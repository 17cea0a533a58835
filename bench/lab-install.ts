// Benchmark: installing the Services of one sweep step in the lab's worker, three ways: kube-proxy's
// iptables mode (the rules of kube-proxy-rules.ts, one iptables-restore per family), kube-proxy's
// nftables mode (the transaction of kube-proxy-nftables-rules.ts, one `nft -f` per family) and the
// eBPF load balancer (one `bpftool batch` filling the service, backend and reverse-NAT maps of both
// families). Same process, same topology, a few rounds, the order of the three rotating from round to
// round; prints every round, the medians and the ratios.
// Run as root: npx tsx bench/lab-install.ts [SERVICES] [ROUNDS]   (default 10000 Services, 5 rounds)
import { setupEbpfDataplane } from "../lab/dataplanes/ebpf/kernel.js";
import { planServiceMaps } from "../lab/dataplanes/ebpf/service-maps.js";
import { bpftoolBatch, LbMapAgent } from "../lab/dataplanes/ebpf/lb-agent.js";
import { applyKubeProxyRules, countNatRules, labKubeProxyRules, removeKubeProxyRules } from "../lab/dataplanes/iptables/kernel.js";
import { labScenario, serviceEndpoints } from "../lab/lab-scenario.js";
import {
  applyKubeProxyNftables,
  countKubeProxyNftables,
  labKubeProxyNftablesRules,
  nftablesHostProblem,
  removeKubeProxyNftables,
} from "../lab/dataplanes/nftables/kernel.js";
import { createTopology, labHostProblem } from "../lab/topology.js";
import { medianOf } from "../measure/statistics.js";
import { buildServiceSet } from "../workloads/service-set.js";

const services = Number(process.argv[2] ?? 10_000);
const rounds = Number(process.argv[3] ?? 5);
if (!Number.isInteger(services) || services < 1 || !Number.isInteger(rounds) || rounds < 1) {
  console.error("usage: npx tsx bench/lab-install.ts [SERVICES >= 1] [ROUNDS >= 1]");
  process.exit(2);
}
const problem = labHostProblem() ?? nftablesHostProblem();
if (problem) {
  console.error(`bench/lab-install: ${problem}`);
  process.exit(1);
}

const ms = (start: number) => performance.now() - start;
const fmt = (x: number) => x.toFixed(0).padStart(7);

interface Install {
  /** Rule or map generation, both families, ms. */
  readonly generate: number;
  /** Writing it into the kernel, both families, ms. */
  readonly install: number;
  /** What the kernel holds for IPv4, as the dataplane counts it. */
  readonly size: number;
}
type Dataplane = "iptables" | "nftables" | "ebpf";
const DATAPLANES: readonly Dataplane[] = ["iptables", "nftables", "ebpf"];
const SIZE_UNIT: Record<Dataplane, string> = { iptables: "nat rules", nftables: "rules", ebpf: "service entries" };

const topology = createTopology({ linkMbps: 0 });
try {
  const worker = topology.namespace("worker");
  const scenario = labScenario(topology);
  const set = buildServiceSet(scenario, services);
  const empty = buildServiceSet(scenario, 0);
  const serviceCIDRs = Object.values(scenario.kubernetes.serviceSubnets);

  const install: Record<Dataplane, () => Promise<Install>> = {
    // kube-proxy's jumps and base chains in place first (an empty sync), as after its first sync;
    // then the timed full sync: one iptables-restore per family.
    iptables: async () => {
      await applyKubeProxyRules(worker, labKubeProxyRules(serviceEndpoints(empty, topology.addresses.pod), topology.plan));
      let t = performance.now();
      const ruleSets = labKubeProxyRules(serviceEndpoints(set, topology.addresses.pod), topology.plan);
      const generate = ms(t);
      t = performance.now();
      await applyKubeProxyRules(worker, ruleSets);
      const restore = ms(t);
      const nat = await countNatRules(worker, "ipv4");
      if (nat.kube !== ruleSets[0]!.ruleCounts.nat) throw new Error(`kernel holds ${nat.kube} nat rules, generated ${ruleSets[0]!.ruleCounts.nat}`);
      await removeKubeProxyRules(worker);
      return { generate, install: restore, size: nat.kube };
    },
    // kube-proxy's first full sync on a node without its table: one nft -f per family.
    nftables: async () => {
      let t = performance.now();
      const rulesets = labKubeProxyNftablesRules(serviceEndpoints(set, topology.addresses.pod), topology.plan, serviceCIDRs);
      const generate = ms(t);
      t = performance.now();
      await applyKubeProxyNftables(worker, rulesets);
      const apply = ms(t);
      const held = await countKubeProxyNftables(worker, "ipv4");
      if (JSON.stringify(held) !== JSON.stringify(rulesets[0]!.counts)) {
        throw new Error(`kernel holds ${JSON.stringify(held)}, generated ${JSON.stringify(rulesets[0]!.counts)}`);
      }
      await removeKubeProxyNftables(worker);
      return { generate, install: apply, size: held!.rules };
    },
    // What the fill writes, then the dataplane (compile, attach, one bpftool batch).
    ebpf: async () => {
      const t = performance.now();
      const plan = planServiceMaps(set, { node: topology.addresses.node, pod: topology.addresses.pod });
      bpftoolBatch(new LbMapAgent().upsert(plan, plan.families), (name) => name);
      const generate = ms(t);
      const ebpf = setupEbpfDataplane(topology, { services: set });
      const fill = ebpf.timings.fillMs;
      const entries = ebpf.serviceMapEntries().ipv4;
      ebpf.teardown();
      return { generate, install: fill, size: entries };
    },
  };

  const results: Record<Dataplane, Install[]> = { iptables: [], nftables: [], ebpf: [] };
  console.log(`installing ${services} Services (${set.counts.nodePort} NodePort, ${set.counts.clusterIp} ClusterIP), both families, ${rounds} rounds`);
  console.log("round | order                     | iptables: generate ms  restore ms | nftables: generate ms  nft -f ms | eBPF: plan ms  fill ms");
  for (let round = 1; round <= rounds; round++) {
    const order = DATAPLANES.map((_, i) => DATAPLANES[(i + round - 1) % DATAPLANES.length]!);
    for (const d of order) results[d].push(await install[d]());
    const last = (d: Dataplane) => results[d][results[d].length - 1]!;
    console.log(
      `${String(round).padStart(5)} | ${order.join(" ").padEnd(25)} | ${fmt(last("iptables").generate)}      ${fmt(last("iptables").install)}    | ${fmt(last("nftables").generate)}      ${fmt(last("nftables").install)}   | ${fmt(last("ebpf").generate)}  ${fmt(last("ebpf").install)}`,
    );
  }
  const med = (d: Dataplane, f: (r: Install) => number) => medianOf(results[d].map(f));
  const installMs = (d: Dataplane) => med(d, (r) => r.install);
  const totalMs = (d: Dataplane) => med(d, (r) => r.generate + r.install);
  for (const d of DATAPLANES) {
    console.log(`median ${d}: install ${installMs(d).toFixed(0)} ms, with generation ${totalMs(d).toFixed(0)} ms (${results[d][0]!.size} ${SIZE_UNIT[d]} for IPv4)`);
  }
  const ratio = (a: Dataplane, b: Dataplane, label: string) =>
    console.log(`ratio ${label}: ${(installMs(a) / installMs(b)).toFixed(2)} (with generation ${(totalMs(a) / totalMs(b)).toFixed(2)})`);
  ratio("iptables", "ebpf", "iptables-restore / eBPF fill");
  ratio("nftables", "ebpf", "nft -f / eBPF fill");
  ratio("nftables", "iptables", "nft -f / iptables-restore");
} finally {
  topology.destroy();
}
