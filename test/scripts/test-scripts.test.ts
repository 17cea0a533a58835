// The scripts behind `npm test`: the installer, the test runner and the run as a user would do it
// (scripts/test-as-user.sh), checked by shellcheck, and the latter's refusal of bad options before
// it clones or starts anything.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const hasShellcheck = spawnSync("sh", ["-c", "command -v shellcheck"]).status === 0;
const asUser = (...args: string[]) => spawnSync("bash", ["scripts/test-as-user.sh", ...args], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });
const privateFolders = () => readdirSync(tmpdir()).filter((n) => n.startsWith("dataplane-testbed-test."));

describe("scripts/test.sh and scripts/test-as-user.sh", () => {
  it.skipIf(!hasShellcheck)("pass shellcheck, following the installer they source", () => {
    for (const script of ["scripts/test.sh", "scripts/test-as-user.sh", "scripts/deps.sh"]) {
      const r = spawnSync("shellcheck", ["-x", "--severity=style", script], { cwd: ROOT, encoding: "utf8" });
      expect(r.stdout + r.stderr, script).toBe("");
      expect(r.status, script).toBe(0);
    }
  });

  it("npm test runs the lab's suites when the others failed, then fails naming each failed phase", () => {
    // scripts/test.sh in a folder of its own, with stand-ins for npx and npm that log their arguments and fail the
    // suites outside test/lab, and a dpkg-query that reports every package installed.
    const work = mkdtempSync(path.join(tmpdir(), "npm-test-phases-"));
    try {
      mkdirSync(path.join(work, "scripts"));
      mkdirSync(path.join(work, "node_modules"));
      mkdirSync(path.join(work, "bin"));
      for (const f of ["test.sh", "deps.sh"]) copyFileSync(path.join(ROOT, "scripts", f), path.join(work, "scripts", f));
      writeFileSync(path.join(work, "package-lock.json"), "{}");
      writeFileSync(path.join(work, "node_modules/.package-lock.json"), "{}");
      utimesSync(path.join(work, "package-lock.json"), new Date(0), new Date(0));
      const log = path.join(work, "calls.log");
      const stub = (name: string, body: string) => writeFileSync(path.join(work, "bin", name), `#!/usr/bin/env bash\necho "${name} $*" >> ${JSON.stringify(log)}\n${body}\n`, { mode: 0o755 });
      stub("npx", `case "$*" in *"--exclude test/lab/**"*) exit 1 ;; esac; exit 0`);
      stub("npm", "exit 0");
      writeFileSync(path.join(work, "bin", "dpkg-query"), '#!/usr/bin/env bash\nprintf "install ok installed"\n', { mode: 0o755 });
      const r = spawnSync("bash", ["scripts/test.sh"], { cwd: work, encoding: "utf8", env: { ...process.env, PATH: `${path.join(work, "bin")}:${process.env.PATH}` } });
      const calls = readFileSync(log, "utf8").trim().split("\n");
      expect(calls).toEqual([
        "npx tsc --noEmit -p .",
        "npm run -s build",
        "npx vitest run --exclude test/lab/**",
        "npx vitest run test/lab",
      ]);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("npm test: 1 phase(s) failed:\n  - the suites outside test/lab (exit 1)");
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it("test-as-user refuses a bad option, naming it and what is accepted, before it makes its folder", () => {
    const before = privateFolders();
    const cases: [string[], string][] = [
      [["--busy", "two"], 'test-as-user: --busy: "two" is not accepted; accepted: a whole number of busy loops (0 for none)'],
      [["--parent", "/nonexistent/x"], 'test-as-user: --parent: "/nonexistent/x" is not accepted; accepted: an existing directory'],
      [["--parent", tmpdir(), "--quick"], "test-as-user: --quick: unknown option; accepted: --busy N, --parent DIR, -- ARGS for npm test"],
    ];
    for (const [args, message] of cases) {
      const r = asUser(...args);
      expect(r.stderr.trim(), args.join(" ")).toBe(message);
      expect(r.status).toBe(2);
    }
    expect(privateFolders()).toEqual(before);
  });
});
