// The probes on the client and the worker (the connection-setup probe and the programming probe): the
// build script with the real cc on their real sources (measure/connection-setup-probe.c,
// measure/programming-probe.c), and the program's commands that upload and build each on both hosts,
// under the mocked engine.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SETUP_PROBE_SOURCE } from "../../measure/connection-setup.js";
import { scriptOfRootCommand } from "../../infra/cluster/shell.js";
import { assetText, type OfflineRun } from "../../infra/offline-engine.js";
import { contentHash } from "../../infra/remote-files.js";
import { probeBuildScript, PROGRAMMING_PROBE, SETUP_PROBE_PATH, STACK_PROBES } from "../../infra/setup-probe.js";
import { recordRegistrations, reg } from "./mock-registrations.js";
import { runStack } from "./openstack-stack-checks.js";

const work = fs.mkdtempSync(path.join(os.tmpdir(), "setup-probe-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const source = fs.readFileSync(SETUP_PROBE_SOURCE, "utf8");

describe("the build on a host", () => {
  const build = (name: string, a: { sha256?: string; text?: string } = {}) => {
    const file = path.join(work, `${name}.c`);
    fs.writeFileSync(file, a.text ?? source);
    const binary = path.join(work, name, "bin", "connection-setup-probe");
    const r = spawnSync("bash", ["-c", probeBuildScript({ source: file, sha256: a.sha256 ?? contentHash(a.text ?? source), binary })], { encoding: "utf8", timeout: 120_000 });
    return { ...r, binary };
  };

  it("builds the probe's source with cc -O2, installs it and prints where", () => {
    const r = build("ok");
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`${r.binary}\n`);
    expect(fs.statSync(r.binary).mode & 0o777).toBe(0o755);
    // The built program answers as the probe does: a command line it does not take is refused.
    const usage = spawnSync(r.binary, ["probe"], { encoding: "utf8" });
    expect(usage.status).not.toBe(0);
    expect(usage.stderr.length).toBeGreaterThan(0);
  });

  it("builds the programming probe's source the same way, warning-free under -Wall as the lab builds it", () => {
    const text = fs.readFileSync(PROGRAMMING_PROBE.sourceFile, "utf8");
    const r = build("programming", { text });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const usage = spawnSync(r.binary, ["probe"], { encoding: "utf8" });
    expect(usage.status).not.toBe(0);
    expect(usage.stderr).toMatch(/^usage: programming-probe probe ADDRESS PORT/);
    const warnings = spawnSync("cc", ["-O2", "-Wall", "-fsyntax-only", PROGRAMMING_PROBE.sourceFile], { encoding: "utf8" });
    expect(warnings.stderr).toBe("");
  });

  it("refuses a source that is not the one uploaded, before building", () => {
    const r = build("stale", { sha256: "0".repeat(64) });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/is not the probe source this step uploaded/);
    expect(fs.existsSync(r.binary)).toBe(false);
  });

  it("says what cc said when the source does not build", () => {
    const r = build("broken", { text: "int main(void) { return missing; }\n" });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^cc could not build .*broken\.c:\n.*missing/s);
  });

  it("passes shellcheck", () => {
    const file = path.join(work, "build.sh");
    fs.writeFileSync(file, `#!/usr/bin/env bash\n${probeBuildScript({ source: "/opt/testbed/tools/x.c", sha256: "0".repeat(64), binary: SETUP_PROBE_PATH })}\n`);
    const r = spawnSync("shellcheck", ["--shell=bash", "--severity=style", file], { encoding: "utf8" });
    expect(r.stdout).toBe("");
    expect(r.status).toBe(0);
  });
});

describe("in the program", () => {
  let run: OfflineRun;
  beforeAll(async () => {
    recordRegistrations();
    ({ run } = await runStack("iptables"));
  });

  it.each([
    { name: "setup-probe", file: "connection-setup-probe", probe: STACK_PROBES[0]!.probe },
    { name: "programming-probe", file: "programming-probe", probe: STACK_PROBES[1]!.probe },
  ])("uploads $file's source and builds it on the client and on the worker, once each host is ready", ({ name, file, probe }) => {
    const text = fs.readFileSync(probe.sourceFile, "utf8");
    for (const role of ["client", "worker"]) {
      const upload = run.resources.find((r) => r.name === `${name}-${role}-source`)!;
      expect(upload.inputs.remotePath).toBe(`/opt/testbed/tools/${file}.c`);
      expect(assetText(upload.inputs.source)).toBe(text);
      const build = run.resources.find((r) => r.name === `${name}-${role}-build`)!;
      const script = scriptOfRootCommand(String(build.inputs.create));
      expect(script).toContain(`SOURCE_SHA256='${contentHash(text)}'`);
      expect(script).toContain(`BINARY='/usr/local/bin/${file}'`);
      expect([...reg(`${name}-${role}-build`).dependencies]).toEqual(expect.arrayContaining([reg(`${name}-${role}-source`).urn, reg(`lab-${role}-ready`).urn]));
      expect(reg(`${name}-${role}-build`).deletedWith).toBe(reg(`lab-servers-${role}`).urn);
      // No trigger: a new source is an update, which builds again; nothing to tear down.
      expect(build.inputs.triggers).toBeUndefined();
      expect(build.inputs.delete).toBeUndefined();
    }
  });

  it("exports where each host has each probe, from the builds' own output", () => {
    expect(source).toBe(fs.readFileSync(STACK_PROBES[0]!.probe.sourceFile, "utf8"));
    expect(run.outputs.connectionSetupProbe).toEqual({ client: SETUP_PROBE_PATH, worker: SETUP_PROBE_PATH });
    expect(run.outputs.programmingProbe).toEqual({ client: PROGRAMMING_PROBE.binary, worker: PROGRAMMING_PROBE.binary });
  });
});
