// Benchmark: the cost of connection setup through the NodePort as the Service count grows, for every
// dataplane. Many new TCP connections (each its own 5-tuple, a new conntrack entry) from the client
// namespace to the receiver's data NodePort, timed from connect() to SYN-ACK by the lab's probe. Two
// baselines, measured in the same command: the same dataplane at 1 Service (its N/1 ratio: flat is
// 1), and iptables at N Services (each dataplane's ratio against it). Rounds alternate the Service
// counts (1, N | N, 1 | ...) and rotate the dataplanes within each, so that drift of the host spreads
// over every cell; a dataplane stepping aside parks what it installed, so each Service count is
// installed once per pair of rounds.
// Run as root: npx tsx bench/connection-setup.ts [SERVICES] [ROUNDS] [SECONDS]   (default 10000, 4, 3)
import { setupTraffic } from "../measure/connection-setup.js";
import { labHostProblem } from "../lab/topology.js";
import { LabBackend } from "../backends/lab.js";
import { decodeDelayHistogram, decodeLogFile } from "../measure/ditg-log.js";
import type { RunKey } from "../measure/types.js";
import type { Family } from "../scenario/cidr.js";
import { DATAPLANES, DEFAULT_BASELINE, type Dataplane } from "../scenario/schema.js";
import type { Histogram } from "hdr-histogram-js";

const many = Number(process.argv[2] ?? 10_000);
const rounds = Number(process.argv[3] ?? 4);
const seconds = Number(process.argv[4] ?? 3);
if (![many, rounds].every((n) => Number.isInteger(n) && n >= 1) || !(seconds >= 1)) {
  console.error("usage: npx tsx bench/connection-setup.ts [SERVICES >= 1] [ROUNDS >= 1] [SECONDS >= 1]");
  process.exit(2);
}
const problem = labHostProblem();
if (problem) {
  console.error(`bench/connection-setup: ${problem}`);
  process.exit(1);
}

const FAMILIES: readonly Family[] = ["ipv4", "ipv6"];
const traffic = setupTraffic(200);
const cell = (dataplane: Dataplane, services: number, family: Family) => `${dataplane}/${services}/${family}`;
const merged = new Map<string, Histogram>();
const failed = new Map<string, number>();

const backend = await LabBackend.start({ linkMbps: 500 });
try {
  console.log(`connection setup at 1 and ${many} Services, ${DATAPLANES.join(", ")}: ${rounds} rounds x ${seconds} s x ${traffic.packetsPerSecond} connections/s per step and family`);
  for (let round = 0; round < rounds; round++) {
    const counts = round % 2 === 0 ? [1, many] : [many, 1];
    // Rotate the dataplanes each round: none is always first after a change of Service count.
    const dataplanes = DATAPLANES.map((_, i) => DATAPLANES[(i + round) % DATAPLANES.length]!);
    for (const services of counts) {
      for (const dataplane of dataplanes) {
        await backend.prepare({ dataplane, services });
        for (const family of FAMILIES) {
          const key: RunKey = { dataplane, services, family, profile: "setup", repetition: round };
          const outcome = await backend.runFlow(key, { logName: `bench-${round}-${dataplane}-${services}-${family}`, durationS: seconds, traffic });
          const decoded = await decodeLogFile((await backend.collectLog(outcome)).log);
          const id = cell(dataplane, services, family);
          const h = decodeDelayHistogram(decoded.histogram);
          const into = merged.get(id);
          if (into) into.add(h);
          else merged.set(id, h);
          failed.set(id, (failed.get(id) ?? 0) + decoded.total.dropped);
        }
      }
    }
    process.stderr.write(`round ${round + 1}/${rounds} done\n`);
  }
} finally {
  await backend.teardown();
}

const us = (id: string, q: number) => merged.get(id)!.getValueAtPercentile(q);
console.log("\nhandshake time, µs (connections pooled over rounds): median [p90]");
console.log("family | dataplane |   1 Service      | " + `${many} Services`.padEnd(16) + " | ratio N/1 (median) | connections | failed");
for (const family of FAMILIES) {
  for (const dataplane of DATAPLANES) {
    const one = cell(dataplane, 1, family);
    const n = cell(dataplane, many, family);
    const ratio = us(n, 50) / us(one, 50);
    console.log(
      `${family.padEnd(6)} | ${dataplane.padEnd(9)} | ${String(us(one, 50)).padStart(5)} [${String(us(one, 90)).padStart(5)}]    | ${String(us(n, 50)).padStart(5)} [${String(us(n, 90)).padStart(5)}]    | ${ratio.toFixed(2).padStart(18)} | ${String(merged.get(one)!.totalCount + merged.get(n)!.totalCount).padStart(11)} | ${(failed.get(one) ?? 0) + (failed.get(n) ?? 0)}`,
    );
  }
  const base = us(cell(DEFAULT_BASELINE, many, family), 50);
  const against = DATAPLANES.filter((d) => d !== DEFAULT_BASELINE)
    .map((d) => `${d}/${DEFAULT_BASELINE} ${(us(cell(d, many, family), 50) / base).toFixed(2)}`)
    .join(", ");
  const extra = DATAPLANES.map((d) => `${d} ${us(cell(d, many, family), 50) - us(cell(d, 1, family), 50)} µs`).join(", ");
  console.log(`${family.padEnd(6)} | at ${many} Services, median: ${against}; extra per new connection at ${many} over 1: ${extra}`);
}
