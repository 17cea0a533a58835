// Checks of one committed stack's OpenStack lab, run on the real program under the mocked engine.
// One stack per test file: Pulumi's runtime state is per process and vitest runs each file in its own.
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { HOST_ROLES } from "../../infra/hosts.js";
import { readStackConfig, runOffline, standInMac, type OfflineRun, type PlannedResource } from "../../infra/offline-engine.js";
import { labPlan, MEASURED_PORTS } from "../../infra/openstack/address-plan.js";
import { securityGroupPlans } from "../../infra/openstack/security-rules.js";
import { readRawScenario } from "../../infra/config.js";
import { parseScenario, type Scenario } from "../../scenario/schema.js";
import { cloudConfigProblems } from "./cloud-init-checks.js";

export const PROJECT_DIR = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");

const T = {
  instance: "openstack:compute/instance:Instance",
  flavor: "openstack:compute/flavor:Flavor",
  keypair: "openstack:compute/keypair:Keypair",
  network: "openstack:networking/network:Network",
  subnet: "openstack:networking/subnet:Subnet",
  port: "openstack:networking/port:Port",
  router: "openstack:networking/router:Router",
  routerInterface: "openstack:networking/routerInterface:RouterInterface",
  floatingIp: "openstack:networking/floatingIp:FloatingIp",
  floatingIpAssociate: "openstack:networking/floatingIpAssociate:FloatingIpAssociate",
  secGroup: "openstack:networking/secGroup:SecGroup",
  secGroupRule: "openstack:networking/secGroupRule:SecGroupRule",
  qosPolicy: "openstack:networking/qosPolicy:QosPolicy",
  qosRule: "openstack:networking/qosBandwidthLimitRule:QosBandwidthLimitRule",
} as const;
export const OPENSTACK_TYPES = T;

export const ofType = (run: OfflineRun, type: string) => run.resources.filter((r) => r.type === type);
export const named = (run: OfflineRun, type: string, name: string) => {
  const found = run.resources.find((r) => r.type === type && r.name === name);
  if (!found) throw new Error(`no ${type} named ${name}`);
  return found;
};
/** The mock's id of a resource: `${name}-id`. */
export const idOf = (r: PlannedResource) => `${r.name}-id`;

export interface StackUnderTest {
  run: OfflineRun;
  scenario: Scenario;
}

/** Runs a committed stack (plus overrides) offline and parses its scenario the way the program does. */
export async function runStack(stack: string, overrides: Record<string, string> = {}): Promise<StackUnderTest> {
  const { values, secretKeys } = readStackConfig(PROJECT_DIR, stack, (p) => fs.readFileSync(p, "utf8"));
  const config = { ...values, ...overrides };
  const run = await runOffline({ stack, config, secretKeys });
  const scenario = parseScenario(readRawScenario((k) => config[`testbed:${k}`]));
  return { run, scenario };
}

/** Every string anywhere in a value that is not inside a { $secret } envelope. */
export function plainStrings(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.flatMap(plainStrings);
  if (value && typeof value === "object") {
    const obj = value as Record<string, unknown>;
    if (Object.keys(obj).length === 1 && "$secret" in obj) return [];
    return Object.values(obj).flatMap(plainStrings);
  }
  return [];
}

export function describeOpenStackStack(stack: "ebpf" | "iptables" | "nftables"): void {
  let run: OfflineRun;
  let s: Scenario;
  beforeAll(async () => {
    ({ run, scenario: s } = await runStack(stack));
  });

  describe(`stack ${stack}: the OpenStack lab`, () => {
    it("declares the paper's lab plus a bastion: resource counts per type", () => {
      const counts = Object.fromEntries(Object.entries(T).map(([k, type]) => [k, ofType(run, type).length]));
      expect(counts).toEqual({
        instance: 5,
        flavor: 0,
        keypair: 1,
        network: 3,
        subnet: 6,
        port: 10,
        router: 1,
        routerInterface: 1,
        floatingIp: 1,
        floatingIpAssociate: 1,
        secGroup: 6,
        // Every rule of the pure plan becomes one resource.
        secGroupRule: securityGroupPlans(s).reduce((n, g) => n + g.rules.length, 0),
        // The default caps the links in the guests (linkShaping guest): nothing admin-only in Neutron.
        qosPolicy: 0,
        qosRule: 0,
      });
      expect(ofType(run, T.secGroupRule).length).toBeGreaterThan(15);
    });

    it("sizes each server with the flavor testbed:hosts.<role>.flavor names, and tags its role", () => {
      const servers = ofType(run, T.instance);
      expect(servers.map((r) => (r.inputs.metadata as Record<string, string>)["testbed-role"]).sort()).toEqual([...HOST_ROLES].sort());
      for (const server of servers) {
        const role = (server.inputs.metadata as Record<string, string>)["testbed-role"] as (typeof HOST_ROLES)[number];
        expect(server.inputs.flavorName, role).toBe(s.hosts[role].flavor);
        expect(server.inputs.imageName).toBe(s.openstack.image);
        expect(server.inputs.keyPair).toBe(named(run, T.keypair, "lab-access-key").inputs.name);
      }
      expect(named(run, T.keypair, "lab-access-key").inputs).toMatchObject({ name: `testbed-${stack}`, publicKey: s.sshPublicKey });
      expect(named(run, T.instance, "lab-servers-master").inputs.flavorName).toBe("m1.medium");
      expect(named(run, T.instance, "lab-servers-client").inputs.flavorName).toBe("m1.small");
    });

    it("attaches each server's ports in the planned NIC order", () => {
      const plan = labPlan(s);
      for (const role of HOST_ROLES) {
        const networks = (named(run, T.instance, `lab-servers-${role}`).inputs.networks as { port: string }[]).map((n) => n.port);
        expect(networks).toEqual(plan.ports.filter((p) => p.role === role).map((p) => `lab-servers-${role}-${p.network}-id`));
      }
    });

    it("gives the data subnets no gateway and routes through the router VM's fixed address", () => {
      const subnets = ofType(run, T.subnet);
      const data = subnets.filter((r) => !r.name.includes("management"));
      expect(data.every((r) => r.inputs.noGateway === true && r.inputs.gatewayIp === undefined)).toBe(true);
      const client4 = named(run, T.subnet, "lab-net-client-ipv4").inputs;
      expect(client4.hostRoutes).toEqual([{ destinationCidr: s.network.datacenter.ipv4, nextHop: "198.18.0.12" }]);
      const routerClient = named(run, T.port, "lab-servers-router-client").inputs;
      expect((routerClient.fixedIps as { ipAddress: string }[]).map((f) => f.ipAddress)).toEqual(["198.18.0.12"]);
      const dc6 = named(run, T.subnet, "lab-net-datacenter-ipv6").inputs;
      expect(dc6).toMatchObject({ ipVersion: 6, enableDhcp: false, noGateway: true });
      expect(dc6.ipv6AddressMode).toBeUndefined();
      expect(named(run, T.subnet, "lab-net-management-ipv4").inputs.gatewayIp).toBe("198.19.0.1");
      // Only management IPv4 is on the Neutron router.
      expect(ofType(run, T.routerInterface).map((r) => r.inputs.subnetId)).toEqual(["lab-net-management-ipv4-id"]);
    });

    it("caps exactly the measured path's NICs at testbed:linkMbps inside the guests, and gives no port a QoS policy", () => {
      expect(s.linkShaping).toBe("guest");
      expect(ofType(run, T.port).filter((p) => p.inputs.qosPolicyId !== undefined)).toEqual([]);
      const capped = ofType(run, T.instance)
        .filter((server) => String(server.inputs.userData).includes("testbed-link-cap"))
        .map((server) => (server.inputs.metadata as Record<string, string>)["testbed-role"])
        .sort();
      expect(capped).toEqual([...new Set(MEASURED_PORTS.map((m) => m.role))].sort());
      expect(String(named(run, T.instance, "lab-servers-router").inputs.userData)).toMatch(/tc qdisc replace dev tb-client root tbf rate 500000000bit/);
    });

    it("names each server's data NICs by the MAC of its own port", () => {
      for (const p of labPlan(s).ports.filter((q) => q.interfaceName !== undefined)) {
        const userData = String(named(run, T.instance, `lab-servers-${p.role}`).inputs.userData);
        expect(userData, `${p.role}/${p.network}`).toContain(`${standInMac(`lab-servers-${p.role}-${p.network}`)} ${p.interfaceName}`);
      }
    });

    it("admits NodePorts from the client network only, on the router's client port and the worker's data port", () => {
      const nodeportGroup = named(run, T.secGroup, "lab-access-nodeport");
      const rules = ofType(run, T.secGroupRule).filter((r) => r.inputs.securityGroupId === idOf(nodeportGroup));
      expect(rules.map((r) => [r.inputs.protocol, r.inputs.remoteIpPrefix, r.inputs.portRangeMin, r.inputs.portRangeMax])).toEqual([
        ["tcp", s.network.client.ipv4, 30000, 32767],
        ["udp", s.network.client.ipv4, 30000, 32767],
        ["tcp", s.network.client.ipv6, 30000, 32767],
        ["udp", s.network.client.ipv6, 30000, 32767],
      ]);
      const holders = ofType(run, T.port).filter((p) => (p.inputs.securityGroupIds as string[]).includes(idOf(nodeportGroup)));
      expect(holders.map((p) => p.name).sort()).toEqual(["lab-servers-router-client", "lab-servers-worker-datacenter"]);
    });

    it("admits SSH from testbed:adminCidr on the bastion only, and from the management network elsewhere", () => {
      const ssh = ofType(run, T.secGroupRule).filter((r) => r.inputs.portRangeMin === 22);
      const groupsWithSsh = new Map<string, string[]>();
      for (const r of ssh) groupsWithSsh.set(r.inputs.securityGroupId as string, [...(groupsWithSsh.get(r.inputs.securityGroupId as string) ?? []), r.inputs.remoteIpPrefix as string]);
      expect(Object.fromEntries(groupsWithSsh)).toEqual({
        "lab-access-admin-id": [s.adminCidr],
        "lab-access-management-id": [s.network.management.ipv4, s.network.management.ipv6],
      });
      for (const port of ofType(run, T.port)) {
        const groups = port.inputs.securityGroupIds as string[];
        expect(groups.includes("lab-access-admin-id"), port.name).toBe(port.name === "lab-servers-bastion-management");
        if (port.name.endsWith("-management") && port.name !== "lab-servers-bastion-management") expect(groups).toContain("lab-access-management-id");
        // No SSH on a data port.
        if (!port.name.endsWith("-management")) expect(groups.some((g) => groupsWithSsh.has(g)), port.name).toBe(false);
      }
      expect(ofType(run, T.secGroupRule).map((r) => r.inputs.remoteIpPrefix)).not.toContain("0.0.0.0/0");
    });

    it("has one floating IP, on the bastion's management port", () => {
      const [fip] = ofType(run, T.floatingIp);
      expect(fip!.inputs.pool).toBe(s.openstack.externalNetwork);
      const [association] = ofType(run, T.floatingIpAssociate);
      expect(association!.inputs.portId).toBe("lab-servers-bastion-management-id");
      expect(run.outputs.bastionAddress).toBe(association!.inputs.floatingIp);
    });

    it("exports every host's addresses as its ports hold them", () => {
      const plan = labPlan(s);
      const addresses = run.outputs.hostAddresses as Record<string, Record<string, Record<string, string>>>;
      for (const p of plan.ports) {
        for (const a of [...p.fixedIps, ...p.guestAddresses]) expect(addresses[p.role]![p.network]![a.family], `${p.role}/${p.network}`).toBe(a.address);
        const port = named(run, T.port, `lab-servers-${p.role}-${p.network}`);
        expect((port.inputs.fixedIps as { ipAddress: string }[]).map((f) => f.ipAddress)).toEqual(p.fixedIps.map((f) => f.address));
      }
      expect(run.outputs.dataplane).toBe(stack);
    });

    it("gives every server valid #cloud-config user data whose scripts pass shellcheck", () => {
      const servers = ofType(run, T.instance);
      expect(servers).toHaveLength(5);
      for (const server of servers) {
        const userData = server.inputs.userData;
        expect(typeof userData, server.name).toBe("string");
        expect(cloudConfigProblems(userData as string), server.name).toEqual([]);
      }
      expect(named(run, T.instance, "lab-servers-client").inputs.userData).toMatch(/- d-itg$/m);
    });

    it("never shows the SSH private key outside a secret", () => {
      const everything = [...run.resources.map((r) => r.inputs), run.outputs];
      expect(plainStrings(everything).some((v) => v.includes("offline-stand-in-private-key"))).toBe(false);
    });
  });
}
