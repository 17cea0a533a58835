// The rehearsal's network and stacks, planned without a kernel: the stack's own address plan on
// namespace hosts (so its outputs are valid as they are), nothing outside the benchmarking ranges,
// the data NICs' stable names and the link cap where the guests apply it; the stacks' config.
import { describe, expect, it } from "vitest";
import { hostAddress, labPlan, MEASURED_PORTS } from "../../infra/openstack/address-plan.js";
import { HOST_ROLES } from "../../infra/hosts.js";
import { LAB_PROFILES } from "../../lab/profiles.js";
import { BENCHMARK_RANGES } from "../../lab/topology.js";
import { planRehearsalNetwork, POD_SUBNETS, rehearsalAddresses, WORKER_POD_NETWORK } from "../../rehearsal/network.js";
import { rehearsalStackConfig, rehearsalStackName, stackScenarioOf } from "../../rehearsal/stack-config.js";
import { CHECKOUT, sshdConfig } from "../../rehearsal/hosts.js";
import { cidrContains, parseCidr } from "../../scenario/cidr.js";
import { DATAPLANES } from "../../scenario/schema.js";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8q5FzJ9Nw2u0Q3kX7o1rY4mVb2cT6eH8sLdPfGhKjM test";
const configOf = (dataplane: (typeof DATAPLANES)[number], profile = LAB_PROFILES.smoke) =>
  rehearsalStackConfig({ dataplane, profile, operatorAddress: "198.18.3.1", sshPublicKey: KEY, sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n", projectDir: CHECKOUT });
const scenario = stackScenarioOf(configOf("iptables"));
const plan = planRehearsalNetwork("dptbab12", scenario);

describe("the rehearsal's network", () => {
  it("puts every host on the stack's own addresses, as the stack's outputs name them", () => {
    const stack = labPlan(scenario);
    for (const seg of plan.segments.filter((s) => ["management", "client", "datacenter"].includes(s.name))) {
      for (const m of seg.members) {
        for (const family of ["ipv4", "ipv6"] as const) {
          expect(m.addresses[family], `${m.role} on ${seg.name}`).toBe(hostAddress(stack, m.role as (typeof HOST_ROLES)[number], seg.name as "client", family));
        }
      }
    }
    expect(plan.addresses.node).toEqual({ ipv4: "198.18.1.14", ipv6: "2001:2:0:20::14" });
    expect(rehearsalAddresses(scenario).management.master).toBe("198.19.0.13");
  });

  it("addresses nothing outside the benchmarking ranges, the bastion's floating address included", () => {
    const addresses = plan.segments.flatMap((s) => [...s.members.flatMap((m) => Object.values(m.addresses)), ...Object.values(s.bridge?.addresses ?? {})]);
    expect(addresses.length).toBeGreaterThan(20);
    for (const a of addresses) expect(cidrContains(BENCHMARK_RANGES[a!.includes(":") ? "ipv6" : "ipv4"], a!), a).toBe(true);
    expect(plan.segments.find((s) => s.name === "public")!.members.map((m) => [m.role, m.addresses.ipv4])).toEqual([
      ["operator", "198.18.3.1"],
      ["bastion", "198.18.3.10"],
    ]);
    for (const block of [...Object.values(POD_SUBNETS), ...Object.values(WORKER_POD_NETWORK)]) {
      const c = parseCidr(block)!;
      expect(cidrContains(BENCHMARK_RANGES[c.family], block.split("/")[0]!)).toBe(true);
    }
  });

  it("names the data NICs as the stack does and caps the measured ones, as the guests do", () => {
    const data = plan.segments.filter((s) => s.name === "client" || s.name === "datacenter").flatMap((s) => s.members.map((m) => ({ ...m, network: s.name })));
    for (const m of data) expect(m.ifname).toBe(m.network === "client" ? "tb-client" : "tb-dc");
    expect(data.filter((m) => m.shaped).map((m) => `${m.role}/${m.network}`).sort()).toEqual(MEASURED_PORTS.map((p) => `${p.role}/${p.network}`).sort());
    expect(plan.shaping).toEqual({ shaper: "tbf", mbps: 100 });
    expect(plan.worker).toEqual({ uplink: "tb-dc", podVeth: "lxc-receiver" });
  });

  it("bridges the management and datacenter networks, forwards on router and worker, and routes client <-> datacenter only through the router", () => {
    expect(plan.segments.find((s) => s.name === "management")!.members).toHaveLength(5);
    expect(plan.segments.find((s) => s.name === "datacenter")!.bridge?.role).toBe("fabric");
    expect(plan.forwarding).toEqual(["router", "worker"]);
    const via = (role: string) => plan.routes.filter((r) => r.role === role).map((r) => `${r.destination} via ${r.via}`);
    expect(via("client")).toEqual(["198.18.1.0/24 via 198.18.0.12", "2001:2:0:20::/64 via 2001:2:0:10::12"]);
    expect(via("worker")).toEqual(["198.18.0.0/24 via 198.18.1.12", "2001:2:0:10::/64 via 2001:2:0:20::12"]);
    expect(via("router")).toEqual([]);
    expect(plan.routes.some((r) => r.destination === "default")).toBe(false);
  });

  it("refuses a single-stack scenario, by key", () => {
    expect(() => planRehearsalNetwork("dptbab12", { ...scenario, families: ["ipv4"] })).toThrow(/testbed:families.*dual-stack/);
  });
});

describe("the rehearsal's stacks", () => {
  it("are the committed stacks with the user's settings and the profile's sweep, runs and rates", () => {
    for (const dataplane of DATAPLANES) {
      const config = configOf(dataplane);
      const s = stackScenarioOf(config);
      expect(rehearsalStackName(dataplane)).toBe(`rehearse-${dataplane}`);
      expect(s.dataplane).toBe(dataplane);
      expect(s.services).toBe(1);
      expect(s.sweep).toMatchObject({ services: [1, 2000], runs: 2, flowSeconds: 1 });
      expect(s.linkMbps).toBe(100);
      expect(s.traffic.latency.packetsPerSecond).toBe(200);
      expect(s.traffic.setup.connectionsPerSecond).toBe(100);
      expect(s.openstack.sshUser).toBe("root");
      expect(s.adminCidr).toBe("198.18.3.1/32");
      expect(config["testbed:sshPrivateKey"]).toMatchObject({ secret: true });
      expect(Object.values(config).filter((v) => v.secret)).toHaveLength(1);
    }
    // What the committed nftables stack sets beyond its dataplane stays (a kernel of 5.13 or later).
    expect(stackScenarioOf(configOf("nftables")).kubernetes.version).toBe("1.33.9");
    expect(stackScenarioOf(configOf("iptables", LAB_PROFILES.default)).sweep.services).toEqual([1, 1000, 5000, 10000]);
  });
});

describe("a host's sshd", () => {
  it("listens on the given addresses only, takes keys only, and serves SFTP for scp", () => {
    const text = sshdConfig("/run/x", { listen: ["198.19.0.10", "2001:2:0:30::10"], logLevel: "DEBUG1" });
    expect(text).toMatch(/^ListenAddress 198\.19\.0\.10:22$/m);
    expect(text).toMatch(/^ListenAddress \[2001:2:0:30::10\]:22$/m);
    expect(text).toMatch(/^PasswordAuthentication no$/m);
    expect(text).toMatch(/^Subsystem sftp /m);
    expect(text).toMatch(/^LogLevel DEBUG1$/m);
  });
});
