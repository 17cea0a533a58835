// Benchmark: installing the Services of one sweep step in the lab's worker, three ways: kube-proxy's
// iptables mode (the rules of kube-proxy-rules.ts, one iptables-restore per family), kube-proxy's
// nftables mode (the transaction of kube-proxy-nftables-rules.ts, one `nft -f` per family) and the
// eBPF load balancer (one `bpftool batch` filling the service, backend and reverse-NAT maps of both
// families). Same process, same topology, a few rounds, the order of the three rotating from round to
// round; prints every round, the medians and the ratios.
// Run as root: npx tsx bench/lab-install.ts [SERVICES] [ROUNDS]   (default 10000 Services, 5 rounds)
//
// With `steps` first: the default profile's steps in its own order (the seeded order of its plan),
// each dataplane moved from step to step as the lab moves it, by partial syncs (LabDataplane.setUp
// with stepSync "partial"), against the same steps installed by one full sync each ("full"), both
// through the dataplane modules, the two ways alternating from round to round; prints the time of
// every step and the sums, and the ratio partial/full.
// Run as root: npx tsx bench/lab-install.ts steps [ROUNDS] [COUNTS]   (default 2 rounds; COUNTS, a
// comma-separated list of Service counts in the order to visit them, replaces the default profile's
// steps: its 10000 Services make kube-proxy's nftables full sync hold a CPU in the kernel for minutes)
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
import { ebpfHostProblem } from "../lab/dataplanes/ebpf/kernel.js";
import { LAB_DATAPLANES, type StepSync } from "../lab/dataplanes/index.js";
import { labDefinition, labProfile } from "../lab/profiles.js";
import { planCampaign } from "../measure/campaign-plan.js";
import { DATAPLANES as LAB_DATAPLANE_NAMES } from "../scenario/schema.js";
import { medianOf } from "../measure/statistics.js";
import { buildServiceSet } from "../workloads/service-set.js";

if (process.argv[2] === "steps") {
  await stepsBench(Number(process.argv[3] ?? 2), process.argv[4]);
  process.exit(0);
}

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

/** The default profile's install time: its steps, in its plan's order, by partial syncs and by full syncs. */
async function stepsBench(rounds: number, counts: string | undefined): Promise<void> {
  const listed = counts?.split(",").map(Number);
  if (!Number.isInteger(rounds) || rounds < 1 || (listed && !listed.every((n) => Number.isInteger(n) && n >= 1))) {
    console.error("usage: npx tsx bench/lab-install.ts steps [ROUNDS >= 1] [COUNTS: Service counts, comma-separated, each >= 1]");
    process.exit(2);
  }
  const problem = labHostProblem() ?? nftablesHostProblem() ?? ebpfHostProblem();
  if (problem) {
    console.error(`bench/lab-install: ${problem}`);
    process.exit(1);
  }
  const def = labDefinition(labProfile("default"));
  const plan = planCampaign("bench", def);
  const order = plan.map((r) => r.key.services).filter((n, i, all) => i === 0 || all[i - 1] !== n);
  const steps = listed ?? [...new Set(order)];
  console.log(`${listed ? "the steps" : "the default profile's steps"} in order: ${steps.join(" -> ")} (${LAB_DATAPLANE_NAMES.join(", ")}, both families, ${rounds} rounds)`);
  const topology = createTopology({ linkMbps: 0 });
  const totals: Record<string, Record<StepSync, number[]>> = {};
  try {
    const scenario = labScenario(topology);
    const stepOf = (n: number) => {
      const set = buildServiceSet(scenario, n);
      return { services: n, serviceSet: set, endpoints: serviceEndpoints(set, topology.addresses.pod) };
    };
    for (let round = 1; round <= rounds; round++) {
      const ways: StepSync[] = round % 2 === 1 ? ["partial", "full"] : ["full", "partial"];
      for (const name of LAB_DATAPLANE_NAMES) {
        for (const stepSync of ways) {
          const dataplane = LAB_DATAPLANES[name].create({ topology, scenario, iptablesBackend: "legacy", stepSync });
          const times: number[] = [];
          try {
            for (const n of steps) {
              const t = performance.now();
              await dataplane.setUp(stepOf(n));
              times.push(performance.now() - t);
            }
          } finally {
            await dataplane.remove();
          }
          const sum = times.reduce((a, b) => a + b, 0);
          ((totals[name] ??= { partial: [], full: [] })[stepSync]).push(sum);
          console.log(`round ${round} ${name.padEnd(9)} ${stepSync.padEnd(7)}: ${times.map((x) => `${(x / 1000).toFixed(2)} s`).join(", ")}; sum ${(sum / 1000).toFixed(1)} s`);
        }
      }
    }
  } finally {
    topology.destroy();
  }
  let partial = 0;
  let full = 0;
  for (const name of LAB_DATAPLANE_NAMES) {
    const p = medianOf(totals[name]!.partial);
    const f = medianOf(totals[name]!.full);
    partial += p;
    full += f;
    console.log(`median ${name}: partial syncs ${(p / 1000).toFixed(1)} s, full syncs ${(f / 1000).toFixed(1)} s, ratio ${(p / f).toFixed(3)}`);
  }
  console.log(`${listed ? "the steps'" : "the default profile's"} installs, every dataplane: partial syncs ${(partial / 1000).toFixed(1)} s, full syncs ${(full / 1000).toFixed(1)} s, ratio ${(partial / full).toFixed(3)}`);
}
