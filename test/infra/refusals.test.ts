// Every refusal of a bad configuration comes before the program declares its first resource, with a
// message that names the key, the value and what is accepted: nothing is half-applied.
import { execFile } from "node:child_process";
import * as path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const CHILD = path.join(import.meta.dirname, "refusal-child.ts");
const PROJECT = path.resolve(import.meta.dirname, "../..");

async function declare(...overrides: string[]): Promise<{ declared: number; message: string }> {
  const { stdout } = await run(process.execPath, ["--import", "tsx", CHILD, ...overrides], { cwd: PROJECT, maxBuffer: 16 << 20 });
  return JSON.parse(stdout.trim().split("\n").pop()!) as { declared: number; message: string };
}

const CASES: [string, string[], RegExp][] = [
  ["a mistyped top-level key", ["sevices=5000"], /testbed:sevices is not a testbed setting; did you mean testbed:services\?/],
  ["a mistyped nested key, set as pulumi config set --path does", ["sweep.run=5"], /testbed:sweep: unknown key "run" \(did you mean "runs"\?\); accepted: services, runs, flowSeconds, seed/],
  ["a service subnet wider than kube-apiserver takes", ["kubernetes.serviceSubnets.ipv6=fd00:10:96::/100"], /testbed:kubernetes\.serviceSubnets\.ipv6: "fd00:10:96::\/100" has 28 host bits/],
  ["a lab block too small for the address plan", ["network.client.ipv4=198.18.0.0/28"], /testbed:network\.client\.ipv4: "198\.18\.0\.0\/28" holds 16 addresses/],
  ["a QoS policy without Neutron shaping", ["openstack.qosPolicyId=3f2b1c9e-8d7a-4e6f-9b0c-1a2d3e4f5a6b"], /testbed:openstack\.qosPolicyId: .* is set but testbed:linkShaping is "guest"/],
  ["no resolvers", ['openstack={"dnsNameservers":[]}'], /testbed:openstack\.dnsNameservers: \[\] is not accepted/],
  ["a CPU quota below libvirt's minimum", ['flavors={"create":true,"hostCpuMHz":100000,"cpuPeriodUs":1000}'], /testbed:flavors\.cpuPeriodUs 1000 gives a CPU quota of 15 µs/],
  ["an API endpoint port out of range", ["kubernetes.apiEndpoint=127.0.0.1:70000"], /testbed:kubernetes\.apiEndpoint "127\.0\.0\.1:70000": accepted: HOST:PORT/],
];

describe("refusals come before any resource is declared", () => {
  it.each(CASES)("%s", async (_label, overrides, message) => {
    const r = await declare(...overrides);
    expect(r.message).toMatch(message);
    expect(r.declared).toBe(0);
  });

  it("the count is real: a good configuration declares the whole testbed", async () => {
    const r = await declare("services=3");
    expect(r.message).toBe("");
    expect(r.declared).toBeGreaterThan(80);
  });
});
