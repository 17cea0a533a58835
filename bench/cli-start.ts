// Benchmark: what the `testbed` bin saves by running compiled JavaScript instead of TypeScript through tsx. The same
// commands, alternating, in the same run: the bin (node dist/cli/main.js) against the development path (node
// --import tsx/esm cli/main.ts, what `npm run testbed` runs), for `decode --help` (start-up alone) and for decoding
// a one-way log of a million records (`decode --itgdec --json`), with ratios of the medians.
// Run: npm run build && npx tsx bench/cli-start.ts [--runs N]
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { encodeRecord, recordBlock, timeOfDay } from "../measure/ditg-log.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const BIN = join(ROOT, "dist/cli/main.js");
const RECORDS = 1_000_000;
const runsFlag = process.argv.indexOf("--runs");
const RUNS = runsFlag > 0 ? Number(process.argv[runsFlag + 1]) : 15;
if (!Number.isInteger(RUNS) || RUNS < 3) throw new Error(`--runs ${process.argv[runsFlag + 1]}: accepted: a whole number of 3 or more`);
if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`npm run build\` first`);

const ENTRIES = {
  bin: { label: "node dist/cli/main.js (the bin)", argv: [BIN] },
  tsx: { label: "node --import tsx/esm cli/main.ts (npm run testbed)", argv: ["--import", "tsx/esm", join(ROOT, "cli/main.ts")] },
} as const;

function wallSeconds(argv: readonly string[]): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, argv, { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, NODE_OPTIONS: "" } });
  const s = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${argv.join(" ")} exited with ${r.status}: ${r.stderr.toString()}`);
  return s;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** A receiver's log of RECORDS packets at 100 kpps, 40 to 56 µs each. */
async function oneWayLog(dir: string): Promise<string> {
  const block = recordBlock(RECORDS);
  const t0 = Date.UTC(2026, 4, 1, 8) * 1000;
  for (let i = 0; i < RECORDS; i++) {
    const tx = t0 + i * 10;
    encodeRecord(block, i, { flowId: 1, seqNum: i + 1, srcAddress: "198.18.0.10", srcPort: 40000, destAddress: "0.0.0.0", destPort: 31000, tx: timeOfDay(tx), rx: timeOfDay(tx + 40 + (i % 17)), size: 512 });
  }
  const file = join(dir, "one-way.rlog");
  await writeFile(file, block.bytes);
  return file;
}

const dir = await mkdtemp(join(tmpdir(), "bench-cli-start-"));
try {
  const log = await oneWayLog(dir);
  const commands = { help: ["decode", "--help"], decode: ["decode", log, "--itgdec", "--json"] } as const;
  console.log(`${RUNS} runs of each command and entry, alternating; medians of wall time:`);
  for (const args of Object.values(commands)) {
    const times: Record<keyof typeof ENTRIES, number[]> = { bin: [], tsx: [] };
    for (const entry of Object.keys(ENTRIES) as (keyof typeof ENTRIES)[]) wallSeconds([...ENTRIES[entry].argv, ...args]); // warm the page cache
    for (let i = 0; i < RUNS; i++) {
      for (const entry of (i % 2 === 0 ? ["bin", "tsx"] : ["tsx", "bin"]) as (keyof typeof ENTRIES)[]) times[entry].push(wallSeconds([...ENTRIES[entry].argv, ...args]));
    }
    const bin = median(times.bin);
    const tsx = median(times.tsx);
    console.log(`  testbed ${args.join(" ").replace(log, `LOG (${RECORDS / 1e6} M records)`)}:`);
    for (const entry of ["tsx", "bin"] as const) console.log(`    ${ENTRIES[entry].label}: ${median(times[entry]).toFixed(3)} s`);
    console.log(`    bin/tsx: ${(bin / tsx).toFixed(2)} (${((tsx - bin) * 1000).toFixed(0)} ms saved)`);
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
