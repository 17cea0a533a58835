// One known mistake per class, planted in the ebpf stack's plan: Neutron refuses each with its own
// message, the unplanted plan passes the same replay, and a value Neutron rewrites fails the read-back.
import { beforeAll, describe, expect, inject, it } from "vitest";
import { planNetworkingInChild } from "../../cli/verify-openstack.js";
import type { NetworkingPlan } from "../../infra/neutron/networking-plan.js";
import { replayPlan, type ReplayReport } from "../../infra/neutron/replay.js";
import { editResource, onlyWhatNeeds, resourceOfType, withoutDependency } from "./plan-edits.js";

const url = inject("neutronUrl");
const T = {
  association: "openstack:networking/floatingIpAssociate:FloatingIpAssociate",
  routerInterface: "openstack:networking/routerInterface:RouterInterface",
  port: "openstack:networking/port:Port",
  rule: "openstack:networking/secGroupRule:SecGroupRule",
};

let plan: NetworkingPlan;
beforeAll(async () => {
  plan = await planNetworkingInChild("ebpf");
});

const outcomeOf = (report: ReplayReport, name: string) => report.steps.find((s) => s.name === name)!.outcome;
const notAccepted = (report: ReplayReport) => report.steps.filter((s) => s.outcome.kind !== "accepted");

describe("a floating IP associated before the router interface", () => {
  it("is refused by Neutron (ExternalGatewayForFloatingIPNotFound) when the program does not make the association wait", async () => {
    const association = resourceOfType(plan, T.association);
    const routerInterface = resourceOfType(plan, T.routerInterface);
    const both = [association.name, routerInterface.name];

    const planned = await replayPlan(onlyWhatNeeds(plan, both), { url, as: "member" });
    expect(notAccepted(planned)).toEqual([]);

    const planted = await replayPlan(onlyWhatNeeds(withoutDependency(plan, association.name, routerInterface.name), both), { url, as: "member" });
    const order = planted.steps.map((s) => s.name);
    expect(order.indexOf(association.name)).toBeLessThan(order.indexOf(routerInterface.name));
    expect(outcomeOf(planted, association.name)).toMatchObject({
      kind: "refused",
      status: 404,
      type: "ExternalGatewayForFloatingIPNotFound",
      message: expect.stringMatching(/^External network \S+ is not reachable from subnet \S+\.\s+Therefore, cannot associate Port \S+ with a Floating IP\.$/),
    });
    expect(outcomeOf(planted, routerInterface.name).kind).toBe("accepted");
  });
});

describe("allowed address pairs with port security off", () => {
  it("are refused by Neutron (AddressPairAndPortSecurityRequired) on the router VM's port", async () => {
    const routerPort = resourceOfType(plan, T.port, (r) => Array.isArray(r.inputs.allowedAddressPairs) && r.inputs.allowedAddressPairs.length > 0);
    const planned = await replayPlan(onlyWhatNeeds(plan, [routerPort.name]), { url, as: "member" });
    expect(notAccepted(planned)).toEqual([]);

    // The other way to let a VM forward (no port security, no groups), with the pairs left in place.
    const mistake = editResource(plan, routerPort.name, (r) => {
      const { securityGroupIds: _groups, ...inputs } = r.inputs;
      return { ...r, inputs: { ...inputs, portSecurityEnabled: false, noSecurityGroups: true }, references: r.references.filter((ref) => ref.path[0] !== "securityGroupIds") };
    });
    const planted = await replayPlan(onlyWhatNeeds(mistake, [routerPort.name]), { url, as: "member" });
    expect(outcomeOf(planted, routerPort.name)).toEqual({
      kind: "refused",
      status: 409,
      type: "AddressPairAndPortSecurityRequired",
      message: "Port Security must be enabled in order to have allowed address pairs on a port.",
    });
  });
});

describe("a security-group rule whose prefix does not match its ethertype", () => {
  it("is refused by Neutron (SecurityGroupRuleParameterConflict)", async () => {
    const rule = resourceOfType(plan, T.rule, (r) => r.inputs.ethertype === "IPv4" && typeof r.inputs.remoteIpPrefix === "string");
    const planted = await replayPlan(
      onlyWhatNeeds(
        editResource(plan, rule.name, (r) => ({ ...r, inputs: { ...r.inputs, ethertype: "IPv6" } })),
        [rule.name],
      ),
      { url, as: "member" },
    );
    expect(outcomeOf(planted, rule.name)).toEqual({
      kind: "refused",
      status: 400,
      type: "SecurityGroupRuleParameterConflict",
      message: `Conflicting value ethertype IPv6 for CIDR ${String(rule.inputs.remoteIpPrefix)}`,
    });
  });
});

describe("the read-back", () => {
  it("fails a value Neutron accepts but rewrites: an IPv6 fixed address written in upper case comes back in lower case", async () => {
    const port = resourceOfType(plan, T.port, (r) => (r.inputs.fixedIps as { ipAddress: string }[]).some((f) => f.ipAddress.includes(":") && /[a-f]/.test(f.ipAddress) === false));
    const upper = editResource(plan, port.name, (r) => {
      const fixedIps = (r.inputs.fixedIps as { ipAddress: string; subnetId: string }[]).map((f) => (f.ipAddress.includes(":") ? { ...f, ipAddress: `${f.ipAddress.replace(/::.*$/, "")}::A` } : f));
      return { ...r, inputs: { ...r.inputs, fixedIps } };
    });
    const report = await replayPlan(onlyWhatNeeds(upper, [port.name]), { url, as: "member" });
    expect(notAccepted(report)).toEqual([]);
    expect(report.mismatches).toEqual([
      expect.objectContaining({ resource: port.name, field: "fixed_ips", actual: expect.arrayContaining([expect.objectContaining({ ip_address: expect.stringMatching(/::a$/) })]) }),
    ]);
  });
});
