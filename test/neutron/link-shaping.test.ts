// The link cap through Neutron QoS, against Neutron's default policies: creating a policy is an
// admin's job; attaching one an admin provides is a member's.
import * as fs from "node:fs";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { NeutronApi, freshIdentity, query } from "../../infra/neutron/api.js";
import { planNetworkingInChild } from "../../cli/verify-openstack.js";
import { replayPlan, type ReplayReport } from "../../infra/neutron/replay.js";
import { MEASURED_PORTS } from "../../infra/openstack/address-plan.js";
import type { NetworkingPlan } from "../../infra/neutron/networking-plan.js";
import { onlyWhatNeeds } from "./plan-edits.js";

const url = inject("neutronUrl");
const QOS_POLICY = "openstack:networking/qosPolicy:QosPolicy";
const QOS_RULE = "openstack:networking/qosBandwidthLimitRule:QosBandwidthLimitRule";
const PORT = "openstack:networking/port:Port";
const MEASURED_NAMES = MEASURED_PORTS.map((p) => `testbed-${p.role}-${p.network}`).sort();

const outcome = (report: ReplayReport, type: string) => report.steps.filter((s) => s.type === type).map((s) => s.outcome);

/** Names of the project's ports that carry `policy`, as Neutron holds them. */
async function portsWithPolicy(api: NeutronApi, policy: string): Promise<string[]> {
  const ports = (await api.get(`ports?${query({ project_id: api.identity.projectId })}`)).ports as { name: string; qos_policy_id: string | null }[];
  return ports.filter((p) => p.qos_policy_id === policy).map((p) => p.name).sort();
}

/** An operator's policy with the paper's cap, shared with every project or owned by `project`. */
async function operatorPolicy(operator: NeutronApi, owner: { shared: true } | { project: string }): Promise<string> {
  const policy = (
    await operator.post("qos/policies", {
      policy: { name: "operator-link-cap", ...("shared" in owner ? { shared: true } : { project_id: owner.project, shared: false }) },
    })
  ).policy as { id: string };
  for (const direction of ["egress", "ingress"]) {
    await operator.post(`qos/policies/${policy.id}/bandwidth_limit_rules`, { bandwidth_limit_rule: { max_kbps: 500000, max_burst_kbps: 400000, direction } });
  }
  return policy.id;
}

describe("Neutron QoS created by the stack (testbed:linkShaping neutron)", () => {
  let plan: NetworkingPlan;
  beforeAll(async () => {
    plan = await planNetworkingInChild("ebpf", ["linkShaping=neutron"]);
  });

  it("is refused to a project member with Neutron's message, which the README quotes; the capped ports wait for it", async () => {
    expect(plan.resources.filter((r) => r.type === QOS_POLICY)).toHaveLength(1);

    const member = await replayPlan(plan, { url, as: "member" });
    const [refusal] = outcome(member, QOS_POLICY);
    expect(refusal).toEqual({ kind: "refused", status: 403, type: "PolicyNotAuthorized", message: "rule:create_policy is disallowed by policy" });
    expect(fs.readFileSync("README.md", "utf8")).toContain(refusal!.kind === "refused" ? refusal!.message : "");
    // Its rules and the capped ports are never sent; everything else is accepted.
    expect(outcome(member, QOS_RULE).map((o) => o.kind)).toEqual(["skipped", "skipped"]);
    const skippedPorts = member.steps.filter((s) => s.type === PORT && s.outcome.kind === "skipped").map((s) => plan.resources.find((r) => r.name === s.name)!.inputs.name);
    expect((skippedPorts as string[]).sort()).toEqual(MEASURED_NAMES);
    expect(member.steps.filter((s) => s.type !== QOS_POLICY && s.type !== QOS_RULE && s.type !== PORT).every((s) => s.outcome.kind === "accepted")).toBe(true);
    expect(member.mismatches).toEqual([]);
  });

  it("is accepted whole for an admin, and the created policy sits on exactly the measured ports", async () => {
    const admin = await replayPlan(plan, { url, as: "admin" });
    expect(admin.steps.filter((s) => s.outcome.kind !== "accepted")).toEqual([]);
    expect(admin.mismatches).toEqual([]);
    const policy = admin.steps.find((s) => s.type === QOS_POLICY)!.outcome;
    expect(policy.kind).toBe("accepted");
    expect(await portsWithPolicy(new NeutronApi(url, admin.identity), policy.kind === "accepted" ? policy.id : "")).toEqual(MEASURED_NAMES);
  });
});

describe("an existing policy (testbed:openstack.qosPolicyId)", () => {
  const withPolicy = (id: string) => ["linkShaping=neutron", `openstack.qosPolicyId=${id}`];
  /** The measured ports and what they wait for: the part of the plan the policy concerns. */
  const measuredPart = (plan: NetworkingPlan) =>
    onlyWhatNeeds(plan, plan.resources.filter((r) => r.type === PORT && MEASURED_NAMES.includes(String(r.inputs.name))).map((r) => r.name));

  it("shared by an operator: the plan creates no QoS and a member attaches the policy to exactly the measured ports", async () => {
    const operator = new NeutronApi(url, freshIdentity("admin"));
    const policy = await operatorPolicy(operator, { shared: true });
    const plan = await planNetworkingInChild("ebpf", withPolicy(policy));
    expect(plan.resources.filter((r) => r.type === QOS_POLICY || r.type === QOS_RULE)).toEqual([]);

    const member = await replayPlan(plan, { url, as: "member" });
    expect(member.steps.filter((s) => s.outcome.kind !== "accepted")).toEqual([]);
    expect(member.mismatches).toEqual([]);
    expect(await portsWithPolicy(new NeutronApi(url, member.identity), policy)).toEqual(MEASURED_NAMES);
  });

  it("created by an operator in the member's project: accepted as well", async () => {
    const identity = freshIdentity("member");
    const policy = await operatorPolicy(new NeutronApi(url, freshIdentity("admin")), { project: identity.projectId });
    const member = await replayPlan(measuredPart(await planNetworkingInChild("ebpf", withPolicy(policy))), { url, as: identity });
    expect(member.steps.filter((s) => s.outcome.kind !== "accepted")).toEqual([]);
    expect(await portsWithPolicy(new NeutronApi(url, identity), policy)).toEqual(MEASURED_NAMES);
  });

  it("another project's unshared policy: Neutron does not let the member see it, and the measured ports are refused", async () => {
    const policy = await operatorPolicy(new NeutronApi(url, freshIdentity("admin")), { project: freshIdentity("member").projectId });
    const member = await replayPlan(measuredPart(await planNetworkingInChild("ebpf", withPolicy(policy))), { url, as: "member" });
    const refused = member.steps.filter((s) => s.outcome.kind === "refused");
    expect(refused.map((s) => s.type)).toEqual(Array(MEASURED_NAMES.length).fill(PORT));
    for (const s of refused) expect(s.outcome).toMatchObject({ status: 404, type: "QosPolicyNotFound" });
  });
});
