// The scripts behind `npm test`: the installer, the test runner and the run as a user would do it
// (scripts/test-as-user.sh), checked by shellcheck, and the latter's refusal of bad options before
// it clones or starts anything.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
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
