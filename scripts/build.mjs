// `npm run build` (also run by `npm ci`/`npm install` as prepare, by `npm test` and by `npm run lab`):
// compiles the runtime folders of tsconfig.build.json with tsc into dist/, so that the `testbed` bin
// (dist/cli/main.js) starts as plain JavaScript with no TypeScript loader, and copies beside the
// compiled modules the files they read at run time (C sources, fixtures, the paper's tables). It
// builds into a fresh folder and renames it, so a failed build leaves the previous dist/ whole.
import { execFileSync } from "node:child_process";
import { chmodSync, cpSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const config = "tsconfig.build.json";
const { include, compilerOptions } = JSON.parse(readFileSync(path.join(root, config), "utf8"));
const dist = path.join(root, compilerOptions.outDir);
const staging = `${dist}.building-${process.pid}`;
/** Folders read at run time that hold no TypeScript (measure/paper-reference.ts reads ../reference/). */
const DATA_FOLDERS = ["reference"];

rmSync(staging, { recursive: true, force: true });
try {
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", config, "--outDir", staging], { cwd: root, stdio: "inherit" });
  for (const folder of include) {
    cpSync(path.join(root, folder), path.join(staging, folder), {
      recursive: true,
      filter: (src) => statSync(src).isDirectory() || !src.endsWith(".ts"),
    });
  }
  for (const folder of DATA_FOLDERS) cpSync(path.join(root, folder), path.join(staging, folder), { recursive: true });
  chmodSync(path.join(staging, "cli/main.js"), 0o755);
  rmSync(dist, { recursive: true, force: true });
  renameSync(staging, dist);
} catch (err) {
  rmSync(staging, { recursive: true, force: true });
  console.error(`build: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
