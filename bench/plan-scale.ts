// How `testbed plan` of the ebpf stack scales with the Service count: the whole command at N = 1
// (baseline) and at N = 10000, alternating, in this one run.
//
//   npx tsx bench/plan-scale.ts [--repeat 3]
//
// Printed: median wall time and peak resident memory of each, and the ratios N=10000 / N=1. The
// Service set is applied as one unit, so the state (and the resource count) does not grow with N.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { repeat: { type: "string", default: "3" } } });
const repeat = Number(values.repeat);
if (!Number.isInteger(repeat) || repeat < 1) throw new Error(`--repeat ${values.repeat}: accepted: a whole number >= 1`);

const project = path.resolve(import.meta.dirname, "..");
const counts = [1, 10000] as const;

interface Sample {
  wallS: number;
  peakMiB: number;
  resources: number;
}

function planOnce(services: number): Sample {
  const out = mkdtempSync(path.join(tmpdir(), "bench-plan-"));
  try {
    const started = process.hrtime.bigint();
    const { stderr } = spawnTimed(["--import", "tsx/esm", "cli/main.ts", "plan", "--stack", "ebpf", "--quiet", "--out", out, "--config", `services=${services}`]);
    const wallS = Number(process.hrtime.bigint() - started) / 1e9;
    const kb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)?.[1]);
    const resources = (JSON.parse(readFileSync(path.join(out, "resources.json"), "utf8")) as unknown[]).length;
    return { wallS, peakMiB: kb / 1024, resources };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/** Runs the command under GNU time; its report (and any error) arrives on stderr. */
function spawnTimed(args: string[]): { stderr: string } {
  const result = spawnSync("/usr/bin/time", ["-v", process.execPath, ...args], { cwd: project, encoding: "utf8", stdio: ["ignore", "ignore", "pipe"] });
  if (result.status !== 0) throw new Error(`plan failed:\n${result.stderr}`);
  return { stderr: result.stderr };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const samples = new Map<number, Sample[]>(counts.map((n) => [n, []]));
for (let i = 0; i < repeat; i++) for (const n of i % 2 === 0 ? counts : [...counts].reverse()) samples.get(n)!.push(planOnce(n));

const summary = counts.map((n) => {
  const s = samples.get(n)!;
  return { n, wallS: median(s.map((x) => x.wallS)), peakMiB: median(s.map((x) => x.peakMiB)), resources: s[0]!.resources };
});
for (const s of summary) {
  console.log(`plan --stack ebpf, ${String(s.n).padStart(5)} Services: wall ${s.wallS.toFixed(2)} s, peak ${s.peakMiB.toFixed(0)} MiB, ${s.resources} resources (median of ${repeat})`);
}
const [one, many] = summary as [(typeof summary)[0], (typeof summary)[0]];
console.log(`ratio N=10000 / N=1: wall ${(many.wallS / one.wallS).toFixed(2)}x, peak memory ${(many.peakMiB / one.peakMiB).toFixed(2)}x, resources ${many.resources - one.resources >= 0 ? "+" : ""}${many.resources - one.resources}`);
