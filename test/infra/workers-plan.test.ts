// More workers (testbed:workers) and the pod routing between them (testbed:podRouting), as the pure
// renderers decide them: addresses, ports, security groups, user data (checked by cloud-init's own
// validator and shellcheck), kubeadm join files and Cilium's values (checked against the chart's
// values.schema.json).
import * as fs from "node:fs";
import * as path from "node:path";
import { Ajv } from "ajv";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { renderCiliumValues } from "../../infra/cluster/cilium-values.js";
import { kubeadmJoinArtifact, kubeadmJoinDocuments, KUBEADM_JOIN_ARTIFACT } from "../../infra/cluster/kubeadm.js";
import { labHosts, roleOf, workerHostName } from "../../infra/hosts.js";
import { FIRST_POOL_NUMBER, hostAddress, labPlan, portOf } from "../../infra/openstack/address-plan.js";
import { cappedNics, NIC_TABLE_FILE, renderUserData } from "../../infra/openstack/cloud-init.js";
import { hostExpectations } from "../../infra/openstack/host-ready.js";
import { renderLab } from "../../infra/openstack/lab.js";
import { portSecurityGroups, securityGroupPlans } from "../../infra/openstack/security-rules.js";
import { cidrContains, parseCidr } from "../../scenario/cidr.js";
import type { ScenarioInput } from "../../scenario/schema.js";
import { testScenario, TEST_MACS } from "../fixtures/scenario.js";
import { cloudConfigProblems } from "./cloud-init-checks.js";

const scenario = (extra: Partial<ScenarioInput> = {}) => testScenario({ dataplane: "ebpf", ...extra });
const schema = JSON.parse(fs.readFileSync(path.resolve("reference/cilium-1.17.18/values.schema.json"), "utf8")) as object;
const validate = new Ajv({ strict: false, allErrors: true }).compile(schema);

describe("the lab's hosts", () => {
  it("are the paper's five with one worker, the further workers named worker-N after them", () => {
    expect(labHosts(1).map((h) => h.name)).toEqual(["bastion", "client", "router", "master", "worker"]);
    expect(labHosts(3).map((h) => [h.name, h.role, h.worker ?? null])).toEqual([
      ["bastion", "bastion", null],
      ["client", "client", null],
      ["router", "router", null],
      ["master", "master", null],
      ["worker", "worker", 1],
      ["worker-2", "worker", 2],
      ["worker-3", "worker", 3],
    ]);
    expect(workerHostName(1)).toBe("worker");
    expect(roleOf("worker-7")).toBe("worker");
    expect(() => roleOf("gateway" as never)).toThrow(/"gateway" is not a host of the lab/);
    expect(() => labHosts(0)).toThrow(/0 workers/);
  });
});

describe("the address plan with more workers", () => {
  const one = labPlan(scenario());
  const three = labPlan(scenario({ workers: 3 }));

  it("keeps every address, pool and port of the paper's lab", () => {
    expect(three.subnets).toEqual(one.subnets);
    expect(three.ports.filter((p) => !p.host.startsWith("worker-"))).toEqual(one.ports);
  });

  it("numbers worker n as n, below the bastion and the DHCP pool, on the management and data-center networks only", () => {
    expect(hostAddress(three, "worker-2", "datacenter", "ipv4")).toBe("198.18.1.2");
    expect(hostAddress(three, "worker-2", "datacenter", "ipv6")).toBe("2001:2:0:20::2");
    expect(hostAddress(three, "worker-3", "management", "ipv4")).toBe("198.19.0.3");
    expect(hostAddress(three, "worker-3", "client", "ipv4")).toBeUndefined();
    expect(portOf(three, "worker-2", "datacenter")).toMatchObject({ host: "worker-2", role: "worker", nic: 1, interfaceName: "tb-dc", measured: true, allowedAddressPairs: [] });
    // Below the pool: Neutron never hands a worker's address to a DHCP port.
    for (const p of three.ports.filter((q) => q.host.startsWith("worker-"))) {
      for (const a of p.fixedIps) expect(Number(a.address.split(/[.:]/).at(-1))).toBeLessThan(FIRST_POOL_NUMBER);
    }
    // The most workers fit the smallest block the schema accepts (IPv4 /27, IPv6 /123).
    const small = labPlan(scenario({ workers: 9, network: { datacenter: { ipv4: "198.18.1.0/27", ipv6: "2001:2:0:20::/123" } } }));
    const block = parseCidr("2001:2:0:20::/123")!;
    expect(cidrContains(block, hostAddress(small, "worker-9", "datacenter", "ipv6")!)).toBe(true);
    expect(hostAddress(small, "worker-9", "datacenter", "ipv4")).toBe("198.18.1.9");
  });

  it("caps every worker's data-center NIC: the remote paths cross from worker 1 to the others", () => {
    expect(cappedNics(three, "worker-2")).toEqual(["tb-dc"]);
    expect(hostExpectations(scenario({ workers: 3 }), three, "worker-3")).toMatchObject({ host: "worker-3", nics: ["tb-dc"], cappedNics: ["tb-dc"], tools: { commands: ["clang", "gcc", "tc", "conntrack", "bpftool"] } });
  });

  it("gives the NodePort group to worker 1 alone; the other workers are nodes of the cluster group", () => {
    expect(portSecurityGroups("worker", "datacenter")).toEqual(["path", "nodeport", "cluster"]);
    expect(portSecurityGroups("worker-2", "datacenter")).toEqual(["path", "cluster"]);
    expect(portSecurityGroups("worker-2", "management")).toEqual(["management"]);
  });

  it("renders every further worker's user data: valid cloud-config, clean scripts, its own NIC table", () => {
    const s = scenario({ workers: 2 });
    const lab = renderLab({ scenario: s, cloudInitParts: { worker: [{ runcmd: ["echo node-prep"] }] } });
    expect(Object.keys(lab.userData)).toEqual(["bastion", "client", "router", "master", "worker", "worker-2"]);
    const userData = lab.userData["worker-2"]!({ ...TEST_MACS, datacenter: "fa:16:3e:00:00:2d" });
    expect(cloudConfigProblems(userData)).toEqual([]);
    // The parts of the worker role (node preparation) reach every worker.
    expect(userData).toContain("echo node-prep");
    const table = (parseYaml(userData) as { write_files: { path: string; content: string }[] }).write_files.find((f) => f.path === NIC_TABLE_FILE)!;
    expect(table.content).toBe("fa:16:3e:00:00:2d tb-dc\n");
    // Given the same MACs, a further worker is set up exactly as worker 1.
    expect(renderUserData(s, lab.plan, "worker-2", TEST_MACS)).toEqual(renderUserData(s, lab.plan, "worker", TEST_MACS));
  });
});

describe("pod routing between the nodes", () => {
  it("tunnels by default where the cluster has IPv4: VXLAN between the nodes, no address pairs", () => {
    const s = scenario({ workers: 2 });
    expect(labPlan(s).ports.flatMap((p) => p.allowedAddressPairs).filter((a) => a.startsWith("10.244") || a.startsWith("fd00:10:244"))).toEqual([]);
    const cluster = securityGroupPlans(s).find((g) => g.name === "cluster")!.rules;
    expect(cluster.filter((r) => r.protocol === "udp").map((r) => [r.portRangeMin, r.remote])).toEqual([[8472, "self"]]);
    expect(renderCiliumValues(s, { apiServerHost: "198.19.0.13", apiServerPort: 6443, datacenterDevices: ["tb-dc"] })).toMatchObject({ routingMode: "tunnel", tunnelProtocol: "vxlan" });
  });

  it("routes natively when asked: pod subnets as address pairs on every node's data-center port, any protocol from pods and nodes", () => {
    const s = scenario({ workers: 2, podRouting: "native" });
    const plan = labPlan(s);
    for (const host of ["master", "worker", "worker-2"] as const) {
      expect(portOf(plan, host, "datacenter").allowedAddressPairs, host).toEqual(["10.244.0.0/16", "fd00:10:244::/56"]);
    }
    expect(portOf(plan, "client", "client").allowedAddressPairs).toEqual([]);
    const cluster = securityGroupPlans(s).find((g) => g.name === "cluster")!.rules;
    expect(cluster.some((r) => r.protocol === "udp")).toBe(false);
    const any = cluster.filter((r) => r.protocol === undefined).map((r) => [r.ethertype, r.remote === "self" ? "self" : r.remote.cidr]);
    expect(any).toEqual([
      ["IPv4", "10.244.0.0/16"],
      ["IPv6", "fd00:10:244::/56"],
      ["IPv4", "self"],
      ["IPv6", "self"],
    ]);
  });

  it("gives Cilium native routing over both families, with values the chart's schema accepts", () => {
    const values = renderCiliumValues(scenario({ podRouting: "native" }), { apiServerHost: "198.19.0.13", apiServerPort: 6443, datacenterDevices: ["tb-dc", "tb-dc"] });
    expect(values).toMatchObject({ routingMode: "native", autoDirectNodeRoutes: true, ipv4NativeRoutingCIDR: "10.244.0.0/16", ipv6NativeRoutingCIDR: "fd00:10:244::/56", devices: "tb-dc" });
    expect(values).not.toHaveProperty("tunnelProtocol");
    expect(validate(values), JSON.stringify(validate.errors)).toBe(true);
    // The validator refuses what the chart refuses, so the pass above means something.
    expect(validate({ ...values, routingMode: 5 })).toBe(false);
  });
});

describe("kubeadm join per worker", () => {
  it("gives each worker a join file of its own with its own node IPs", () => {
    const s = scenario({ workers: 2 });
    const plan = labPlan(s);
    const addresses = (host: "master" | "worker" | "worker-2") => ({ ipv4: hostAddress(plan, host, "datacenter", "ipv4"), ipv6: hostAddress(plan, host, "datacenter", "ipv6") });
    const base = { masterManagement: { ipv4: "198.19.0.13", ipv6: "2001:2:0:30::13" }, masterDatacenter: addresses("master") };
    const nodeIp = (docs: Record<string, unknown>[]) => (docs[0] as { nodeRegistration: { kubeletExtraArgs: { value: string }[] } }).nodeRegistration.kubeletExtraArgs[0]!.value;
    expect(nodeIp(kubeadmJoinDocuments(s, { ...base, workerDatacenter: addresses("worker") }))).toBe("198.18.1.14,2001:2:0:20::14");
    expect(nodeIp(kubeadmJoinDocuments(s, { ...base, workerDatacenter: addresses("worker-2") }))).toBe("198.18.1.2,2001:2:0:20::2");
    expect(kubeadmJoinArtifact("worker")).toBe(KUBEADM_JOIN_ARTIFACT);
    expect(kubeadmJoinArtifact("worker-2")).toBe("kubeadm/join-worker-2.yaml");
  });
});
