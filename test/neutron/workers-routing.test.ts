// More workers and native pod routing against a real Neutron: the second worker's ports and the
// cluster group's rules are accepted whole as a project member and read back as planned; and a
// running lab switched from the tunnel to native routing (address pairs on the nodes' ports, the
// cluster group's rules) is a member's job too, on its own ports only.
import { beforeAll, describe, expect, inject, it } from "vitest";
import { NeutronApi, NeutronRefusal, freshIdentity, query } from "../../infra/neutron/api.js";
import { planNetworkingInChild } from "../../cli/verify-openstack.js";
import { replayPlan, type ReplayReport } from "../../infra/neutron/replay.js";
import type { NetworkingPlan } from "../../infra/neutron/networking-plan.js";

const url = inject("neutronUrl");
const POD_SUBNETS = ["10.244.0.0/16", "fd00:10:244::/56"];

interface Port {
  id: string;
  name: string;
  fixed_ips: { ip_address: string }[];
  allowed_address_pairs: { ip_address: string }[];
  security_groups: string[];
}
interface Rule {
  id: string;
  ethertype: string;
  protocol: string | null;
  port_range_min: number | null;
  remote_group_id: string | null;
  remote_ip_prefix: string | null;
  direction: string;
}

async function project(api: NeutronApi) {
  const ports = (await api.get(`ports?${query({ project_id: api.identity.projectId })}`)).ports as Port[];
  const groups = (await api.get(`security-groups?${query({ project_id: api.identity.projectId })}`)).security_groups as { id: string; name: string; security_group_rules: Rule[] }[];
  const port = (name: string) => ports.find((p) => p.name === name)!;
  const group = (name: string) => groups.find((g) => g.name === name)!;
  return { port, group };
}

/** The rules of a group that admit any protocol, as [ethertype, remote]. */
const anyProtocol = (g: { id: string; security_group_rules: Rule[] }) =>
  g.security_group_rules
    .filter((r) => r.direction === "ingress" && r.protocol === null)
    .map((r) => [r.ethertype, r.remote_group_id === g.id ? "self" : r.remote_ip_prefix])
    .sort((a, b) => String(a).localeCompare(String(b)));

describe("two workers with native pod routing, as a project member", () => {
  let plan: NetworkingPlan;
  let report: ReplayReport;
  beforeAll(async () => {
    plan = await planNetworkingInChild("ebpf", ["workers=2", "podRouting=native"]);
    report = await replayPlan(plan, { url, as: "member" });
  });

  it("is accepted whole and reads back as planned", () => {
    expect(report.identity.role).toBe("member");
    expect(report.steps.filter((s) => s.outcome.kind !== "accepted")).toEqual([]);
    expect(report.mismatches).toEqual([]);
    expect(report.readBack).toBe(plan.resources.length);
    expect(plan.resources.filter((r) => r.type.endsWith("/port:Port"))).toHaveLength(12);
  });

  it("holds the second worker's ports at host number 2, in the path and cluster groups, with the pod subnets as address pairs", async () => {
    const { port, group } = await project(new NeutronApi(url, report.identity));
    const dc = port("testbed-worker-2-datacenter");
    expect(dc.fixed_ips.map((f) => f.ip_address).sort()).toEqual(["198.18.1.2", "2001:2:0:20::2"]);
    expect(dc.security_groups.sort()).toEqual([group("testbed-path").id, group("testbed-cluster").id].sort());
    for (const node of ["master", "worker", "worker-2"]) {
      expect(port(`testbed-${node}-datacenter`).allowed_address_pairs.map((a) => a.ip_address).sort(), node).toEqual(POD_SUBNETS);
    }
    expect(port("testbed-worker-2-management").fixed_ips.map((f) => f.ip_address).sort()).toEqual(["198.19.0.2", "2001:2:0:30::2"]);
  });

  it("admits any protocol between the nodes and from the pod subnets, and no VXLAN", async () => {
    const { group } = await project(new NeutronApi(url, report.identity));
    const cluster = group("testbed-cluster");
    expect(anyProtocol(cluster)).toEqual([
      ["IPv4", "10.244.0.0/16"],
      ["IPv4", "self"],
      ["IPv6", "fd00:10:244::/56"],
      ["IPv6", "self"],
    ]);
    expect(cluster.security_group_rules.some((r) => r.protocol === "udp")).toBe(false);
  });
});

describe("a running lab switched from the tunnel to native routing", () => {
  it("is a member's update of its own ports and rules; another project's member cannot touch them", async () => {
    const tunnel = await planNetworkingInChild("ebpf", ["workers=2"]);
    const report = await replayPlan(tunnel, { url, as: "member" });
    expect(report.steps.filter((s) => s.outcome.kind !== "accepted")).toEqual([]);
    const member = new NeutronApi(url, report.identity);
    const { port, group } = await project(member);
    const cluster = group("testbed-cluster");
    expect(anyProtocol(cluster)).toEqual([]);
    const vxlan = cluster.security_group_rules.find((r) => r.protocol === "udp" && r.port_range_min === 8472)!;
    expect(vxlan.remote_group_id).toBe(cluster.id);

    // What `pulumi up` with podRouting native sends: the pairs on each node's data-center port (an
    // update of the port), the new rules, and the VXLAN rule's removal.
    const pairs = { port: { allowed_address_pairs: POD_SUBNETS.map((ip_address) => ({ ip_address })) } };
    const stranger = member.as(freshIdentity("member"));
    await expect(stranger.put(`ports/${port("testbed-worker-2-datacenter").id}`, pairs)).rejects.toMatchObject({ status: 404 });
    for (const node of ["master", "worker", "worker-2"]) await member.put(`ports/${port(`testbed-${node}-datacenter`).id}`, pairs);
    for (const ethertype of ["IPv4", "IPv6"]) {
      await member.post("security-group-rules", { security_group_rule: { security_group_id: cluster.id, direction: "ingress", ethertype, remote_group_id: cluster.id } });
    }
    for (const prefix of POD_SUBNETS) {
      await member.post("security-group-rules", { security_group_rule: { security_group_id: cluster.id, direction: "ingress", ethertype: prefix.includes(":") ? "IPv6" : "IPv4", remote_ip_prefix: prefix } });
    }
    await member.request("DELETE", `security-group-rules/${vxlan.id}`);

    const after = await project(member);
    for (const node of ["master", "worker", "worker-2"]) {
      expect(after.port(`testbed-${node}-datacenter`).allowed_address_pairs.map((a) => a.ip_address).sort(), node).toEqual(POD_SUBNETS);
    }
    expect(anyProtocol(after.group("testbed-cluster"))).toEqual([
      ["IPv4", "10.244.0.0/16"],
      ["IPv4", "self"],
      ["IPv6", "fd00:10:244::/56"],
      ["IPv6", "self"],
    ]);
    // A second rule of the same shape is refused: Neutron keeps one of each.
    const again = member.post("security-group-rules", { security_group_rule: { security_group_id: cluster.id, direction: "ingress", ethertype: "IPv4", remote_group_id: cluster.id } });
    await expect(again).rejects.toBeInstanceOf(NeutronRefusal);
    await expect(again).rejects.toMatchObject({ status: 409, type: "SecurityGroupRuleExists" });
  });
});
