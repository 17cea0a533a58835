// kube-proxy's nftables rules in a real kernel: the lab's topology (client -> router -> worker -> pod,
// namespaces this test creates and removes, benchmarking addresses only), N = 2000 Services applied
// with one `nft -f` per family, real connections through NodePorts and ClusterIPs, then teardown.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labScenario, serviceEndpoints } from "../../lab/lab-scenario.js";
import { echoProbe, startEchoListener, type EchoProtocol } from "../../lab/echo-probe.js";
import type { ServiceEndpoints } from "../../lab/dataplanes/kube-proxy-inputs.js";
import type { KubeProxyNftablesRules } from "../../lab/dataplanes/nftables/rules.js";
import {
  applyKubeProxyNftables,
  countKubeProxyNftables,
  kubeProxyNftablesStates,
  kubeProxyNftablesTables,
  labKubeProxyNftablesRules,
  nftablesHostProblem,
  parkKubeProxyNftables,
  removeKubeProxyNftables,
  resumeKubeProxyNftables,
} from "../../lab/dataplanes/nftables/kernel.js";
import { createTopology, labHostProblem, type LabTopology } from "../../lab/topology.js";
import { nthAddress, parseCidr, type Family } from "../../scenario/cidr.js";
import type { Scenario } from "../../scenario/schema.js";
import type { ServiceSet, ServiceSpec } from "../../workloads/service-model.js";
import { buildServiceSet } from "../../workloads/service-set.js";

const hostProblem = labHostProblem() ?? nftablesHostProblem();
const FAMILIES = ["ipv4", "ipv6"] as const;
const ANY: Record<Family, string> = { ipv4: "0.0.0.0", ipv6: "::" };
const N = 2000;
// A NodePort range of 2000 ports less the receiver's two: 1998 NodePort Services, then 2 ClusterIP ones.
const NODE_PORT_RANGE = "30000-31999";

describe.skipIf(hostProblem !== undefined)(`kube-proxy's nftables rules in the lab's worker${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  let topology: LabTopology;
  let scenario: Scenario;
  let set: ServiceSet;
  let rulesets: KubeProxyNftablesRules[];
  let worker: string;
  let serviceSubnets: Record<Family, string>;
  /** A Service without endpoints, at an address of the service subnet no other Service has. */
  let lonely: ServiceSpec;
  const unallocated = {} as Record<Family, string>;

  const lastNodePort = () => set.scaled[set.counts.nodePort - 1]!;
  const lastService = () => set.scaled[N - 1]!;

  beforeAll(() => {
    topology = createTopology({ linkMbps: 0 });
    worker = topology.namespace("worker");
    const lab = labScenario(topology);
    scenario = { ...lab, kubernetes: { ...lab.kubernetes, nodePortRange: NODE_PORT_RANGE } };
    serviceSubnets = { ...scenario.kubernetes.serviceSubnets } as Record<Family, string>;
    set = buildServiceSet(scenario, N);
    const at = (index: number) => Object.fromEntries(FAMILIES.map((f) => [f, nthAddress(parseCidr(serviceSubnets[f])!, index)])) as Record<Family, string>;
    lonely = { namespace: "scale", name: "no-endpoints", type: "ClusterIP", clusterIPs: at(5000), selector: {}, ports: [{ name: "http", protocol: "TCP", port: 80, targetPort: 80 }] };
    Object.assign(unallocated, at(6000));
    const services: ServiceEndpoints[] = [...serviceEndpoints(set, topology.addresses.pod), { service: lonely, endpoints: [] }];
    rulesets = labKubeProxyNftablesRules(services, topology.plan, Object.values(serviceSubnets));
    for (const f of FAMILIES) {
      const v = f === "ipv4" ? "-4" : "-6";
      const block = serviceSubnets[f];
      // ClusterIPs are reachable from the client through the worker, as from a host routed to a node;
      // the worker and the pod route them like a node's and a pod's default route would.
      topology.run("client", ["ip", v, "route", "add", block, "via", topology.plan.links.access.gateway.addresses[f]]);
      topology.run("router", ["ip", v, "route", "add", block, "via", topology.addresses.node[f]]);
      topology.run("worker", ["ip", v, "route", "add", block, "via", topology.plan.links.datacenter.gateway.addresses[f]]);
      topology.run("pod", ["ip", v, "route", "add", block, "via", topology.plan.links.pod.gateway.addresses[f]]);
    }
  });
  afterAll(() => topology?.destroy());

  it("has the Service shapes it means to test: NodePort and ClusterIP Services, one without endpoints", () => {
    // The range holds 2000 NodePorts; the receiver's two ITGRecv take 4 of them (a signaling and a data port each, TCP and UDP data on one number): 1996 are left.
    expect(set.receiver.ports.length).toBe(6);
    expect(set.counts).toEqual({ nodePort: 1996, clusterIp: 4 });
    expect(lastService().type).toBe("ClusterIP");
    expect(rulesets.map((r) => r.family)).toEqual(["ipv4", "ipv6"]);
  });

  it("reaches no NodePort before the rules are applied", () => {
    expect(echoProbe(topology, "client", "tcp", topology.addresses.node.ipv4, lastNodePort().ports[0]!.nodePort!).error).toMatch(/ECONNREFUSED/);
  });

  it(`applies ${N} Services with one nft -f per family; the kernel holds exactly the generated table`, async () => {
    await applyKubeProxyNftables(worker, rulesets);
    expect(await kubeProxyNftablesTables(worker)).toEqual(["ipv4", "ipv6"]);
    for (const r of rulesets) expect(await countKubeProxyNftables(worker, r.family)).toEqual(r.counts);
    // kube-proxy's arithmetic (see kube-proxy-nftables-rules.test.ts): 1996 + 6 NodePort ports, 4 ClusterIP ports with endpoints and 1 without.
    const v4 = rulesets[0]!.counts;
    expect(v4.chains).toBe(16 + 4 * 2002 + 2 * 4);
    expect(v4.rules).toBe(23 + 9 * 2002 + 4 * 4);
    expect(v4.elements).toMatchObject({ "cluster-ips": 2002, "service-ips": 2006, "service-nodeports": 2002, "no-endpoint-services": 1, "nodeport-ips": 1 });
    expect(await kubeProxyNftablesStates(worker)).toEqual({ ipv4: "active", ipv6: "active" });
  });

  describe.each(FAMILIES)("over %s", (family) => {
    const expectEcho = async (protocol: EchoProtocol, from: "client" | "pod", address: string, port: number, targetPort: number) => {
      const listener = await startEchoListener(topology, "pod", protocol, ANY[family], targetPort);
      try {
        const result = echoProbe(topology, from, protocol, address, port, 5000);
        expect(result, `${protocol} ${from} -> ${address}:${port}`).toMatchObject({ ok: true, from: address, fromPort: port });
        // The listener reports its peer on its own output, which may arrive after the echo.
        return { result, peers: await listener.seen(1) };
      } finally {
        await listener.stop();
      }
    };

    it("DNATs the last NodePort Service and the receiver's UDP NodePort to the pod, keeping the client's address", async () => {
      const node = topology.addresses.node[family];
      const svc = lastNodePort().ports[0]!;
      const tcp = await expectEcho("tcp", "client", node, svc.nodePort!, svc.targetPort);
      // externalTrafficPolicy Local: no masquerading, the pod sees the client.
      expect(tcp.peers).toContainEqual({ address: topology.addresses.client[family], port: tcp.result.localPort });
      const udp = set.receiver.ports.find((p) => p.protocol === "UDP")!;
      await expectEcho("udp", "client", node, udp.nodePort!, udp.targetPort);
    });

    it("DNATs the last Service's ClusterIP, from outside (masqueraded) and from the pod itself (hairpin, masqueraded)", async () => {
      const ip = lastService().clusterIPs[family]!;
      const gateway = topology.plan.links.pod.gateway.addresses[family];
      const outside = await expectEcho("tcp", "client", ip, 80, 80);
      expect(outside.peers.map((p) => p.address)).toEqual([gateway]);
      const hairpin = await expectEcho("tcp", "pod", ip, 80, 80);
      expect(hairpin.peers.map((p) => p.address)).toEqual([gateway]);
    });

    it("rejects a Service without endpoints and a closed port of a ClusterIP, drops an unallocated ClusterIP", async () => {
      // Control in the same breath: the allocated ClusterIP answers.
      await expectEcho("tcp", "client", lastService().clusterIPs[family]!, 80, 80);
      expect(echoProbe(topology, "client", "tcp", lonely.clusterIPs[family]!, 80, 5000).error).toMatch(/ECONNREFUSED/);
      expect(echoProbe(topology, "client", "tcp", lastService().clusterIPs[family]!, 81, 5000).error).toMatch(/ECONNREFUSED/);
      expect(echoProbe(topology, "client", "tcp", unallocated[family], 80, 1500).error).toBe("timeout");
    });
  });

  it("replaces the tables on every application: a smaller step leaves nothing of the larger one", async () => {
    const small = labKubeProxyNftablesRules(serviceEndpoints(buildServiceSet(scenario, 10), topology.addresses.pod), topology.plan, Object.values(serviceSubnets));
    await applyKubeProxyNftables(worker, small);
    for (const r of small) expect(await countKubeProxyNftables(worker, r.family)).toEqual(r.counts);
    expect(small[0]!.counts.chains).toBe(16 + 4 * (10 + 6));
    await applyKubeProxyNftables(worker, rulesets);
    for (const r of rulesets) expect(await countKubeProxyNftables(worker, r.family)).toEqual(r.counts);
  });

  it("parks both tables (dormant: no DNAT, everything kept) and wakes them, as the kernel's table flags show", async () => {
    const svc = lastNodePort().ports[0]!;
    const node = topology.addresses.node.ipv4;
    const listener = await startEchoListener(topology, "pod", "tcp", ANY.ipv4, svc.targetPort);
    try {
      expect(echoProbe(topology, "client", "tcp", node, svc.nodePort!, 5000)).toMatchObject({ ok: true });
      await parkKubeProxyNftables(worker);
      expect(await kubeProxyNftablesStates(worker)).toEqual({ ipv4: "dormant", ipv6: "dormant" });
      // Nothing rewrites the NodePort any more: the worker itself refuses it.
      expect(echoProbe(topology, "client", "tcp", node, svc.nodePort!, 5000).error).toMatch(/ECONNREFUSED/);
      for (const r of rulesets) expect(await countKubeProxyNftables(worker, r.family)).toEqual(r.counts);
      await resumeKubeProxyNftables(worker);
      expect(await kubeProxyNftablesStates(worker)).toEqual({ ipv4: "active", ipv6: "active" });
      expect(echoProbe(topology, "client", "tcp", node, svc.nodePort!, 5000)).toMatchObject({ ok: true });
    } finally {
      await listener.stop();
    }
  });

  it("tears down both tables and leaves no nftables object in the worker", async () => {
    await removeKubeProxyNftables(worker);
    expect(await kubeProxyNftablesTables(worker)).toEqual([]);
    expect(await kubeProxyNftablesStates(worker)).toEqual({ ipv4: "absent", ipv6: "absent" });
    expect(await countKubeProxyNftables(worker, "ipv4")).toBeUndefined();
    expect(topology.run("worker", ["nft", "list", "ruleset"]).trim()).toBe("");
    expect(echoProbe(topology, "client", "tcp", topology.addresses.node.ipv4, lastNodePort().ports[0]!.nodePort!).error).toMatch(/ECONNREFUSED/);
    await removeKubeProxyNftables(worker);
  });

  it("leaves nothing behind when one family's nft -f fails, and names what failed", async () => {
    const broken: KubeProxyNftablesRules = { ...rulesets[1]!, ruleset: `${rulesets[1]!.ruleset}add rule ip6 kube-proxy no-such-chain accept\n` };
    await expect(applyKubeProxyNftables(worker, [rulesets[0]!, broken])).rejects.toThrow(/`nft -f -` in netns .* failed \(exit 1\)/);
    expect(await kubeProxyNftablesTables(worker)).toEqual([]);
  });

  it("refuses a missing namespace and two rulesets of one family", async () => {
    await expect(applyKubeProxyNftables("no-such-netns-here", rulesets)).rejects.toThrow(
      'nftables dataplane: netns "no-such-netns-here" does not exist; accepted: a namespace made with `ip netns add NAME`',
    );
    await expect(applyKubeProxyNftables(worker, [rulesets[0]!, rulesets[0]!])).rejects.toThrow(/two rulesets for one family/);
    expect(await kubeProxyNftablesTables(worker)).toEqual([]);
  });
});
