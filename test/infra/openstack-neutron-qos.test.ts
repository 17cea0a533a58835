// linkShaping neutron without a policy id: the stack creates the QoS policy and its rules (the admin
// role's right, which the Neutron replay shows) and caps exactly the measured ports with it.
import { beforeAll, describe, expect, it } from "vitest";
import type { OfflineRun } from "../../infra/offline-engine.js";
import { MEASURED_PORTS } from "../../infra/openstack/address-plan.js";
import { bandwidthLimits } from "../../infra/openstack/qos.js";
import type { Scenario } from "../../scenario/schema.js";
import { idOf, OPENSTACK_TYPES as T, ofType, runStack } from "./openstack-stack-checks.js";

let run: OfflineRun;
let s: Scenario;
beforeAll(async () => {
  ({ run, scenario: s } = await runStack("iptables", { "testbed:linkShaping": "neutron" }));
});

describe("testbed:linkShaping neutron", () => {
  it("caps exactly the measured path's ports at testbed:linkMbps, in both directions", () => {
    const [policy, ...more] = ofType(run, T.qosPolicy);
    expect(more).toEqual([]);
    const capped = ofType(run, T.port).filter((p) => p.inputs.qosPolicyId === idOf(policy!));
    expect(capped.map((p) => p.name).sort()).toEqual(MEASURED_PORTS.map((m) => `lab-servers-${m.role}-${m.network}`).sort());
    expect(ofType(run, T.port).filter((p) => p.inputs.qosPolicyId !== undefined)).toHaveLength(4);
    const rules = ofType(run, T.qosRule).map((r) => ({ ...r.inputs }));
    expect(rules).toEqual(bandwidthLimits(s.linkMbps).map((l) => ({ ...l, qosPolicyId: idOf(policy!) })));
    expect(rules.map((r) => r.maxKbps)).toEqual([500_000, 500_000]);
  });

  it("shapes nothing inside the guests: the cap is Neutron's alone", () => {
    for (const server of ofType(run, T.instance)) expect(String(server.inputs.userData), server.name).not.toContain("testbed-link-cap");
  });
});
