// `testbed verify-openstack` end to end: the table a user reads, the exit status, and a local
// Neutron that is gone when the command is.
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { describe, expect, inject, it } from "vitest";
import { processesNaming } from "../../infra/neutron/local-server.js";

const url = inject("neutronUrl");
const run = promisify(execFile);

async function testbed(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["--import", "tsx/esm", "cli/main.ts", "verify-openstack", ...args], { env, maxBuffer: 16 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

const resultRows = (stdout: string) => stdout.split("\n").filter((l) => /^\d+\s/.test(l));

describe("testbed verify-openstack", () => {
  it("starts the local Neutron, passes the iptables stack's default plan as a member, and leaves no server behind", async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "testbed-verify-cli-"));
    try {
      const { code, stdout, stderr } = await testbed(["--stack", "iptables"], { ...process.env, TMPDIR: tmp });
      expect(stderr).toBe("");
      expect(code).toBe(0);
      expect(stdout).toMatch(/^stack iptables: (\d+) networking resources sent to the local Neutron \(http:\/\/127\.0\.0\.1:\d+\) as member of project [0-9a-f]{32}$/m);
      const sent = Number(/^stack iptables: (\d+)/m.exec(stdout)![1]);
      expect(resultRows(stdout)).toHaveLength(sent);
      expect(resultRows(stdout).every((l) => /\saccepted$/.test(l))).toBe(true);
      expect(stdout).toContain(`accepted ${sent}, refused 0, not sent 0`);
      expect(stdout).toContain(`read back: ${sent} resources, 0 values changed or dropped by Neutron`);
      expect(stdout).toMatch(/^ {2}testbed-worker: lab-servers-worker-management, lab-servers-worker-datacenter$/m);
      expect(stdout.trimEnd().split("\n").at(-1)).toMatch(/^PASS/);
      // The server ran under TMPDIR: nothing of it is left, neither processes nor files.
      expect(processesNaming(tmp)).toEqual([]);
      expect(fs.readdirSync(tmp).filter((f) => f.startsWith("testbed-neutron-"))).toEqual([]);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("fails as a member when the stack creates Neutron QoS, quoting Neutron, and passes as admin", async () => {
    const member = await testbed(["--stack", "ebpf", "--neutron-url", url, "--config", "linkShaping=neutron"]);
    expect(member.code).toBe(1);
    expect(member.stdout).toMatch(/^\d+\s+lab-qos-policy\s+QosPolicy\s+refused\s+403 PolicyNotAuthorized: rule:create_policy is disallowed by policy$/m);
    expect(member.stdout).toMatch(/^\d+\s+lab-qos-egress\s+QosBandwidthLimitRule\s+skipped\s+not sent: waits for lab-qos-policy$/m);
    expect(member.stdout.trimEnd().split("\n").at(-1)).toMatch(/^FAIL/);

    const admin = await testbed(["--stack", "ebpf", "--neutron-url", url, "--config", "linkShaping=neutron", "--as", "admin", "--json"]);
    expect(admin.code, `${admin.stderr}${admin.stdout.slice(-4000)}`).toBe(0);
    const report = JSON.parse(admin.stdout) as { identity: { role: string }; steps: { outcome: { kind: string } }[]; mismatches: unknown[] };
    expect(report.identity.role).toBe("admin");
    expect(report.steps.every((s) => s.outcome.kind === "accepted")).toBe(true);
    expect(report.mismatches).toEqual([]);
  });

  it("refuses a bad flag or config key before anything is sent, naming it", async () => {
    const role = await testbed(["--stack", "ebpf", "--neutron-url", url, "--as", "owner"]);
    expect(role.code).toBe(1);
    expect(role.stderr).toContain('--as "owner": accepted: member, admin');
    const key = await testbed(["--stack", "ebpf", "--neutron-url", url, "--config", "linkShapin=neutron"]);
    expect(key.code).toBe(1);
    expect(key.stderr).toContain("linkShapin");
    expect(key.stdout).toBe("");
  });
});
