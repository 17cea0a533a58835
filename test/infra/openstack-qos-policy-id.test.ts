// linkShaping neutron with openstack.qosPolicyId: an existing policy is attached to the measured
// ports and nothing is created, so a project member can `up` it.
import { beforeAll, describe, expect, it } from "vitest";
import type { OfflineRun } from "../../infra/offline-engine.js";
import { MEASURED_PORTS } from "../../infra/openstack/address-plan.js";
import { cloudConfigProblems } from "./cloud-init-checks.js";
import { OPENSTACK_TYPES as T, ofType, runStack } from "./openstack-stack-checks.js";

const POLICY = "3f2b1c9e-8d7a-4e6f-9b0c-1a2d3e4f5a6b";
let run: OfflineRun;
beforeAll(async () => {
  ({ run } = await runStack("ebpf", { "testbed:linkShaping": "neutron", "testbed:openstack": JSON.stringify({ qosPolicyId: POLICY }) }));
});

describe("testbed:openstack.qosPolicyId", () => {
  it("creates no QoS resource and attaches the given policy to exactly the measured ports", () => {
    expect(ofType(run, T.qosPolicy)).toEqual([]);
    expect(ofType(run, T.qosRule)).toEqual([]);
    expect(run.resources.some((r) => r.type === "testbed:openstack:LinkQos")).toBe(false);
    const capped = ofType(run, T.port).filter((p) => p.inputs.qosPolicyId !== undefined);
    expect(capped.map((p) => p.name).sort()).toEqual(MEASURED_PORTS.map((m) => `lab-servers-${m.role}-${m.network}`).sort());
    for (const p of capped) expect(p.inputs.qosPolicyId).toBe(POLICY);
  });

  it("passes the same validators: valid user data with no guest shaping", () => {
    for (const server of ofType(run, T.instance)) {
      expect(cloudConfigProblems(server.inputs.userData as string), server.name).toEqual([]);
      expect(String(server.inputs.userData)).not.toContain("testbed-link-cap");
    }
  });
});
