// The rehearsal's Kubernetes stand-ins without a kernel: kubectl's jsonpath as the apply script uses
// it, the EndpointSlices derived from Services and pods, the Service model read back from the
// applied objects, and `cilium-dbg service list -o json` made from the eBPF model's map bytes.
import { describe, expect, it } from "vitest";
import { applyScript } from "../../infra/workloads.js";
import { planServiceMaps } from "../../lab/dataplanes/ebpf/service-maps.js";
import { bpftoolBatch, LbMapAgent } from "../../lab/dataplanes/ebpf/lb-agent.js";
import { ciliumServiceList, servicesByFrontend, type MapDump } from "../../rehearsal/kubernetes/cilium-dbg.js";
import { endpointSlices, schedulableNodes, serviceSpecOf, type KubeObject, type PodStatus, type StoredObjects } from "../../rehearsal/kubernetes/api.js";
import { jsonpath, JsonPathError } from "../../rehearsal/kubernetes/jsonpath.js";
import { AgentMetrics } from "../../rehearsal/kubernetes/agent-metrics.js";
import { parseHistograms } from "../../measure/control-plane-metrics.js";
import { parseScenario, PLACEHOLDERS } from "../../scenario/schema.js";
import { manifestObjects, pathManifestObjects } from "../../workloads/manifests.js";
import { volumeMounts } from "../../rehearsal/kubernetes/node-agents.js";
import { buildServiceSet } from "../../workloads/service-set.js";

const scenario = parseScenario({ dataplane: "ebpf", ...PLACEHOLDERS, services: 3 });
const set = buildServiceSet(scenario);
const objects: StoredObjects = { resourceVersion: 1, objects: {} };
for (const file of manifestObjects(scenario, set)) {
  for (const o of file.objects) objects.objects[`${o.kind}/${o.metadata?.namespace ?? ""}/${o.metadata!.name}`] = o as unknown as KubeObject;
}
const pod = (namespace: string, labels: Record<string, string>, ips: string[], ready: boolean): PodStatus => ({
  namespace,
  name: `${labels["app.kubernetes.io/name"]}-x`,
  owner: labels["app.kubernetes.io/name"]!,
  templateHash: "h",
  labels,
  nodeName: "testbed-worker",
  ips,
  netns: "ns",
  containers: ["c"],
  ready,
  hostNetwork: false,
});
const backend = pod("scale", { "app.kubernetes.io/name": "scale-backend" }, ["198.18.64.3", "2001:2:0:4000::3"], true);
const receiver = pod("ditg", { "app.kubernetes.io/name": "ditg-receiver" }, ["198.18.64.2", "2001:2:0:4000::2"], false);

/** A jsonpath template exactly as it appears in the apply script (single-quoted there, backslashes as bash leaves them). */
function templateOf(script: string, resource: string): string {
  const m = new RegExp(`get ${resource} -o jsonpath='([^']+)'`).exec(script);
  if (!m) throw new Error(`no jsonpath for ${resource} in the apply script`);
  return m[1]!;
}
const script = applyScript(scenario, { files: [{ name: "x.yaml", sha256: "0".repeat(64) }], workerNode: "testbed-worker" });
const list = (items: unknown[]) => ({ apiVersion: "v1", kind: "List", items });

describe("kubectl's jsonpath, on the apply script's own templates", () => {
  it("lists each Service and family with the readiness of its endpoints, as the gate counts them", () => {
    const slices = endpointSlices(objects, [backend, receiver], "scale");
    expect(jsonpath(templateOf(script, "endpointslices"), list(slices))).toBe(
      ["svc-00001 IPv4 true", "svc-00001 IPv6 true", "svc-00002 IPv4 true", "svc-00002 IPv6 true", "svc-00003 IPv4 true", "svc-00003 IPv6 true", ""].join("\n"),
    );
    // Not ready: listed with no "true", so the gate's awk does not count it.
    expect(jsonpath(templateOf(script, "endpointslices"), list(endpointSlices(objects, [receiver], "ditg")))).toBe("ditg-receiver IPv4 false\nditg-receiver IPv6 false\n");
  });

  it("lists each Service's name with its ClusterIPs, one Service per line, as the gate reads them", () => {
    const services = Object.values(objects.objects).filter((o) => o.kind === "Service" && o.metadata.namespace === "scale");
    const lines = services.map((o) => `${o.metadata.name} ${(o.spec as { clusterIPs: string[] }).clusterIPs.join(" ")}\n`);
    expect(lines).toHaveLength(set.scaled.length);
    expect(jsonpath(templateOf(script, "services"), list(services))).toBe(lines.join(""));
    // Both families' addresses of every scaled Service, in the model's order.
    expect(lines.join("").trim().split("\n").flatMap((l) => l.split(" ").slice(1))).toEqual(set.scaled.flatMap((s) => [s.clusterIPs.ipv4, s.clusterIPs.ipv6]));
  });

  it("joins several results with spaces and refuses syntax it does not model, by name", () => {
    expect(jsonpath("{.items[*].n}", { items: [{ n: 1 }, { n: 2 }] })).toBe("1 2");
    expect(() => jsonpath("{.items[?(@.n==1)]}", {})).toThrow(JsonPathError);
    expect(() => jsonpath("{range .items[*]}{.n}", {})).toThrow(/range.*without.*end/);
  });
});

describe("the API's derived objects", () => {
  it("writes one EndpointSlice per Service and family, with the ready pods the Service selects", () => {
    const slices = endpointSlices(objects, [backend, receiver]);
    expect(slices).toHaveLength(2 * (set.scaled.length + 1));
    const v6 = slices.find((s) => s.metadata.name === "svc-00002-v6") as KubeObject & { endpoints: { addresses: string[] }[] };
    expect(v6.endpoints.map((e) => e.addresses[0])).toEqual(["2001:2:0:4000::3"]);
  });

  it("reads an applied Service back into the model it was rendered from", () => {
    for (const spec of [...set.scaled, set.receiver]) {
      const obj = objects.objects[`Service/${spec.namespace}/${spec.name}`]!;
      expect(serviceSpecOf(obj)).toEqual(spec);
    }
  });
});

describe("cilium-dbg service list -o json from the eBPF model's maps", () => {
  const hex = (b: Buffer) => [...b].map((x) => `0x${x.toString(16).padStart(2, "0")}`);
  /** The maps as the model fills them, dumped as bpftool prints them. */
  function dumps(backendOf?: (name: string) => { ipv4: string; ipv6: string } | undefined) {
    const plan = planServiceMaps(set, {
      node: { ipv4: "198.18.1.14", ipv6: "2001:2:0:20::14" },
      pod: { ipv4: "198.18.64.2", ipv6: "2001:2:0:4000::2" },
      ...(backendOf ? { backendOf: (s) => backendOf(s.name) } : {}),
    });
    const maps: Record<string, { key: string[]; value: string[] }[]> = {};
    // A new agent writes every entry once, with the plan's ids (it numbers them in the same order).
    for (const line of bpftoolBatch(new LbMapAgent().upsert(plan, plan.families), (name) => name).trim().split("\n")) {
      const m = /^map update pinned (\S+) key hex (.+) value hex (.+)$/.exec(line)!;
      const bytes = (s: string) => hex(Buffer.from(s.split(" ").map((h) => Number.parseInt(h, 16))));
      (maps[m[1]!] ??= []).push({ key: bytes(m[2]!), value: bytes(m[3]!) });
    }
    const d = (name: string): MapDump => maps[name] ?? [];
    return { plan, list: ciliumServiceList({ ipv4: { services: d("lb4_services"), backends: d("lb4_backends") }, ipv6: { services: d("lb6_services"), backends: d("lb6_backends") } }) };
  }

  it("lists every frontend of the model once, with its type, scope and backend, in service id order", () => {
    const { plan, list: services } = dumps();
    expect(services.map((s) => s.spec.id)).toEqual(plan.frontends.map((f) => f.revNatIndex));
    for (const f of plan.frontends) {
      const s = services.find((x) => x.spec.id === f.revNatIndex)!;
      expect(s.spec["frontend-address"]).toMatchObject({ ip: f.address, port: f.port, protocol: f.protocol });
      expect(s.spec.flags.type).toBe(f.kind);
      expect(s.spec.flags.extTrafficPolicy).toBe(f.kind === "NodePort" ? "Local" : "Cluster");
      expect(s.spec["backend-addresses"]).toHaveLength(1);
      expect(s.status.realized).toEqual(s.spec);
    }
  });

  it("gives each Service its own backend where the cluster's Services select different pods", () => {
    const { list: services } = dumps((name) => (name.startsWith("svc-") ? { ipv4: "198.18.64.3", ipv6: "2001:2:0:4000::3" } : undefined));
    const clusterIp = (ip: string) => services.find((s) => s.spec["frontend-address"].ip === ip)!;
    expect(clusterIp(set.scaled[0]!.clusterIPs.ipv4!).spec["backend-addresses"][0]).toMatchObject({ ip: "198.18.64.3", port: 80 });
    expect(clusterIp(set.receiver.clusterIPs.ipv6!).spec["backend-addresses"][0]!.ip).toBe("2001:2:0:4000::2");
  });

  it("answers what the ebpf stack's readiness check reads: the ClusterIPs with a backend", () => {
    const { list: services } = dumps();
    const programmed = services.filter((s) => s.spec.flags.type === "ClusterIP" && s.spec["backend-addresses"].length > 0).map((s) => s.spec["frontend-address"].ip);
    expect(new Set(programmed)).toEqual(new Set([...set.scaled, set.receiver].flatMap((s) => [s.clusterIPs.ipv4, s.clusterIPs.ipv6])));
  });

  it("names each frontend's Service as the agent's Service cache does, which the gate counts by", () => {
    const { plan } = dumps();
    const maps: Record<string, { key: string[]; value: string[] }[]> = {};
    for (const line of bpftoolBatch(new LbMapAgent().upsert(plan, plan.families), (name) => name).trim().split("\n")) {
      const m = /^map update pinned (\S+) key hex (.+) value hex (.+)$/.exec(line)!;
      const bytes = (t: string) => hex(Buffer.from(t.split(" ").map((h) => Number.parseInt(h, 16))));
      (maps[m[1]!] ??= []).push({ key: bytes(m[2]!), value: bytes(m[3]!) });
    }
    const d = (name: string): MapDump => maps[name] ?? [];
    const all = [set.receiver, ...set.scaled];
    const list = ciliumServiceList({ ipv4: { services: d("lb4_services"), backends: d("lb4_backends") }, ipv6: { services: d("lb6_services"), backends: d("lb6_backends") } }, servicesByFrontend(all));
    for (const s of list) {
      const f = s.spec["frontend-address"];
      const owner = all.find((x) => (s.spec.flags.type === "NodePort" ? x.ports.some((p) => p.nodePort === f.port) : Object.values(x.clusterIPs).includes(f.ip)))!;
      expect([s.spec.flags.namespace, s.spec.flags.name]).toEqual([owner.namespace, owner.name]);
    }
    expect(list.filter((s) => s.spec.flags.name === set.scaled[0]!.name).length).toBe(4);
  });
});

describe("the dataplane agent's metrics", () => {
  it("prints what it observed as the exposition the campaign parses, with kube-proxy's bucket bounds", () => {
    const sync = "kubeproxy_sync_proxy_rules_duration_seconds";
    const npl = "kubeproxy_network_programming_duration_seconds";
    const m = new AgentMetrics([sync, npl]);
    expect(parseHistograms(m.text(), [sync, npl]).get(sync)).toMatchObject({ count: 0, sumS: 0 });
    for (const s of [0.0015, 0.003, 0.5]) m.observe(sync, s);
    m.observe(npl, 0.3);
    const h = parseHistograms(m.text(), [sync, npl]);
    expect(h.get(sync)!.count).toBe(3);
    expect(h.get(sync)!.sumS).toBeCloseTo(0.5045, 12);
    expect(h.get(sync)!.buckets.slice(0, 3)).toEqual([[0.001, 0], [0.002, 1], [0.004, 2]]);
    expect(h.get(sync)!.buckets).toHaveLength(16);
    expect(h.get(npl)!.buckets.slice(0, 3)).toEqual([[0.25, 0], [0.5, 1], [1, 1]]);
    expect(() => m.observe("cilium_x", 1)).toThrow(/no histogram cilium_x; registered: kubeproxy_sync/);
  });
});

describe("the kubelets' placement and volumes", () => {
  const withPaths = parseScenario({ dataplane: "iptables", ...PLACEHOLDERS, services: 3, paths: ["nodeport-local", "nodeport-remote", "clusterip"], workers: 2 });
  const nodes = [
    { name: "testbed-master", role: "master" as const },
    { name: "testbed-worker", role: "worker" as const },
    { name: "testbed-worker-2", role: "worker" as const },
  ];
  const deploymentsOf = (files: { objects: readonly unknown[] }[]) => files.flatMap((f) => f.objects as KubeObject[]).filter((o) => o.kind === "Deployment");

  it("puts a pod on the node its manifest's affinity names: one worker without a name, worker n by its node name", () => {
    const paper = deploymentsOf(manifestObjects(scenario, set));
    for (const d of paper) expect(schedulableNodes(d, nodes), d.metadata.name).toEqual(["testbed-worker", "testbed-worker-2"]);
    const names = ["testbed-worker", "testbed-worker-2"];
    const placed = Object.fromEntries(
      [...deploymentsOf(manifestObjects(withPaths, buildServiceSet(withPaths), names)), ...deploymentsOf([pathManifestObjects(withPaths, "nodeport-remote", { nodes: names, setupProbePath: "/p" }), pathManifestObjects(withPaths, "clusterip", { nodes: names, setupProbePath: "/p" })])].map((d) => [d.metadata.name, schedulableNodes(d, nodes)]),
    );
    expect(placed).toEqual({
      "scale-backend": ["testbed-worker"],
      "ditg-receiver": ["testbed-worker"],
      "ditg-receiver-remote": ["testbed-worker-2"],
      "ditg-receiver-clusterip": ["testbed-worker-2"],
      "ditg-client": ["testbed-worker"],
    });
  });

  it("refuses a node affinity it does not model, by name", () => {
    const d = { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "x" }, spec: { template: { spec: { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }] }] } } } } } } };
    expect(() => schedulableNodes(d, nodes)).toThrow(/node affinity zone In is not modelled/);
  });

  it("mounts a hostPath directory (made when missing), an emptyDir of the pod's, and a hostPath File only when the file is there", () => {
    const client = pathManifestObjects(withPaths, "clusterip", { nodes: ["testbed-worker", "testbed-worker-2"], setupProbePath: "/usr/local/bin/probe" }).objects.find((o) => o.metadata?.name === "ditg-client") as unknown as KubeObject;
    const spec = (client.spec as { template: { spec: Parameters<typeof volumeMounts>[0] & { containers: Parameters<typeof volumeMounts>[1][] } } }).template.spec;
    const lines = volumeMounts(spec, spec.containers[0]!, "/run/pods/c", "ditg-client-h-x");
    expect(lines[0]).toBe("mkdir -p '/run/pods/c/volumes/packages' '/var/cache/ditg' && mount --bind '/run/pods/c/volumes/packages' '/var/cache/ditg'");
    expect(lines[1]).toBe("mkdir -p '/var/lib/dataplane-testbed/ditg-client-logs' '/logs' && mount --bind '/var/lib/dataplane-testbed/ditg-client-logs' '/logs'");
    expect(lines[2]).toMatch(/^\[ -f '\/usr\/local\/bin\/probe' \] \|\| \{ echo 'hostPath \/usr\/local\/bin\/probe is not a file' >&2; exit 1; \}\n/);
    expect(lines[2]).toMatch(/mount --bind '\/usr\/local\/bin\/probe' '\/usr\/local\/bin\/probe'$/);
    expect(() => volumeMounts({ volumes: [] }, { volumeMounts: [{ name: "logs", mountPath: "/logs" }] }, "/d", "p")).toThrow(/pod p: volume logs is not declared/);
  });
});
