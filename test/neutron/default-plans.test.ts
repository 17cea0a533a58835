// Every committed stack's default plan, replayed through a real Neutron as a member of a fresh
// project: accepted whole, and every resource reads back as planned.
import * as fs from "node:fs";
import { describe, expect, inject, it } from "vitest";
import { NeutronApi, query } from "../../infra/neutron/api.js";
import { planNetworkingInChild } from "../../cli/verify-openstack.js";
import { replayPlan } from "../../infra/neutron/replay.js";
import { labPlan } from "../../infra/openstack/address-plan.js";
import { testScenario } from "../fixtures/scenario.js";

const url = inject("neutronUrl");
const STACKS = fs
  .readdirSync(".")
  .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
  .filter((s): s is string => s !== undefined)
  .sort();

/** Resource kinds a lab cannot do without: a plan lacking one would pass for the wrong reason. */
const ESSENTIAL = ["network:Network", "subnet:Subnet", "router:Router", "routerInterface:RouterInterface", "secGroup:SecGroup", "secGroupRule:SecGroupRule", "port:Port", "floatingIp:FloatingIp", "floatingIpAssociate:FloatingIpAssociate"];

interface Subnet {
  cidr: string;
  gateway_ip: string | null;
  enable_dhcp: boolean;
  allocation_pools: { start: string; end: string }[];
  host_routes: { destination: string; nexthop: string }[];
  dns_nameservers: string[];
}

interface Port {
  name: string;
  fixed_ips: { ip_address: string }[];
  allowed_address_pairs: { ip_address: string }[];
  device_id: string;
  device_owner: string;
  status: string;
}

describe("every stack's default plan, as a project member", () => {
  it("has stacks to check", () => {
    expect(STACKS).toEqual(expect.arrayContaining(["ebpf", "iptables"]));
  });

  for (const stack of STACKS) {
    it(`${stack}: accepted whole, and it reads back as planned`, async () => {
      const plan = await planNetworkingInChild(stack);
      for (const kind of ESSENTIAL) expect(plan.resources.map((r) => r.type.split("/")[1]), kind).toContain(kind);

      const report = await replayPlan(plan, { url, as: "member" });
      expect(report.identity.role).toBe("member");
      expect(report.steps.filter((s) => s.outcome.kind !== "accepted")).toEqual([]);
      expect(report.steps).toHaveLength(plan.resources.length);
      expect(report.mismatches).toEqual([]);
      expect(report.readBack).toBe(plan.resources.length);

      // What Neutron holds, read here directly, against the address plan: subnets ...
      const api = new NeutronApi(url, report.identity);
      const lab = labPlan(testScenario());
      const subnets = (await api.get(`subnets?${query({ project_id: report.identity.projectId })}`)).subnets as Subnet[];
      expect(subnets).toHaveLength(lab.subnets.length);
      for (const sn of lab.subnets) {
        const held = subnets.find((h) => h.cidr === sn.cidr);
        expect(held, sn.cidr).toBeDefined();
        expect(held!.gateway_ip).toBe(sn.gatewayIp ?? null);
        expect(held!.enable_dhcp).toBe(sn.enableDhcp);
        expect(held!.allocation_pools).toEqual([sn.allocationPool]);
        expect(held!.host_routes).toEqual(sn.hostRoutes.map((r) => ({ destination: r.destinationCidr, nexthop: r.nextHop })));
        expect(held!.dns_nameservers).toEqual(sn.dnsNameservers);
      }
      // Every subnet that hands out addresses names the resolvers, the data subnets' too: with none,
      // Neutron's DHCP would hand out its dnsmasq, which answers no outside name.
      const resolvers = testScenario().openstack.dnsNameservers.filter((a) => !a.includes(":"));
      const dhcp = subnets.filter((h) => h.enable_dhcp);
      expect(dhcp.map((h) => h.cidr).sort()).toEqual(lab.subnets.filter((sn) => sn.enableDhcp).map((sn) => sn.cidr).sort());
      for (const held of dhcp) expect(held.dns_nameservers, held.cidr).toEqual(resolvers);
      // ... and ports: addresses and address pairs.
      const ports = (await api.get(`ports?${query({ project_id: report.identity.projectId })}`)).ports as Port[];
      const byName = new Map(ports.map((p) => [p.name, p]));
      for (const p of lab.ports) {
        const held = byName.get(`testbed-${p.role}-${p.network}`);
        expect(held, `${p.role} ${p.network}`).toBeDefined();
        expect(held!.fixed_ips.map((f) => f.ip_address).sort()).toEqual(p.fixedIps.map((f) => f.address).sort());
        expect(held!.allowed_address_pairs.map((a) => a.ip_address).sort()).toEqual([...p.allowedAddressPairs].sort());
        // Nova's part is missing: no server holds the port yet.
        expect([held!.device_id, held!.device_owner, held!.status]).toEqual(["", "", "DOWN"]);
      }
      // ... and what Nova would add, for every planned port.
      const planned = plan.resources.filter((r) => r.type.endsWith("/port:Port")).map((r) => r.name).sort();
      expect(report.nova.map((n) => n.port).sort()).toEqual(planned);
      for (const n of report.nova) expect(Object.keys(n.sets)).toEqual(expect.arrayContaining(["device_id", "device_owner", "binding:host_id"]));
    });
  }
});
