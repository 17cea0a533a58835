// Benchmark: what the hop probes add to the delays they cut into sections. The same latency flows
// (D-ITG rttm, UDP, 1000 pkt/s) through one lab, with the probes attached and a reader draining
// their ring, and with the probes detached; the baseline is the flows without probes in the same
// command. Pairs alternate (ABBA) so drift of the host spreads over both; the ratios are of the
// exact round trips pooled over the flows of each side, for the mean and the p99. On a shared host
// the two sides differ by its noise as much as by the probes; so the probes' own time is also read
// from the kernel (kernel.bpf_stats_enabled, for extra flows after the pairs, restored after): the
// run time of the twelve programs per measured round trip, against the mean round trip.
// Run as root: npx tsx bench/hop-overhead.ts [PAIRS] [SECONDS] [SERVICES]   (default 8, 5, 1000)
import { readFileSync, writeFileSync } from "node:fs";
import { LabBackend } from "../backends/lab.js";
import { run } from "../lab/netns.js";
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
const kernel: { ns: number; calls: number; packets: number; meanS: number }[] = [];
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
  // The probes' own run time, from the kernel's statistics, over one more flow per dataplane.
  const STATS = "/proc/sys/kernel/bpf_stats_enabled";
  const before = readFileSync(STATS, "utf8").trim();
  backend.hops = probes;
  const runTime = () =>
    probes.objectIds().programs.reduce((sum, id) => {
      const p = JSON.parse(run(["bpftool", "-j", "prog", "show", "id", String(id)])) as { run_time_ns?: number; run_cnt?: number };
      return { ns: sum.ns + (p.run_time_ns ?? 0), calls: sum.calls + (p.run_cnt ?? 0) };
    }, { ns: 0, calls: 0 });
  writeFileSync(STATS, "1");
  try {
    for (const dataplane of DATAPLANES) {
      await backend.prepare({ dataplane, services });
      probes.enable();
      const start = runTime();
      const outcome = await backend.runFlow({ dataplane, family: "ipv4", profile: "latency", services, repetition: n }, { logName: `bench-hops-${n++}`, durationS: seconds, traffic });
      const end = runTime();
      const decoded = await decodeFlow(await backend.collectLog(outcome));
      kernel.push({ ns: end.ns - start.ns, calls: end.calls - start.calls, packets: decoded.total.packets, meanS: decoded.total.delayMeanS });
    }
  } finally {
    writeFileSync(STATS, before);
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
const ns = kernel.reduce((a, k) => a + k.ns, 0);
const calls = kernel.reduce((a, k) => a + k.calls, 0);
const packets = kernel.reduce((a, k) => a + k.packets, 0);
const perRoundTrip = ns / packets;
const meanRoundTrip = kernel.reduce((a, k) => a + k.meanS * k.packets, 0) / packets;
console.log(
  `probes' own run time (kernel bpf_stats, ${kernel.length} flows): ${(ns / calls).toFixed(0)} ns a call, ${calls} calls, ${perRoundTrip.toFixed(0)} ns per round trip = ${((perRoundTrip / 1e9 / meanRoundTrip) * 100).toFixed(2)} % of the mean round trip (${usText(meanRoundTrip)})`,
);
