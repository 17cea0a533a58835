import { describe, expect, it } from "vitest";
import { HOST_ROLES, type HostRole } from "../../infra/hosts.js";
import {
  ATTACHMENTS,
  deliveredRoutes,
  hostAddress,
  labPlan,
  MEASURED_PORTS,
  portOf,
  type LabPlan,
} from "../../infra/openstack/address-plan.js";
import { cpuQuotaExtraSpecs } from "../../infra/openstack/flavors.js";
import { renderLab } from "../../infra/openstack/lab.js";
import { bandwidthLimits } from "../../infra/openstack/qos.js";
import { portSecurityGroups, securityGroupPlans, type RulePlan, type SecurityGroupName } from "../../infra/openstack/security-rules.js";
import { cidrContains, parseCidr } from "../../scenario/cidr.js";
import { parseScenario, PLACEHOLDERS, type Scenario, type ScenarioInput } from "../../scenario/schema.js";

const scenario = (extra: Partial<ScenarioInput> = {}) => parseScenario({ dataplane: "iptables", ...PLACEHOLDERS, ...extra });
const subnet = (plan: LabPlan, network: string, family: string) => plan.subnets.find((s) => s.network === network && s.family === family)!;

describe("address plan", () => {
  it("gives each network a subnet per family, a gateway only on management IPv4, DHCP only for IPv4", () => {
    const plan = labPlan(scenario());
    expect(plan.subnets.map((s) => `${s.network}/${s.family}`)).toEqual([
      "management/ipv4",
      "management/ipv6",
      "client/ipv4",
      "client/ipv6",
      "datacenter/ipv4",
      "datacenter/ipv6",
    ]);
    expect(plan.subnets.filter((s) => s.gatewayIp).map((s) => [s.network, s.family, s.gatewayIp])).toEqual([["management", "ipv4", "198.19.0.1"]]);
    expect(plan.subnets.map((s) => s.enableDhcp)).toEqual([true, false, true, false, true, false]);
    // The pools start above the planned addresses, so Neutron never hands one of them to a DHCP port.
    expect(subnet(plan, "client", "ipv4").allocationPool).toEqual({ start: "198.18.0.16", end: "198.18.0.254" });
    expect(subnet(plan, "client", "ipv6").allocationPool.start).toBe("2001:2:0:10::16");
  });

  it("names the scenario's resolvers on every subnet, data subnets too, each family its own", () => {
    // A DHCP subnet without resolvers hands out Neutron's dnsmasq, which refuses outside names: on a
    // node's data NIC it would join the resolvers CoreDNS forwards to, and pods' lookups would fail at random.
    const plan = labPlan(scenario({ openstack: { dnsNameservers: ["192.0.2.53", "2001:db8::53", "198.51.100.53"] } }));
    for (const sn of plan.subnets) {
      expect(sn.dnsNameservers, `${sn.network}/${sn.family}`).toEqual(sn.family === "ipv4" ? ["192.0.2.53", "198.51.100.53"] : ["2001:db8::53"]);
    }
    expect(labPlan(scenario()).subnets.filter((sn) => sn.enableDhcp).every((sn) => sn.dnsNameservers.length > 0)).toBe(true);
  });

  it("routes each data network to the other through the router VM, in both families", () => {
    const plan = labPlan(scenario());
    expect(subnet(plan, "client", "ipv4").hostRoutes).toEqual([{ destinationCidr: "198.18.1.0/24", nextHop: "198.18.0.12" }]);
    expect(subnet(plan, "datacenter", "ipv4").hostRoutes).toEqual([{ destinationCidr: "198.18.0.0/24", nextHop: "198.18.1.12" }]);
    expect(subnet(plan, "client", "ipv6").hostRoutes).toEqual([{ destinationCidr: "2001:2:0:20::/64", nextHop: "2001:2:0:10::12" }]);
    expect(subnet(plan, "datacenter", "ipv6").hostRoutes).toEqual([{ destinationCidr: "2001:2:0:10::/64", nextHop: "2001:2:0:20::12" }]);
    expect(subnet(plan, "management", "ipv4").hostRoutes).toEqual([]);
    // Every next hop is an address of the router VM on that network.
    for (const sn of plan.subnets) {
      for (const r of sn.hostRoutes) expect(hostAddress(plan, "router", sn.network, sn.family)).toBe(r.nextHop);
    }
  });

  it("never gives a host an IPv6 route through one of its own addresses (the kernel refuses those)", () => {
    const plan = labPlan(scenario());
    for (const role of HOST_ROLES) {
      const own = plan.ports.filter((p) => p.role === role).flatMap((p) => [...p.fixedIps, ...p.guestAddresses].map((a) => a.address));
      for (const r of deliveredRoutes(plan, role).filter((x) => x.family === "ipv6")) expect(own, `${role} ${r.destination}`).not.toContain(r.via);
    }
  });

  it("gives client, master and worker a route to the other data network in each family", () => {
    const plan = labPlan(scenario());
    const to = (role: HostRole, family: string) => deliveredRoutes(plan, role).filter((r) => r.family === family && r.destination !== "default");
    expect(to("client", "ipv4")).toEqual([
      { network: "client", interfaceName: "tb-client", family: "ipv4", destination: "198.18.1.0/24", via: "198.18.0.12", source: "dhcp" },
    ]);
    expect(to("worker", "ipv6")).toEqual([
      { network: "datacenter", interfaceName: "tb-dc", family: "ipv6", destination: "2001:2:0:10::/64", via: "2001:2:0:20::12", source: "network_data" },
    ]);
    expect(to("master", "ipv4").map((r) => r.via)).toEqual(["198.18.1.12"]);
    // One default route, on the management NIC, for every host.
    for (const role of HOST_ROLES) {
      expect(deliveredRoutes(plan, role).filter((r) => r.destination === "default")).toEqual([
        { network: "management", family: "ipv4", destination: "default", via: "198.19.0.1", source: "dhcp" },
      ]);
    }
  });

  it("attaches management first and names the data NICs by role, not by PCI slot", () => {
    const plan = labPlan(scenario());
    expect(plan.ports.filter((p) => p.role === "router").map((p) => [p.network, p.nic, p.interfaceName])).toEqual([
      ["management", 0, undefined],
      ["client", 1, "tb-client"],
      ["datacenter", 2, "tb-dc"],
    ]);
    expect(portOf(plan, "worker", "datacenter").interfaceName).toBe("tb-dc");
    expect(portOf(plan, "client", "client").interfaceName).toBe("tb-client");
    for (const role of HOST_ROLES) expect(ATTACHMENTS[role][0]).toBe("management");
    // Linux interface names hold at most 15 characters.
    for (const p of plan.ports) expect((p.interfaceName ?? "").length).toBeLessThanOrEqual(15);
  });

  it("lets the router VM's data ports carry the other side's blocks and its own next hop, nothing more", () => {
    const plan = labPlan(scenario());
    expect(portOf(plan, "router", "client").allowedAddressPairs).toEqual(["198.18.1.0/24", "2001:2:0:20::/64", "2001:2:0:10::12/128"]);
    expect(portOf(plan, "router", "datacenter").allowedAddressPairs).toEqual(["198.18.0.0/24", "2001:2:0:10::/64", "2001:2:0:20::12/128"]);
    // The router's IPv6 next hop is its own address (a pair), not a Neutron fixed IP.
    expect(portOf(plan, "router", "client").fixedIps).toEqual([{ family: "ipv4", address: "198.18.0.12" }]);
    expect(portOf(plan, "router", "client").guestAddresses).toEqual([{ family: "ipv6", address: "2001:2:0:10::12" }]);
    for (const p of plan.ports.filter((q) => q.role !== "router")) expect(p.allowedAddressPairs, `${p.role}/${p.network}`).toEqual([]);
  });

  it("marks exactly the measured path's ports", () => {
    const plan = labPlan(scenario());
    expect(plan.ports.filter((p) => p.measured).map((p) => `${p.role}/${p.network}`)).toEqual(
      MEASURED_PORTS.map((m) => `${m.role}/${m.network}`),
    );
    expect(MEASURED_PORTS.map((m) => `${m.role}/${m.network}`)).toEqual(["client/client", "router/client", "router/datacenter", "worker/datacenter"]);
  });

  it("takes every block from the scenario", () => {
    const plan = labPlan(
      scenario({ network: { client: { ipv4: "198.18.8.0/22" }, datacenter: { ipv6: "2001:2:0:ff::/64" }, management: { ipv4: "198.19.4.0/24" } } }),
    );
    expect(hostAddress(plan, "client", "client", "ipv4")).toBe("198.18.8.11");
    expect(subnet(plan, "client", "ipv4").allocationPool.end).toBe("198.18.11.254");
    expect(hostAddress(plan, "worker", "datacenter", "ipv6")).toBe("2001:2:0:ff::14");
    expect(subnet(plan, "client", "ipv6").hostRoutes[0]!.destinationCidr).toBe("2001:2:0:ff::/64");
    expect(subnet(plan, "management", "ipv4").gatewayIp).toBe("198.19.4.1");
  });

  it("keeps IPv4 subnets in an IPv6-only lab and lets pod addresses through the nodes' data ports", () => {
    const plan = labPlan(scenario({ families: ["ipv6"] }));
    expect(plan.subnets).toHaveLength(6);
    expect(portOf(plan, "worker", "datacenter").allowedAddressPairs).toEqual(["fd00:10:244::/56"]);
    expect(portOf(plan, "master", "datacenter").allowedAddressPairs).toEqual(["fd00:10:244::/56"]);
    expect(portOf(plan, "client", "client").allowedAddressPairs).toEqual([]);
  });

  it("has no IPv6 in an IPv4-only lab", () => {
    const plan = labPlan(scenario({ families: ["ipv4"] }));
    expect(plan.subnets.map((s) => s.family)).toEqual(["ipv4", "ipv4", "ipv4"]);
    expect(plan.ports.flatMap((p) => p.guestAddresses)).toEqual([]);
    expect(portOf(plan, "router", "client").allowedAddressPairs).toEqual(["198.18.1.0/24"]);
  });

  it("leaves blocks too small for the planned addresses to the schema, which names the key", () => {
    expect(() => scenario({ network: { client: { ipv4: "198.18.0.0/28" } } })).toThrow(
      /testbed:network\.client\.ipv4: "198\.18\.0\.0\/28" holds 16 addresses; accepted: a block of at least 32 \(IPv4 \/27 or shorter/,
    );
  });
});

const rulesOf = (s: Scenario, name: SecurityGroupName) => securityGroupPlans(s).find((g) => g.name === name)!.rules;
const remoteCidr = (r: RulePlan) => (r.remote === "self" ? "self" : r.remote.cidr);

describe("security groups", () => {
  it("admits NodePorts (TCP and UDP) from the client network only, in both families", () => {
    const s = scenario({ kubernetes: { nodePortRange: "30000-30999" }, receiver: { signalingNodePort: 30900, dataPort: 30901, alternate: { signalingNodePort: 30902, dataPort: 30903 } } });
    const rules = rulesOf(s, "nodeport");
    expect(rules.map((r) => [r.ethertype, r.protocol, r.portRangeMin, r.portRangeMax, remoteCidr(r)])).toEqual([
      ["IPv4", "tcp", 30000, 30999, "198.18.0.0/24"],
      ["IPv4", "udp", 30000, 30999, "198.18.0.0/24"],
      ["IPv6", "tcp", 30000, 30999, "2001:2:0:10::/64"],
      ["IPv6", "udp", 30000, 30999, "2001:2:0:10::/64"],
    ]);
  });

  it("admits SSH from testbed:adminCidr on the bastion only, and from the management network elsewhere", () => {
    const s = scenario({ adminCidr: "203.0.113.7/32" });
    const groups = securityGroupPlans(s);
    const sshRules = groups.flatMap((g) => g.rules.filter((r) => r.portRangeMin === 22).map((r) => [g.name, remoteCidr(r)]));
    expect(sshRules).toEqual([
      ["admin", "203.0.113.7/32"],
      ["management", "198.19.0.0/24"],
      ["management", "2001:2:0:30::/64"],
    ]);
    // The admin group sits on the bastion's management port and nowhere else.
    for (const role of HOST_ROLES) {
      for (const network of ATTACHMENTS[role]) {
        expect(portSecurityGroups(role, network).includes("admin"), `${role}/${network}`).toBe(role === "bastion");
      }
    }
    expect(portSecurityGroups("bastion", "management")).toEqual(["admin"]);
  });

  it("opens the API server on the master's management port only, from the management network", () => {
    const s = scenario();
    expect(rulesOf(s, "kube-api").map((r) => [r.portRangeMin, remoteCidr(r)])).toEqual([
      [6443, "198.19.0.0/24"],
      [6443, "2001:2:0:30::/64"],
    ]);
    const holders = HOST_ROLES.flatMap((role) => ATTACHMENTS[role].filter((n) => portSecurityGroups(role, n).includes("kube-api")).map((n) => `${role}/${n}`));
    expect(holders).toEqual(["master/management"]);
  });

  it("lets only the nodes reach each other on kubelet, Cilium health and VXLAN ports", () => {
    const s = scenario();
    const rules = rulesOf(s, "cluster");
    expect(rules.every((r) => r.remote === "self")).toBe(true);
    expect(rules.map((r) => [r.ethertype, r.protocol, r.portRangeMin ?? null])).toEqual([
      ["IPv4", "tcp", 10250],
      ["IPv4", "tcp", 4240],
      ["IPv4", "icmp", null],
      ["IPv6", "tcp", 10250],
      ["IPv6", "tcp", 4240],
      ["IPv6", "ipv6-icmp", null],
      ["IPv4", "udp", 8472],
    ]);
    const holders = HOST_ROLES.flatMap((role) => ATTACHMENTS[role].filter((n) => portSecurityGroups(role, n).includes("cluster")).map((n) => `${role}/${n}`));
    expect(holders).toEqual(["master/datacenter", "worker/datacenter"]);
    // No etcd: it stays on the master.
    expect(securityGroupPlans(s).flatMap((g) => g.rules).some((r) => (r.portRangeMin ?? 0) >= 2379 && (r.portRangeMax ?? 0) <= 2380)).toBe(false);
  });

  it("routes pods natively in an IPv6-only cluster instead of VXLAN", () => {
    const rules = rulesOf(scenario({ families: ["ipv6"] }), "cluster");
    expect(rules.some((r) => r.protocol === "udp")).toBe(false);
    expect(rules.filter((r) => r.remote !== "self").map((r) => [r.protocol ?? "any", remoteCidr(r)])).toEqual([["any", "fd00:10:244::/56"]]);
  });

  it("never admits the whole Internet, and every source block is the admin block or a lab block", () => {
    const s = scenario({ adminCidr: "203.0.113.7/32" });
    const lab = [s.network.client, s.network.datacenter, s.network.management].flatMap((p) => [p.ipv4, p.ipv6]);
    for (const g of securityGroupPlans(s)) {
      for (const r of g.rules) {
        if (r.remote === "self") continue;
        expect(parseCidr(r.remote.cidr)!.prefix, g.name).toBeGreaterThan(0);
        expect([s.adminCidr, ...lab], g.name).toContain(r.remote.cidr);
        expect(r.reason.length).toBeGreaterThan(10);
      }
    }
  });

  it("admits the measured traffic only where it flows: router's client port and worker's data port", () => {
    const holders = HOST_ROLES.flatMap((role) => ATTACHMENTS[role].filter((n) => portSecurityGroups(role, n).includes("nodeport")).map((n) => `${role}/${n}`));
    expect(holders).toEqual(["router/client", "worker/datacenter"]);
  });

  it("refuses an IPv6 admin block: the bastion's floating IP is IPv4", () => {
    expect(() => securityGroupPlans(scenario({ adminCidr: "2001:db8::/64" }))).toThrow(
      /testbed:adminCidr: "2001:db8::\/64" is an IPv6 block but the bastion.s floating IP is IPv4; accepted: an IPv4 block/,
    );
  });
});

describe("flavor CPU cap", () => {
  const flavors = (f: Partial<Scenario["flavors"]>) => ({ create: true, cpuCapMHz: 1500, cpuPeriodUs: 100_000, ...f }) as Scenario["flavors"];

  it("turns the paper's 1500 MHz into a per-vCPU CFS quota relative to the host clock", () => {
    expect(cpuQuotaExtraSpecs(flavors({ hostCpuMHz: 3000 }))).toEqual({ "quota:cpu_period": "100000", "quota:cpu_quota": "50000" });
    expect(cpuQuotaExtraSpecs(flavors({ hostCpuMHz: 2000 }))).toEqual({ "quota:cpu_period": "100000", "quota:cpu_quota": "75000" });
    expect(cpuQuotaExtraSpecs(flavors({ hostCpuMHz: 3700, cpuPeriodUs: 50_000 }))).toEqual({ "quota:cpu_period": "50000", "quota:cpu_quota": "20270" });
    expect(cpuQuotaExtraSpecs(flavors({ hostCpuMHz: 1500 }))["quota:cpu_quota"]).toBe("100000");
  });

  it("names the keys when the quota cannot be formed", () => {
    expect(() => cpuQuotaExtraSpecs(flavors({}))).toThrow(/testbed:flavors\.hostCpuMHz is missing/);
    expect(() => cpuQuotaExtraSpecs(flavors({ cpuCapMHz: 100, hostCpuMHz: 200_000, cpuPeriodUs: 1000 }))).toThrow(
      /testbed:flavors\.cpuPeriodUs 1000 gives a CPU quota of 0 µs/,
    );
  });
});

describe("link cap", () => {
  it("limits both directions at testbed:linkMbps with an 80% burst", () => {
    expect(bandwidthLimits(500)).toEqual([
      { direction: "egress", maxKbps: 500_000, maxBurstKbps: 400_000 },
      { direction: "ingress", maxKbps: 500_000, maxBurstKbps: 400_000 },
    ]);
    expect(bandwidthLimits(2.5).map((l) => l.maxKbps)).toEqual([2500, 2500]);
  });

  it("has no rules at 0 and refuses a cap below 1 kbit/s", () => {
    expect(bandwidthLimits(0)).toEqual([]);
    expect(() => bandwidthLimits(0.0001)).toThrow(/testbed:linkMbps 0\.0001 is below 1 kbit\/s/);
  });
});

describe("renderLab", () => {
  it("checks everything before a resource exists", () => {
    expect(() => renderLab({ scenario: scenario({ adminCidr: "2001:db8::/64" }), cloudInitParts: {} })).toThrow(/adminCidr/);
    expect(() => renderLab({ scenario: scenario(), cloudInitParts: { gateway: [] } as never })).toThrow(
      /cloud-init parts for "gateway": accepted: one of bastion, client, router, master, worker/,
    );
  });

  it("renders one user data per role", () => {
    const r = renderLab({ scenario: scenario(), cloudInitParts: { worker: [{ runcmd: ["echo worker-part"] }] } });
    expect(Object.keys(r.userData)).toEqual([...HOST_ROLES]);
    const macs = { client: "fa:16:3e:00:00:01", datacenter: "fa:16:3e:00:00:02" };
    expect(r.userData.worker(macs)).toContain("echo worker-part");
    expect(r.userData.worker(macs)).toContain("fa:16:3e:00:00:02 tb-dc");
    expect(r.userData.master(macs)).not.toContain("echo worker-part");
    expect(cidrContains(parseCidr("198.19.0.0/24")!, hostAddress(r.plan, "bastion", "management", "ipv4")!)).toBe(true);
  });
});
