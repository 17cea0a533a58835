// The `testbed` bin as a user runs it (`npx testbed`, or dist/cli/main.js): plain JavaScript that tsc compiled, so
// plain node runs it with no TypeScript loader (a .ts module on its way would fail to load), the verbs that start
// testbed again in a child process or a worker run their compiled modules too, and --version prints package.json's.
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string; bin: Record<string, string> };
const BIN = fileURLToPath(new URL(`../../${pkg.bin.testbed}`, import.meta.url));

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) =>
    execFile(file, args, { cwd: ROOT, maxBuffer: 16 << 20, env: { ...process.env, NODE_OPTIONS: "" } }, (err, stdout, stderr) =>
      done({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

describe("the testbed bin", () => {
  it("is built (npm run build; npm test and npm ci build it), executable, and compiled JavaScript", () => {
    expect(pkg.bin.testbed).toBe("dist/cli/main.js");
    expect(existsSync(BIN), `${BIN} is missing: run \`npm run build\``).toBe(true);
    expect(statSync(BIN).mode & 0o111).not.toBe(0);
    const text = readFileSync(BIN, "utf8");
    expect(text.startsWith("#!/usr/bin/env node\n")).toBe(true);
    expect(text).not.toMatch(/from "tsx|import\("tsx|"--import"/);
  });

  it("has beside its compiled modules every file of theirs they read at run time (the C sources the lab compiles)", () => {
    const dist = join(ROOT, "dist");
    const compiled = readdirSync(dist, { withFileTypes: true }).filter((e) => e.isDirectory() && existsSync(join(ROOT, e.name)));
    const missing = compiled.flatMap((folder) =>
      (readdirSync(join(ROOT, folder.name), { recursive: true }) as string[]).filter((file) => /\.(c|h)$/.test(file) && !existsSync(join(dist, folder.name, file))).map((file) => `${folder.name}/${file}`),
    );
    expect(missing, "dist/ lacks them: is their folder in tsconfig.build.json's include?").toEqual([]);
  });

  it("--version prints package.json's version; npx finds the bin", async () => {
    expect(await run(BIN, ["--version"])).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: "" });
    expect((await run("npx", ["--offline", "testbed", "-V"])).stdout).toBe(`${pkg.version}\n`);
  });

  it("the overview names every dataplane of the registry", async () => {
    const { DATAPLANES } = await import("../../scenario/schema.js");
    const help = await run(BIN, ["--help"]);
    expect(help.code).toBe(0);
    for (const d of DATAPLANES) expect(help.stdout.replace(/\s+/g, " ")).toContain(`${d} (`);
  });

  it("runs verbs that load the Pulumi program and that start testbed again in child processes, all compiled", async () => {
    const plan = await run(BIN, ["plan", "--stack", "ebpf"]);
    expect([plan.code, plan.stderr]).toEqual([0, ""]);
    expect(plan.stdout).toMatch(/^total\s+\d+$/m);
    const diff = await run(BIN, ["diff", "iptables", "ebpf", "--json"]);
    expect([diff.code === 0 || diff.code === 1, diff.stderr]).toEqual([true, ""]);
    expect(JSON.parse(diff.stdout).changes.length).toBeGreaterThan(0);
  });
});
