// What `testbed verify-openstack` prints, from a report built by hand.
import { describe, expect, it } from "vitest";
import { formatReport, parseRole } from "../../cli/verify-openstack.js";
import type { ReplayReport } from "../../infra/neutron/replay.js";

const report = (extra: Partial<ReplayReport> = {}): ReplayReport => ({
  stack: "ebpf",
  identity: { projectId: "p1", userId: "u1", role: "member" },
  steps: [
    { name: "lab-net", type: "openstack:networking/network:Network", outcome: { kind: "accepted", id: "n1" } },
    { name: "lab-qos-policy", type: "openstack:networking/qosPolicy:QosPolicy", outcome: { kind: "refused", status: 403, type: "PolicyNotAuthorized", message: "rule:create_policy is disallowed by policy" } },
    { name: "lab-port", type: "openstack:networking/port:Port", outcome: { kind: "skipped", waitsFor: "lab-qos-policy" } },
  ],
  mismatches: [],
  readBack: 1,
  nova: [
    { port: "lab-port-a", server: "testbed-router", sets: {} },
    { port: "lab-port-b", server: "testbed-router", sets: {} },
  ],
  notReplayed: [
    { type: "openstack:compute/instance:Instance", name: "a" },
    { type: "openstack:compute/instance:Instance", name: "b" },
    { type: "openstack:compute/keypair:Keypair", name: "k" },
  ],
  ...extra,
});

describe("formatReport", () => {
  it("prints one row per resource in the order sent, with Neutron's answer for a refusal and the reason a resource was not sent", () => {
    const lines = formatReport(report(), "the local Neutron").split("\n");
    expect(lines[0]).toBe("stack ebpf: 3 networking resources sent to the local Neutron as member of project p1");
    expect(lines[2]).toMatch(/^#\s+RESOURCE\s+TYPE\s+RESULT\s+NEUTRON$/);
    expect(lines[3]).toMatch(/^1\s+lab-net\s+Network\s+accepted$/);
    expect(lines[4]).toMatch(/^2\s+lab-qos-policy\s+QosPolicy\s+refused\s+403 PolicyNotAuthorized: rule:create_policy is disallowed by policy$/);
    expect(lines[5]).toMatch(/^3\s+lab-port\s+Port\s+skipped\s+not sent: waits for lab-qos-policy$/);
    expect(lines).toContain("accepted 1, refused 1, not sent 1");
    expect(lines).toContain("  testbed-router: lab-port-a, lab-port-b");
    expect(lines).toContain("Not replayed (Nova's, out of scope): 2 Instance, 1 Keypair");
    expect(lines.at(-1)).toMatch(/^FAIL/);
  });

  it("lists each value Neutron changed or dropped, and passes only a clean replay", () => {
    const changed = formatReport(
      report({ steps: [report().steps[0]!], mismatches: [{ resource: "lab-net", field: "mtu", planned: 1400, actual: undefined }] }),
      "x",
    );
    expect(changed).toContain("read back: 1 resources, 1 values changed or dropped by Neutron\n  lab-net mtu: planned 1400, Neutron holds (absent)");
    expect(changed.split("\n").at(-1)).toMatch(/^FAIL/);
    expect(formatReport(report({ steps: [report().steps[0]!] }), "x").split("\n").at(-1)).toMatch(/^PASS/);
  });
});

describe("parseRole", () => {
  it("takes member or admin and names the accepted roles otherwise", () => {
    expect(parseRole("admin")).toBe("admin");
    expect(() => parseRole("owner")).toThrow('--as "owner": accepted: member, admin');
  });
});
