// scripts/lab.sh, the newcomer's `npm run lab`: shellcheck, and its refusal before it installs anything.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { LAB_CAPABILITIES } from "../../lab/privileges.js";
import { asNobodyIn, asRootWithout, canDropPrivileges } from "./privilege-drop.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const has = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
const labScript = (prefix: readonly string[]) =>
  spawnSync(prefix[0]!, [...prefix.slice(1), "bash", "scripts/lab.sh", "--profile", "smoke"], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });

describe("scripts/lab.sh", () => {
  it.skipIf(!has("shellcheck"))("passes shellcheck, following the installer it sources", () => {
    const r = spawnSync("shellcheck", ["-x", "--severity=style", "scripts/lab.sh"], { cwd: ROOT, encoding: "utf8" });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it.skipIf(!canDropPrivileges)("refuses a user other than root before installing or running anything, saying why", () => {
    const r = asNobodyIn(ROOT, labScript);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(
      "npm run lab: the local lab needs root (it creates network namespaces, iptables rules and tc eBPF programs).\nRun it as root, e.g.: sudo npm run lab\n",
    );
    expect(r.stdout).toBe("");
  });

  it.skipIf(!canDropPrivileges)("prints the lab's help as a user other than root, with nothing installed or checked first", () => {
    const r = asNobodyIn(ROOT, (prefix) =>
      spawnSync(prefix[0]!, [...prefix.slice(1), "bash", "scripts/lab.sh", "--profile", "smoke", "--help"], { encoding: "utf8", timeout: 120_000 }),
    );
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^Usage: testbed lab \[options\]/);
    expect(r.stdout).toContain("--dataplanes <list>");
  });

  it.skipIf(!canDropPrivileges)("refuses root without each capability the lab uses, naming the missing ones, before installing anything", () => {
    const advice = "Run it from a root shell that has them (a privileged container, or without dropping capabilities).\n";
    const needs = "npm run lab: the local lab needs root with CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN; this shell lacks";
    // One at a time: the script's list is the lab's (lab/privileges.ts).
    for (const capability of LAB_CAPABILITIES) {
      const r = labScript(asRootWithout([capability.name.replace(/^CAP_/, "").toLowerCase()]));
      expect(r.status, capability.name).toBe(1);
      expect(r.stderr).toBe(`${needs} ${capability.name}.\n${advice}`);
      expect(r.stdout).toBe("");
    }
    const r = labScript(asRootWithout("all"));
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`${needs} CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN.\n${advice}`);
  });
});
