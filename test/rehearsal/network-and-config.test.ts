// The rehearsal's network and stacks, planned without a kernel: the stack's own address plan on
// namespace hosts (so its outputs are valid as they are), nothing outside the benchmarking ranges,
// the data NICs' stable names and the link cap where the guests apply it; the stacks' config.
import { describe, expect, it } from "vitest";
import { hostAddress, labPlan, MEASURED_PORTS } from "../../infra/openstack/address-plan.js";
import { HOST_ROLES } from "../../infra/hosts.js";
import { LAB_PROFILES } from "../../lab/profiles.js";
import { BENCHMARK_RANGES } from "../../lab/topology.js";
import { planRehearsalNetwork, TUNNEL_DEVICE, TUNNEL_PORT, POD_SUBNETS, rehearsalAddresses, rehearsalPods, WORKER_POD_NETWORK, workerPodNetwork } from "../../rehearsal/network.js";
import { pathOverrides, rehearsalStackConfig, rehearsalStackName, stackScenarioOf } from "../../rehearsal/stack-config.js";
import { SERVICE_PATHS } from "../../scenario/paths.js";
import { cidrsOverlap } from "../../scenario/cidr.js";
import { CHECKOUT, sshdConfig } from "../../rehearsal/hosts.js";
import { probeHosts } from "../../rehearsal/environment.js";
import { cidrContains, parseCidr } from "../../scenario/cidr.js";
import { DATAPLANES } from "../../scenario/schema.js";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8q5FzJ9Nw2u0Q3kX7o1rY4mVb2cT6eH8sLdPfGhKjM test";
const configOf = (dataplane: (typeof DATAPLANES)[number], profile = LAB_PROFILES.smoke, paths?: readonly (typeof SERVICE_PATHS)[number][]) =>
  rehearsalStackConfig({ dataplane, profile, operatorAddress: "198.18.3.1", sshPublicKey: KEY, sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n", projectDir: CHECKOUT, ...(paths ? { paths } : {}) });
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

describe("the rehearsal's network for the paths beyond the paper's", () => {
  const withPaths = stackScenarioOf(configOf("iptables", LAB_PROFILES.smoke, SERVICE_PATHS));
  const two = planRehearsalNetwork("dptbab12", withPaths);

  it("adds worker-2 on the stack's own addresses, on the management and datacenter networks, forwarding", () => {
    const stack = labPlan(withPaths);
    for (const network of ["management", "datacenter"] as const) {
      const m = two.segments.find((s) => s.name === network)!.members.find((x) => x.role === "worker-2")!;
      expect(m.addresses.ipv4).toBe(hostAddress(stack, "worker-2", network, "ipv4"));
    }
    expect(rehearsalAddresses(withPaths).management["worker-2"]).toBe(hostAddress(stack, "worker-2", "management", "ipv4"));
    expect(two.forwarding).toEqual(["router", "worker", "worker-2"]);
    expect(two.allNamespaces["worker-2"]).toBe("dptbab12-worker-2");
  });

  it("puts each path's pods on the worker the path names: the remote receivers on worker-2, the client pod in a cgroup on worker 1", () => {
    expect(rehearsalPods(withPaths).map((p) => `${p.deployment}@${p.host}`)).toEqual([
      "ditg-receiver@worker", "scale-backend@worker", "ditg-receiver-remote@worker-2", "ditg-receiver-clusterip@worker-2", "ditg-client@worker",
    ]);
    const pods = (seg: string) => two.segments.find((s) => s.name === seg)!;
    expect(pods("pods").bridge!.role).toBe("worker");
    expect(pods("pods").members.map((m) => m.role)).toEqual(["pod", "backend", "clientpod"]);
    expect(pods("pods-worker-2").bridge!.role).toBe("worker-2");
    expect(pods("pods-worker-2").subnets.ipv4!.text).toBe(workerPodNetwork(2).ipv4);
    expect(two.clientPod).toMatchObject({ role: "clientpod", hostVeth: "lxc-client", cgroup: expect.stringContaining("dptbab12-clientpod") });
    // The client pod shares worker 1's pod block: kube-proxy's cluster CIDR there is that block.
    expect(two.clientPod!.subnets.ipv4.text).toBe(WORKER_POD_NETWORK.ipv4);
    // Every worker's pod block is inside the cluster's, and no two overlap.
    const blocks = [WORKER_POD_NETWORK, workerPodNetwork(2)].flatMap((b) => [parseCidr(b.ipv4)!, parseCidr(b.ipv6)!]);
    for (const b of blocks) expect(cidrContains(parseCidr(POD_SUBNETS[b.family])!, b.text.split("/")[0]!), b.text).toBe(true);
    expect(cidrsOverlap(blocks[0]!, blocks[2]!) || cidrsOverlap(blocks[1]!, blocks[3]!)).toBe(false);
  });

  it("routes each worker's pod block natively to it over the datacenter network, and the pods' other traffic to their node", () => {
    const stack = labPlan(withPaths);
    const via = (role: string) => two.routes.filter((r) => r.role === role).map((r) => `${r.destination} via ${r.via}`);
    expect(via("worker")).toEqual(expect.arrayContaining([`${workerPodNetwork(2).ipv4} via ${hostAddress(stack, "worker-2", "datacenter", "ipv4")}`]));
    expect(via("worker-2")).toEqual(expect.arrayContaining([`${WORKER_POD_NETWORK.ipv6} via ${hostAddress(stack, "worker", "datacenter", "ipv6")}`]));
    // The client pod sends to the ClusterIPs through its node, whose dataplane translates them.
    expect(via("clientpod")).toEqual(expect.arrayContaining([`${withPaths.kubernetes.serviceSubnets.ipv4} via 198.18.64.1`]));
    expect(via("pod-clusterip")).toEqual(expect.arrayContaining([`${POD_SUBNETS.ipv4} via 198.18.65.1`]));
    expect(two.routes.some((r) => r.destination === "default")).toBe(false);
  });

  it("with testbed:podRouting tunnel, joins the workers by a VXLAN device each (Cilium's name and port) and routes the other's pod block through it", () => {
    const tunnelled = stackScenarioOf(rehearsalStackConfig({ dataplane: "iptables", profile: LAB_PROFILES.smoke, operatorAddress: "198.18.3.1", sshPublicKey: "ssh-ed25519 AAAA test", sshPrivateKey: "k", projectDir: CHECKOUT, paths: SERVICE_PATHS, podRouting: "tunnel" }));
    expect(tunnelled.podRouting).toBe("tunnel");
    const t = planRehearsalNetwork("dptbab12", tunnelled);
    const stack = labPlan(tunnelled);
    expect(t.tunnels!.map((x) => `${x.role} ${x.ifname} ${x.port} ${x.local}`)).toEqual([
      `worker ${TUNNEL_DEVICE} ${TUNNEL_PORT} ${hostAddress(stack, "worker", "datacenter", "ipv4")}`,
      `worker-2 ${TUNNEL_DEVICE} ${TUNNEL_PORT} ${hostAddress(stack, "worker-2", "datacenter", "ipv4")}`,
    ]);
    const [one, other] = t.tunnels!;
    expect(one!.peers).toEqual([{ mac: other!.mac, underlay: other!.local, gateways: { ipv4: "198.18.65.1", ipv6: "2001:2:0:4001::1" } }]);
    expect(one!.mac).not.toBe(other!.mac);
    const via = (role: string) => t.routes.filter((r) => r.role === role).map((r) => `${r.destination} via ${r.via}${r.dev ? ` dev ${r.dev}` : ""}`);
    expect(via("worker")).toEqual(expect.arrayContaining([`${workerPodNetwork(2).ipv4} via 198.18.65.1 dev ${TUNNEL_DEVICE}`, `${workerPodNetwork(2).ipv6} via 2001:2:0:4001::1 dev ${TUNNEL_DEVICE}`]));
    expect(via("worker-2")).toEqual(expect.arrayContaining([`${WORKER_POD_NETWORK.ipv4} via 198.18.64.1 dev ${TUNNEL_DEVICE}`]));
    // Native routing has no tunnel.
    expect(two.tunnels).toBeUndefined();
  });

  it("plans the paper's path alone as before: no second worker, no client pod", () => {
    expect(rehearsalPods(scenario).map((p) => p.role)).toEqual(["pod", "backend"]);
    expect(plan.clientPod).toBeUndefined();
    expect(Object.keys(plan.allNamespaces).sort()).toEqual(["backend", "bastion", "client", "fabric", "master", "operator", "pod", "router", "worker"]);
  });
});

describe("the rehearsal's stacks", () => {
  it("serve the paths asked for with the workers they need and native pod routing; the paper's path alone leaves the committed stack as it is", () => {
    expect(pathOverrides()).toEqual({});
    expect(pathOverrides(["nodeport-local"])).toEqual({});
    expect(pathOverrides(["nodeport-local", "clusterip"])).toEqual({ paths: ["nodeport-local", "clusterip"], workers: 2, podRouting: "native" });
    const s = stackScenarioOf(configOf("ebpf", LAB_PROFILES.smoke, SERVICE_PATHS));
    expect(s).toMatchObject({ paths: [...SERVICE_PATHS], workers: 2, podRouting: "native" });
    expect(stackScenarioOf(configOf("ebpf")).workers).toBe(1);
  });

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

describe("where the first boot left the probes", () => {
  it("on the hosts of the stack's build commands whose script installs that probe", () => {
    const build = (component: string, host: string, binary: string) => ({
      type: "command:remote:Command",
      name: `${component}-${host}-build`,
      inputs: { create: `BINARY='${binary}'\ncc ...` },
      options: { parent: `testbed:tools:SetupProbe::${component}` },
    });
    const resources = [
      build("setup-probe", "client", "/usr/local/bin/connection-setup-probe"),
      build("setup-probe", "worker", "/usr/local/bin/connection-setup-probe"),
      build("setup-probe", "worker-2", "/usr/local/bin/connection-setup-probe"),
      build("programming-probe", "worker", "/usr/local/bin/programming-probe"),
      { type: "command:remote:Command", name: "workloads-apply", inputs: { create: "/usr/local/bin/connection-setup-probe" }, options: { parent: "testbed:workloads:Workloads::workloads" } },
    ] as unknown as Parameters<typeof probeHosts>[0];
    expect(probeHosts(resources, "/usr/local/bin/connection-setup-probe")).toEqual(["client", "worker", "worker-2"]);
    expect(probeHosts(resources, "/usr/local/bin/programming-probe")).toEqual(["worker"]);
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
