// The lab with several workers (scenario/paths.ts): the plan, pure, and on this kernel the native
// routing of pod blocks between workers and what kube-proxy's rules do on the paths beyond the
// paper's: masquerading on nodeport-remote, the pod's own address on clusterip.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cidrContains, parseCidr, type Family } from "../../scenario/cidr.js";
import { echoProbe, startEchoListener } from "../../lab/echo-probe.js";
import { LAB_SERVICE_SUBNETS } from "../../lab/lab-scenario.js";
import { applyKubeProxyRules, removeKubeProxyRules } from "../../lab/dataplanes/iptables/kernel.js";
import { kubeProxyRules, type ServiceEndpoints } from "../../lab/dataplanes/iptables/rules.js";
import { applyKubeProxyNftables, nftablesHostProblem, removeKubeProxyNftables } from "../../lab/dataplanes/nftables/kernel.js";
import { kubeProxyNftablesRules } from "../../lab/dataplanes/nftables/rules.js";
import {
  createTopology,
  findRunObjects,
  labHostProblem,
  planTopology,
  podClusterCidr,
  type LabTopology,
  type TopologyPlan,
} from "../../lab/topology.js";
import type { ServiceSpec } from "../../workloads/service-model.js";

const FAMILIES: readonly Family[] = ["ipv4", "ipv6"];
const RANGES = { ipv4: parseCidr("198.18.0.0/15")!, ipv6: parseCidr("2001:2::/48")! };
const clientPod = { serviceSubnets: LAB_SERVICE_SUBNETS };

describe("topology plan with several workers", () => {
  const paper = planTopology("dptbab12");
  const plan = planTopology("dptbab12", { workers: 2, clientPod });

  it("is the paper's plan, unchanged, with one worker and no client pod", () => {
    expect(planTopology("dptbab12", { workers: 1 })).toEqual(paper);
    expect(paper).not.toHaveProperty("workers");
    expect(paper).not.toHaveProperty("clientPod");
    // The paper's parts stay as they were in the larger plan; it only adds.
    expect(plan.namespaces).toEqual(paper.namespaces);
    expect(plan.links).toEqual(paper.links);
    expect(plan.addresses).toEqual(paper.addresses);
    expect(plan.segments.slice(0, paper.segments.length)).toEqual(paper.segments);
    expect(plan.routes.slice(0, paper.routes.length)).toEqual(paper.routes);
  });

  it("adds worker 2 with its uplink to the router and its receiver pod, and the client pod on worker 1, names within 15 characters", () => {
    expect(Object.keys(plan.allNamespaces)).toEqual(["client", "router", "worker", "pod", "worker2", "pod2", "clientpod"]);
    expect(plan.forwarding).toEqual(["router", "worker", "worker2"]);
    // Worker 2 may answer with worker 1's address (DSR): the router's reverse-path filter is loose.
    expect(plan.looseReversePath).toEqual(["router"]);
    const w2 = plan.workers![1]!;
    expect(w2).toMatchObject({ index: 2, role: "worker2", podRole: "pod2", node: { ipv4: "198.18.12.2", ipv6: "2001:2:0:22::2" }, pod: { ipv4: "198.18.22.2", ipv6: "2001:2:0:42::2" } });
    expect(plan.clientPod).toMatchObject({ role: "clientpod", addresses: { ipv4: "198.18.3.2", ipv6: "2001:2:0:41::2" } });
    const names = plan.segments.flatMap((s) => s.members.map((m) => m.ifname));
    expect(new Set(names).size).toBe(names.length);
    for (const n of names) expect(n.length).toBeLessThanOrEqual(15);
    // The remote paths cross worker 2's uplink: it carries the cap as the paper's datacenter link does.
    expect(plan.segments.find((s) => s.name === "uplink2")!.members.every((m) => m.shaped)).toBe(true);
    expect(planTopology("dptbab12", { workers: 2, linkMbps: 0 }).segments.find((s) => s.name === "uplink2")!.members.some((m) => m.shaped)).toBe(false);
  });

  it("routes every pod block natively (next hops on a directly joined segment), worker to worker through the router, and nothing outside the benchmarking ranges", () => {
    const on = (role: string) => plan.segments.flatMap((s) => s.members.filter((m) => m.role === role).map((m) => ({ s, m })));
    for (const r of plan.routes) {
      expect(cidrContains(RANGES[r.family], r.via), `${r.role} ${r.destination}`).toBe(true);
      expect(parseCidr(r.destination) && cidrContains(RANGES[r.family], r.destination.split("/")[0]!)).toBe(true);
      // The next hop is a neighbour: an address of a segment the namespace sits on.
      expect(on(r.role).some(({ s }) => s.subnets[r.family] && cidrContains(s.subnets[r.family]!, r.via)), `${r.role} via ${r.via}`).toBe(true);
    }
    const routeOf = (role: string, family: Family, to: string) => plan.routes.find((r) => r.role === role && r.family === family && r.destination === to)?.via;
    const w2 = plan.workers![1]!;
    for (const family of FAMILIES) {
      expect(routeOf("worker", family, w2.podSubnets[family].text)).toBe(plan.links.datacenter.gateway.addresses[family]);
      expect(routeOf("router", family, w2.podSubnets[family].text)).toBe(w2.node[family]);
      expect(routeOf("worker2", family, plan.links.pod.subnets[family].text)).toBe(plan.segments.find((s) => s.name === "uplink2")!.members[0]!.addresses[family]);
      // The client pod reaches the ClusterIPs through its node, as a pod's default route takes them.
      expect(routeOf("clientpod", family, LAB_SERVICE_SUBNETS[family])).toBe(plan.segments.find((s) => s.name === "clientpod")!.members[0]!.addresses[family]);
    }
  });

  it("gives kube-proxy's detector one cluster CIDR holding worker 1's pods and the client pod, and nothing else of the lab", () => {
    expect(FAMILIES.map((f) => podClusterCidr(plan, f))).toEqual(["198.18.2.0/23", "2001:2:0:40::/63"]);
    expect(FAMILIES.map((f) => podClusterCidr(paper, f))).toEqual(["198.18.2.0/24", "2001:2:0:40::/64"]);
    expect(() => planTopology("dptbab12", { clientPod, subnets: { pod: { ipv4: "198.18.6.0/24" } } })).toThrow(
      'subnets.pod.ipv4: "198.18.6.0/24" and the client pod\'s block 198.18.3.0/24 are covered only by 198.18.0.0/21, which overlaps subnets.access.ipv4 (198.18.0.0/24); accepted: a pod block beside 198.18.3.0/24',
    );
  });

  it("refuses a worker count it cannot build, and a block that overlaps a worker's", () => {
    expect(() => planTopology("dptbab12", { workers: 5 })).toThrow("workers: 5 is not accepted; accepted: a whole number from 1 to 4");
    expect(() => planTopology("dptbab12", { workers: 0 })).toThrow("workers: 0 is not accepted");
    expect(() => planTopology("dptbab12", { workers: 2, subnets: { access: { ipv4: "198.18.12.0/24" } } })).toThrow(
      'subnets.access.ipv4: "198.18.12.0/24" overlaps the uplink of worker 2 ipv4 (198.18.12.0/24); accepted: a block disjoint from 198.18.12.0/24',
    );
  });
});

const hostProblem = labHostProblem() ?? nftablesHostProblem();

/** The paths' two Services on worker 1, their only endpoint the receiver pod on worker 2 (not local). */
function pathServices(plan: TopologyPlan): ServiceEndpoints[] {
  const w2 = plan.workers![1]!;
  const endpoints = FAMILIES.map((f) => ({ ip: w2.pod[f], local: false }));
  const service = (name: string, clusterIPs: Record<Family, string>, nodePort?: number): ServiceSpec => ({
    namespace: "testbed",
    name,
    type: nodePort ? "NodePort" : "ClusterIP",
    clusterIPs,
    ...(nodePort ? { externalTrafficPolicy: "Cluster" as const } : {}),
    selector: { app: name },
    ports: [{ name: "data", protocol: "TCP", port: 80, targetPort: 8080, ...(nodePort ? { nodePort } : {}) }],
  });
  return [
    { service: service("nodeport-remote", { ipv4: "198.19.128.40", ipv6: "2001:2:0:ff::40" }, 30900), endpoints },
    { service: service("clusterip", { ipv4: "198.19.128.41", ipv6: "2001:2:0:ff::41" }), endpoints },
  ];
}

describe.skipIf(hostProblem !== undefined)(`several workers on this kernel${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  let topology: LabTopology;
  beforeAll(() => {
    topology = createTopology({ workers: 2, clientPod, linkMbps: 0 });
  });
  afterAll(() => topology?.destroy());

  it.each(FAMILIES)("routes worker 1's pod to worker 2's natively through the router over %s: the receiver sees the pod's own address, no tunnel device", async (family) => {
    const { plan } = topology;
    const w2 = plan.workers![1]!;
    expect(topology.run("worker", ["ip", family === "ipv4" ? "-4" : "-6", "route", "get", w2.pod[family]])).toContain(`via ${plan.links.datacenter.gateway.addresses[family]}`);
    const listener = await startEchoListener(topology, "pod2", "tcp", family === "ipv4" ? "0.0.0.0" : "::", 7100);
    try {
      expect(echoProbe(topology, "pod", "tcp", w2.pod[family], 7100)).toMatchObject({ ok: true, from: w2.pod[family] });
      expect((await listener.seen(1)).map((p) => p.address.replace(/^::ffff:/, ""))).toEqual([plan.addresses.pod[family]]);
    } finally {
      await listener.stop();
    }
    for (const role of Object.keys(plan.allNamespaces)) {
      const kinds = (JSON.parse(topology.run(role, ["ip", "-d", "-j", "link", "show"])) as { linkinfo?: { info_kind?: string } }[]).map((l) => l.linkinfo?.info_kind);
      expect(kinds.filter((k) => k === "vxlan" || k === "geneve" || k === "ipip" || k === "sit" || k === "gre"), role).toEqual([]);
    }
  });

  const dataplanes = {
    iptables: {
      apply: (plan: TopologyPlan) =>
        applyKubeProxyRules(plan.namespaces.worker, FAMILIES.map((family) => kubeProxyRules(pathServices(plan), { family, clusterCIDR: podClusterCidr(plan, family) }))),
      remove: (plan: TopologyPlan) => removeKubeProxyRules(plan.namespaces.worker, FAMILIES),
    },
    nftables: {
      apply: (plan: TopologyPlan) =>
        applyKubeProxyNftables(
          plan.namespaces.worker,
          FAMILIES.map((family) =>
            kubeProxyNftablesRules(
              {
                family,
                clusterCIDR: podClusterCidr(plan, family),
                nodePortAddresses: [`${plan.addresses.node[family]}/${family === "ipv4" ? 32 : 128}`],
                addresses: [plan.addresses.node[family], plan.links.pod.gateway.addresses[family]],
                serviceCIDRs: [LAB_SERVICE_SUBNETS.ipv4, LAB_SERVICE_SUBNETS.ipv6],
              },
              pathServices(plan),
            ),
          ),
        ),
      remove: (plan: TopologyPlan) => removeKubeProxyNftables(plan.namespaces.worker),
    },
  } as const;

  it.each(["iptables", "nftables"] as const)(
    "%s: on nodeport-remote the receiver on worker 2 sees worker 1's address (kube-proxy masquerades); on clusterip it sees the client pod's own",
    async (name) => {
      const { plan } = topology;
      const dataplane = dataplanes[name];
      await dataplane.apply(plan);
      try {
        for (const family of FAMILIES) {
          const listener = await startEchoListener(topology, "pod2", "tcp", family === "ipv4" ? "0.0.0.0" : "::", 8080);
          try {
            const [remote, clusterip] = pathServices(plan);
            const viaNodePort = echoProbe(topology, "client", "tcp", plan.addresses.node[family], 30900);
            expect(viaNodePort, `${name} ${family} nodeport-remote`).toMatchObject({ ok: true, from: plan.addresses.node[family], fromPort: 30900 });
            const viaClusterIp = echoProbe(topology, "clientpod", "tcp", clusterip!.service.clusterIPs[family]!, 80);
            expect(viaClusterIp, `${name} ${family} clusterip`).toMatchObject({ ok: true, from: clusterip!.service.clusterIPs[family], fromPort: 80 });
            const seen = (await listener.seen(2)).map((p) => p.address.replace(/^::ffff:/, ""));
            // SNAT to the address worker 1 leaves by (its uplink), not the client's; the client pod's own address, untranslated.
            expect(seen, `${name} ${family}`).toEqual([plan.addresses.node[family], plan.clientPod!.addresses[family]]);
            expect(seen).not.toContain(plan.addresses.client[family]);
            expect(remote!.service.type).toBe("NodePort");
          } finally {
            await listener.stop();
          }
        }
      } finally {
        await dataplane.remove(plan);
      }
    },
  );

  it("leaves nothing behind after destroy, worker 2 and the client pod included", () => {
    const other = createTopology({ workers: 2, clientPod, linkMbps: 0 });
    expect(findRunObjects(other.prefix).namespaces).toHaveLength(7);
    other.destroy();
    expect(findRunObjects(other.prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
  });
});
