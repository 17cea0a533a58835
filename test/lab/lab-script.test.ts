// scripts/lab.sh, the newcomer's `npm run lab`: shellcheck, and its refusal before it installs anything.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const has = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;

describe("scripts/lab.sh", () => {
  it.skipIf(!has("shellcheck"))("passes shellcheck, following the installer it sources", () => {
    const r = spawnSync("shellcheck", ["-x", "--severity=style", "scripts/lab.sh"], { cwd: ROOT, encoding: "utf8" });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it.skipIf(process.platform !== "linux" || process.getuid?.() !== 0 || !has("setpriv"))(
    "refuses a user other than root before installing or running anything, saying why",
    () => {
      const r = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "bash", "scripts/lab.sh", "--profile", "smoke"], {
        cwd: ROOT,
        encoding: "utf8",
        timeout: 30_000,
      });
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(
        "npm run lab: the local lab needs root (it creates network namespaces, iptables rules and tc eBPF programs).\nRun it as root, e.g.: sudo npm run lab\n",
      );
      expect(r.stdout).toBe("");
    },
  );
});
