// Benchmark: what the hop probes add to the delays they cut into sections. The same latency flows
// (D-ITG rttm, UDP, 1000 pkt/s) through one lab, with the probes attached and a reader draining
// their ring, and with the probes detached; the baseline is the flows without probes in the same
// command. Pairs alternate (ABBA) so drift of the host spreads over both; the ratios are of the
// exact round trips pooled over the flows of each side, for the mean and the p99. On a shared host
// the two sides differ by its noise as much as by the probes; so the probes' own time is also read
// from the kernel (kernel.bpf_stats_enabled, for extra flows after the pairs, restored after): the
// run time of the twelve programs per measured round trip, against the mean round trip.
//
// The same statistics for an empty tc program at the same twelve points, on the same traffic, give
// the floor of that figure: what the kernel reads for calling any program there. Its clock reads
// around every run (two sched_clock() per call while the statistics are on) are in it, and a cold
// call: on a 2-core VM they are most of it, whatever the program does. The probes' own work is what
// they read beyond the floor.
// Run as root: npx tsx bench/hop-overhead.ts [PAIRS] [SECONDS] [SERVICES]   (default 8, 5, 1000)
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LabBackend } from "../backends/lab.js";
import { HOP_PREF, hopAttachments } from "../lab/hops/hop-probes.js";
import { exec, run } from "../lab/netns.js";
import { labHostProblem } from "../lab/topology.js";
import { decodeDelayHistogram } from "../measure/ditg-log.js";
import { decodeFlow } from "../measure/ditg-pairing.js";
import { decomposeRun } from "../measure/hops.js";
import { medianOf, poolMoments } from "../measure/statistics.js";
import type { RunKey, TrafficProfile } from "../measure/types.js";
import { DATAPLANES } from "../scenario/schema.js";
import type { Histogram } from "hdr-histogram-js";

const pairs = Number(process.argv[2] ?? 8);
const seconds = Number(process.argv[3] ?? 5);
const services = Number(process.argv[4] ?? 1000);
if (![pairs, services].every((n) => Number.isInteger(n) && n >= 1) || !(seconds >= 1)) {
  console.error("usage: npx tsx bench/hop-overhead.ts [PAIRS >= 1] [SECONDS >= 1] [SERVICES >= 1]");
  process.exit(2);
}
const problem = labHostProblem();
if (problem) {
  console.error(`bench/hop-overhead: ${problem}`);
  process.exit(1);
}

const traffic: TrafficProfile = { protocol: "UDP", meter: "rttm", payloadBytes: 512, packetsPerSecond: 1000 };
type Side = "without" | "with";
const pooled: Record<Side, { moments: { n: number; mean: number; std: number }[]; histogram?: Histogram; addsUp: number; runs: number }> = {
  without: { moments: [], runs: 0, addsUp: 0 },
  with: { moments: [], runs: 0, addsUp: 0 },
};

const perPair = new Map<string, Partial<Record<Side, number>>>();
type KernelRun = { ns: number; calls: number; packets: number; meanS: number };
const kernel: KernelRun[] = [];
const floor: KernelRun[] = [];
const backend = await LabBackend.start({ linkMbps: 500 });
const probes = backend.hops!;
try {
  console.log(`hop probes: ${pairs} pairs (ABBA) of ${seconds} s latency flows at ${traffic.packetsPerSecond} pkt/s, IPv4, ${services} Services per dataplane`);
  let n = 0;
  for (let pair = 0; pair < pairs; pair++) {
    const order: Side[] = pair % 2 === 0 ? ["without", "with"] : ["with", "without"];
    for (const dataplane of DATAPLANES) {
      await backend.prepare({ dataplane, services });
      for (const side of order) {
        // Without: the probes detached and no reader, as with --no-hops.
        backend.hops = side === "with" ? probes : undefined;
        if (side === "without") probes.disable();
        const key: RunKey = { dataplane, family: "ipv4", profile: "latency", services, repetition: n };
        const outcome = await backend.runFlow(key, { logName: `bench-hops-${n++}`, durationS: seconds, traffic });
        const logs = await backend.collectLog(outcome);
        const decoded = await decodeFlow({ ...logs, ...(side === "with" ? { oneWay: true } : {}) });
        const p = pooled[side];
        p.moments.push({ n: decoded.total.packets, mean: decoded.total.delayMeanS, std: decoded.total.delayStdS });
        const pairMeans = perPair.get(`${pair}/${dataplane}`) ?? {};
        pairMeans[side] = decoded.total.delayMeanS;
        perPair.set(`${pair}/${dataplane}`, pairMeans);
        const h = decodeDelayHistogram(decoded.histogram);
        if (p.histogram) p.histogram.add(h);
        else p.histogram = h;
        p.runs++;
        if (side === "with" && logs.hops && decomposeRun(logs.hops, logs).check.addsUp) p.addsUp++;
      }
    }
    process.stderr.write(`pair ${pair + 1}/${pairs} done\n`);
  }
  // The probes' own run time, from the kernel's statistics, over one more flow per dataplane; then
  // an empty program's at the same points, over one more.
  const STATS = "/proc/sys/kernel/bpf_stats_enabled";
  const before = readFileSync(STATS, "utf8").trim();
  backend.hops = probes;
  const runTime = (ids: readonly number[]) =>
    ids.reduce((sum, id) => {
      const p = JSON.parse(run(["bpftool", "-j", "prog", "show", "id", String(id)])) as { run_time_ns?: number; run_cnt?: number };
      return { ns: sum.ns + (p.run_time_ns ?? 0), calls: sum.calls + (p.run_cnt ?? 0) };
    }, { ns: 0, calls: 0 });
  const timedFlow = async (dataplane: (typeof DATAPLANES)[number], ids: readonly number[]): Promise<KernelRun> => {
    const start = runTime(ids);
    const outcome = await backend.runFlow({ dataplane, family: "ipv4", profile: "latency", services, repetition: n }, { logName: `bench-hops-${n++}`, durationS: seconds, traffic });
    const end = runTime(ids);
    const decoded = await decodeFlow(await backend.collectLog(outcome));
    return { ns: end.ns - start.ns, calls: end.calls - start.calls, packets: decoded.total.packets, meanS: decoded.total.delayMeanS };
  };
  const empty = emptyPrograms(backend);
  writeFileSync(STATS, "1");
  try {
    for (const dataplane of DATAPLANES) {
      await backend.prepare({ dataplane, services });
      probes.enable();
      kernel.push(await timedFlow(dataplane, probes.objectIds().programs));
      probes.disable();
      backend.hops = undefined;
      empty.attach();
      try {
        floor.push(await timedFlow(dataplane, empty.ids));
      } finally {
        empty.detach();
        backend.hops = probes;
      }
    }
  } finally {
    writeFileSync(STATS, before);
    empty.remove();
  }
} finally {
  backend.hops = probes;
  await backend.teardown();
}

const stats = (side: Side) => {
  const m = poolMoments(pooled[side].moments);
  return { mean: m.mean, p99: pooled[side].histogram!.getValueAtPercentile(99) / 1e6, packets: m.n };
};
const a = stats("without");
const b = stats("with");
const usText = (s: number) => `${(s * 1e6).toFixed(1)} µs`;
console.log(`round trip without probes: mean ${usText(a.mean)}, p99 ${usText(a.p99)} (${a.packets} packets, ${pooled.without.runs} flows)`);
console.log(`round trip with probes:    mean ${usText(b.mean)}, p99 ${usText(b.p99)} (${b.packets} packets, ${pooled.with.runs} flows, ${pooled.with.addsUp} adding up)`);
const pairRatios = [...perPair.values()].map((m) => m.with! / m.without!);
console.log(
  `with/without: mean ${(b.mean / a.mean).toFixed(3)} (aim below 1.02), p99 ${(b.p99 / a.p99).toFixed(3)}; median over the ${pairRatios.length} pairs of the ratio of their means ${medianOf(pairRatios).toFixed(3)} (range ${Math.min(...pairRatios).toFixed(3)}-${Math.max(...pairRatios).toFixed(3)})`,
);
const total = (runs: readonly KernelRun[]) => {
  const packets = runs.reduce((a, k) => a + k.packets, 0);
  const ns = runs.reduce((a, k) => a + k.ns, 0);
  const calls = runs.reduce((a, k) => a + k.calls, 0);
  return { ns, calls, perCall: ns / calls, perRoundTrip: ns / packets, meanRoundTripS: runs.reduce((a, k) => a + k.meanS * k.packets, 0) / packets };
};
const percent = (ns: number, meanS: number) => `${((ns / 1e9 / meanS) * 100).toFixed(2)} %`;
const own = total(kernel);
const base = total(floor);
console.log(
  `probes' own run time (kernel bpf_stats, ${kernel.length} flows): ${own.perCall.toFixed(0)} ns a call, ${own.calls} calls, ${own.perRoundTrip.toFixed(0)} ns per round trip = ${percent(own.perRoundTrip, own.meanRoundTripS)} of the mean round trip (${usText(own.meanRoundTripS)})`,
);
console.log(
  `an empty tc program at the same points (${floor.length} flows): ${base.perCall.toFixed(0)} ns a call, ${base.perRoundTrip.toFixed(0)} ns per round trip = ${percent(base.perRoundTrip, base.meanRoundTripS)} of its mean round trip (${usText(base.meanRoundTripS)}); the probes' work beyond it: ${(own.perCall - base.perCall).toFixed(0)} ns a call, ${(own.perRoundTrip - base.perRoundTrip).toFixed(0)} ns per round trip = ${percent(own.perRoundTrip - base.perRoundTrip, own.meanRoundTripS)}`,
);

/**
 * One empty tc program per probe point (its own copy, as each probe is), loaded in a private bpffs
 * of the lab's run directory: attached where the probes were, at their priorities, for the floor's flows.
 */
function emptyPrograms(lab: LabBackend): { ids: number[]; attach(): void; detach(): void; remove(): void } {
  const { topology } = lab;
  const places = hopAttachments(topology.plan);
  const dir = join(topology.runDir, "bench-empty-program");
  const bpffs = join(dir, "bpffs");
  mkdirSync(bpffs, { recursive: true });
  // TC_ACT_UNSPEC, as the probes return: the next filter still sees the packet.
  writeFileSync(join(dir, "empty.c"), 'int empty(void *skb) __attribute__((section("tc"), used));\nint empty(void *skb) { return -1; }\nchar LICENSE[] __attribute__((section("license"), used)) = "GPL";\n');
  run(["clang", "-O2", "-target", "bpf", "-c", join(dir, "empty.c"), "-o", join(dir, "empty.o")]);
  const pins = places.map((_, i) => join(bpffs, `empty${i}`));
  const remove = () => {
    for (const pin of pins) rmSync(pin, { force: true });
    exec(["umount", bpffs]);
    rmSync(dir, { recursive: true, force: true });
  };
  run(["mount", "-t", "bpf", "bpf", bpffs]);
  let ids: number[];
  try {
    for (const pin of pins) run(["bpftool", "prog", "load", join(dir, "empty.o"), pin, "type", "tc"]);
    ids = pins.map((pin) => (JSON.parse(run(["bpftool", "-j", "prog", "show", "pinned", pin])) as { id: number }).id);
  } catch (error) {
    remove();
    throw error;
  }
  const filter = (a: (typeof places)[number]) => ["dev", a.ifname, a.direction, "pref", String(HOP_PREF[a.direction])];
  return {
    ids,
    attach() {
      places.forEach((a, i) => {
        topology.run(a.role, ["tc", "qdisc", "replace", "dev", a.ifname, "clsact"]);
        topology.run(a.role, ["tc", "filter", "add", ...filter(a), "bpf", "da", "object-pinned", pins[i]!]);
      });
    },
    detach() {
      for (const a of places) topology.exec(a.role, ["tc", "filter", "del", ...filter(a)]);
      // A clsact qdisc left without a filter goes, as the probes' own removal leaves it.
      for (const a of places) {
        const left = ["ingress", "egress"].some((d) => topology.run(a.role, ["tc", "filter", "show", "dev", a.ifname, d]).trim() !== "");
        if (!left) topology.exec(a.role, ["tc", "qdisc", "del", "dev", a.ifname, "clsact"]);
      }
    },
    remove,
  };
}
