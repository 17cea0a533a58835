// Benchmark: what a change of step costs in the lab, dataplane by dataplane. A campaign calls
// LabBackend.prepare() (backends/lab.ts) whenever the next run's dataplane or Service count differs
// from the last one's; this drives prepare() through Service counts in the order given, each count
// visited as an interleaved campaign visits it (every dataplane in turn, ROUNDS turns, the order
// reversed every other turn), with no flows in between. Printed: every prepare() with its phases
// (the others stepping aside, the dataplane installed, moved or resumed, the packet path checked,
// the Services counted, conntrack flushed), then per dataplane and count the medians of each kind of
// step change and of its check, and the per-Service costs the wall-time estimate uses
// (lab/wall-estimate.ts). Baseline in the same command: the same steps on a lab that installs every
// new Service count by one full sync (`testbed lab --full-sync-steps`); the ratio is the partial
// lab's prepare() time over the full one's; and, at the last count, the check's read of the legacy
// tables from the kernel's blobs (lab/dataplanes/iptables/jump-reader.ts) against iptables-legacy-save.
//
// Run as root: npx tsx bench/step-change.ts [COUNTS] [ROUNDS] [DATAPLANES]
//   COUNTS: Service counts in the order visited (default 1,1000,2000); ROUNDS: turns per count
//   (default 3); DATAPLANES: comma-separated (default all).
// nftables is refused above 2000 Services: kube-proxy's transaction of a larger step holds a CPU in
// the kernel for minutes on a shared 2-core host.
import { execFileSync } from "node:child_process";
import { LabBackend, labProblem } from "../backends/lab.js";
import { LegacyJumpReader } from "../lab/dataplanes/iptables/jump-reader.js";
import { kubeProxyJumps } from "../lab/dataplanes/iptables/kernel.js";
import { LAB_FAMILIES } from "../lab/lab-scenario.js";
import { medianOf } from "../measure/statistics.js";
import { DATAPLANES, type Dataplane } from "../scenario/schema.js";

const NFTABLES_MAX_SERVICES = 2000;

const counts = (process.argv[2] ?? "1,1000,2000").split(",").map(Number);
const rounds = Number(process.argv[3] ?? 3);
const dataplanes = (process.argv[4]?.split(",") ?? [...DATAPLANES]) as Dataplane[];
if (!counts.every((n) => Number.isInteger(n) && n >= 1) || !Number.isInteger(rounds) || rounds < 2 || !dataplanes.every((d) => DATAPLANES.includes(d))) {
  console.error(`usage: npx tsx bench/step-change.ts [COUNTS: Service counts >= 1, comma-separated] [ROUNDS >= 2] [DATAPLANES: ${DATAPLANES.join(",")}]`);
  process.exit(2);
}
if (dataplanes.includes("nftables") && Math.max(...counts) > NFTABLES_MAX_SERVICES) {
  console.error(`bench/step-change: nftables above ${NFTABLES_MAX_SERVICES} Services is refused here (a CPU held in the kernel for minutes); leave nftables out or lower COUNTS`);
  process.exit(2);
}
const problem = labProblem();
if (problem) {
  console.error(`bench/step-change: ${problem}`);
  process.exit(1);
}

/** One prepare(): which dataplane and count, which came before, and its phases in ms. */
interface Change {
  readonly dataplane: Dataplane;
  readonly services: number;
  /** The dataplane on the packet path before it, if any. */
  readonly before: Dataplane | undefined;
  readonly kind: "install" | "move" | "resume";
  readonly totalMs: number;
  readonly phases: ReadonlyMap<string, number>;
}

const KIND_PHASE = { install: "install", move: "move", resume: "resume" } as const;
const load = () => execFileSync("cat", ["/proc/loadavg"]).toString().split(" ").slice(0, 3).join(" ");

/** The legacy tables' jumps read both ways, alternating, with every dataplane holding the last count: ms per read of both families. */
const legacyReads = { reader: [] as number[], save: [] as number[] };
const READ_ROUNDS = 5;

async function timeLegacyReads(lab: LabBackend): Promise<void> {
  const worker = lab.topology.namespace("worker");
  const reader = new LegacyJumpReader(lab.topology.runDir);
  reader.jumps(worker, "ipv4");
  for (let round = 0; round < READ_ROUNDS; round++) {
    let start = performance.now();
    for (const family of LAB_FAMILIES) reader.jumps(worker, family);
    legacyReads.reader.push(performance.now() - start);
    start = performance.now();
    for (const family of LAB_FAMILIES) await kubeProxyJumps(worker, family, "legacy");
    legacyReads.save.push(performance.now() - start);
  }
}

async function walk(stepSync: "partial" | "full"): Promise<Change[]> {
  const lab = await LabBackend.start({ linkMbps: 0, hops: false, stepSync });
  const changes: Change[] = [];
  let before: Dataplane | undefined;
  try {
    for (const services of counts) {
      for (let turn = 0; turn < rounds; turn++) {
        for (const dataplane of turn % 2 === 0 ? dataplanes : [...dataplanes].reverse()) {
          if (before === dataplane && changes.at(-1)?.services === services) continue;
          const was = new Map(lab.phases.entries().map(([name, p]) => [name, p.ms]));
          const start = performance.now();
          await lab.prepare({ dataplane, services });
          const totalMs = performance.now() - start;
          const phases = new Map(lab.phases.entries().map(([name, p]) => [name, p.ms - (was.get(name) ?? 0)] as const).filter(([, ms]) => ms > 0));
          const own = [...phases.keys()].find((name) => name.endsWith(` ${dataplane}`))!;
          const kind = (Object.keys(KIND_PHASE) as (keyof typeof KIND_PHASE)[]).find((k) => own.startsWith(KIND_PHASE[k]))!;
          changes.push({ dataplane, services, before, kind, totalMs, phases });
          const shown = [...phases].map(([name, ms]) => `${name} ${(ms / 1000).toFixed(2)}`).join(", ");
          console.log(`${stepSync.padEnd(7)} ${dataplane.padEnd(8)} ${String(services).padStart(5)} ${kind.padEnd(7)} ${(totalMs / 1000).toFixed(2).padStart(6)} s | ${shown}`);
          before = dataplane;
        }
      }
    }
    if (stepSync === "partial" && dataplanes.includes("iptables")) await timeLegacyReads(lab);
  } finally {
    await lab.teardown();
  }
  return changes;
}

console.log(`step changes over ${counts.join(" -> ")} Services, ${dataplanes.join(", ")}, ${rounds} turns per count; load before: ${load()}`);
const partial = await walk("partial");
const full = await walk("full");
console.log(`load after: ${load()}`);

const ms = (x: number) => `${(x / 1000).toFixed(3)} s`;
const med = (xs: readonly number[]) => (xs.length === 0 ? NaN : medianOf([...xs]));
const phase = (c: Change, name: string) => c.phases.get(name) ?? 0;

console.log("\nmedians per dataplane and count (partial lab): the step change itself; checking the packet path; stepping aside of the one before");
for (const d of dataplanes) {
  for (const n of counts) {
    const at = partial.filter((c) => c.dataplane === d && c.services === n);
    const kinds = (["install", "move", "resume"] as const)
      .map((k) => [k, at.filter((c) => c.kind === k).map((c) => phase(c, `${k} ${d}`))] as const)
      .filter(([, xs]) => xs.length > 0)
      .map(([k, xs]) => `${k} ${ms(med(xs))} (${xs.length})`);
    const parks = partial.filter((c) => c.before === d && c.services === n && c.dataplane !== d).map((c) => phase(c, "step aside"));
    console.log(
      `  ${d.padEnd(8)} ${String(n).padStart(5)}: ${kinds.join(", ")}; check ${ms(med(at.map((c) => phase(c, "check the packet path"))))}; count ${ms(med(at.map((c) => phase(c, "count the Services")).filter((x) => x > 0)))}; flush ${ms(med(at.map((c) => phase(c, "flush conntrack"))))}; its stepping aside ${ms(med(parks))}`,
    );
  }
}

// Per-Service slopes between the smallest and the largest count: what lab/wall-estimate.ts extrapolates with.
const lo = Math.min(...counts);
const hi = Math.max(...counts);
const slope = (f: (n: number) => number) => (f(hi) - f(lo)) / (hi - lo);
const medianAt = (changes: readonly Change[], pick: (c: Change) => boolean, value: (c: Change) => number) => (n: number) => med(changes.filter((c) => c.services === n && pick(c)).map(value));
console.log(`\nper Service, from ${lo} to ${hi} Services (ms per 1000 Services), and at ${lo}:`);
for (const d of dataplanes) {
  const resume = medianAt(partial, (c) => c.dataplane === d && c.kind === "resume", (c) => phase(c, `resume ${d}`));
  const park = medianAt(partial, (c) => c.before === d && c.dataplane !== d, (c) => phase(c, "step aside"));
  const install = medianAt(full, (c) => c.dataplane === d && c.kind === "install", (c) => phase(c, `install ${d}`));
  console.log(`  ${d.padEnd(8)}: full install ${(1000 * slope(install)).toFixed(0)} ms (${ms(install(lo))}), resume ${(1000 * slope(resume)).toFixed(0)} ms (${ms(resume(lo))}), stepping aside ${(1000 * slope(park)).toFixed(0)} ms (${ms(park(lo))})`);
}
const check = medianAt(partial, () => true, (c) => phase(c, "check the packet path"));
console.log(`  the check (every dataplane's view of the packet path): ${(1000 * slope(check)).toFixed(0)} ms (${ms(check(lo))})`);

const sum = (changes: readonly Change[]) => changes.reduce((s, c) => s + c.totalMs, 0);
const checks = (changes: readonly Change[]) => changes.reduce((s, c) => s + phase(c, "check the packet path"), 0);
console.log(`\nevery prepare(): partial steps ${ms(sum(partial))} against full-sync steps ${ms(sum(full))}: ratio ${(sum(partial) / sum(full)).toFixed(3)}`);
console.log(`checking the packet path: ${ms(checks(partial))} in ${partial.length} (${ms(checks(partial) / partial.length)} each), ${((100 * checks(partial)) / sum(partial)).toFixed(1)} % of prepare()`);
if (legacyReads.reader.length > 0) {
  const [r, s] = [med(legacyReads.reader), med(legacyReads.save)];
  console.log(
    `the check's read of the legacy tables at ${counts.at(-1)} Services, both families, ${READ_ROUNDS} alternations: the kernel's blobs (xt-jumps) ${ms(r)} against iptables-legacy-save ${ms(s)}: ratio ${(r / s).toFixed(3)}`,
  );
}
