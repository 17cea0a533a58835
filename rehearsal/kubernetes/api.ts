// The rehearsal's Kubernetes API: what the cluster's callers read and write, as three JSON files in
// one directory, each with one writer. Thin on purpose: it holds the objects the stack applies, the
// pods the node agents run, and the cluster that the bootstrap would have left (nodes, the
// dataplane's DaemonSet pods), and derives the rest (EndpointSlices) from those, as the controllers do.
//
//   objects.json  written by kubectl (kubectl.ts): applied objects, by kind, namespace and name, and
//                 the DaemonSet pods deleted
//   status.json   written by the node agents (node-agents.ts): pods (and those that replaced deleted
//                 DaemonSet pods), what the dataplane programmed
//   cluster.json  written once by the rehearsal: nodes, system pods, pod sandboxes
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Family } from "../../scenario/cidr.js";
import type { L4Protocol, ServicePort, ServiceSpec } from "../../workloads/service-model.js";

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  generation?: number;
  creationTimestamp?: string;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: Record<string, unknown>;
  [field: string]: unknown;
}

export interface StoredObjects {
  resourceVersion: number;
  objects: Record<string, KubeObject>;
  /** DaemonSet pods deleted through the API (kubectl delete pod), by name, when. */
  podDeletions?: Record<string, string>;
}

/** A pod as the node agents report it. */
export interface PodStatus {
  readonly namespace: string;
  readonly name: string;
  /** The Deployment (or DaemonSet) it belongs to. */
  readonly owner: string;
  /** The pod template it runs (templateHash of its Deployment when it started). */
  readonly templateHash: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly nodeName: string;
  /** Its addresses, one per family; a host-network pod has the node's. */
  readonly ips: readonly string[];
  /** The network namespace its containers run in (/run/netns/NAME). */
  readonly netns: string;
  readonly containers: readonly string[];
  readonly ready: boolean;
  readonly hostNetwork: boolean;
}

/** What the worker's dataplane last programmed (from the node agent's own record). */
export interface ProgrammedRecord {
  readonly services: number;
  readonly at: string;
}

export interface AgentStatus {
  pods: PodStatus[];
  programmed?: ProgrammedRecord;
  /** Cilium's service and backend maps on the worker, by name, as kernel map ids (for cilium-dbg). */
  bpfMaps?: Record<string, number>;
  /** The pods that replaced deleted DaemonSet pods, by the name the bootstrap gave the first one. */
  replaced?: Record<string, PodStatus>;
}

/** A pod sandbox the rehearsal prepared for one Deployment's pod. */
export interface PodSandbox {
  readonly netns: string;
  readonly ips: readonly string[];
  /** The node it is on (default: the worker the dataplane runs on). */
  readonly node?: string;
  /** A cgroup v2 directory every process of the pod runs in. */
  readonly cgroup?: string;
}

/** Where the kubelets take `kubectl exec` into a running pod (a Unix socket in the API's directory). */
export const EXEC_SOCKET = "kubelet-exec.sock";

/** One request on the exec socket (a JSON line), and the frames that answer it (JSON lines). */
export interface ExecRequest {
  readonly namespace: string;
  readonly pod: string;
  readonly command: readonly string[];
}
export type ExecFrame = { readonly out: string } | { readonly err: string } | { readonly exit: number } | { readonly error: string };

/**
 * Pure: the nodes a Deployment's pod may run on, by its template's required node affinity as the
 * stack's manifests write it (workloads/manifests.ts workerAffinity): kubernetes.io/hostname In
 * [names], or node-role.kubernetes.io/control-plane DoesNotExist (any worker). Without one, any node.
 */
export function schedulableNodes(deployment: KubeObject, nodes: readonly Pick<ClusterNode, "name" | "role">[]): string[] {
  type Term = { matchExpressions?: { key: string; operator: string; values?: string[] }[] };
  const spec = deployment.spec as { template?: { spec?: { affinity?: { nodeAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms?: Term[] } } } } } } | undefined;
  const terms = spec?.template?.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  if (!terms || terms.length === 0) return nodes.map((n) => n.name);
  const fits = (node: Pick<ClusterNode, "name" | "role">, term: Term) =>
    (term.matchExpressions ?? []).every((e) => {
      if (e.key === "kubernetes.io/hostname" && e.operator === "In") return (e.values ?? []).includes(node.name);
      if (e.key === "node-role.kubernetes.io/control-plane" && e.operator === "DoesNotExist") return node.role !== "master";
      throw new Error(`deployment ${deployment.metadata.name}: node affinity ${e.key} ${e.operator} is not modelled; accepted: kubernetes.io/hostname In, node-role.kubernetes.io/control-plane DoesNotExist`);
    });
  return nodes.filter((n) => terms.some((t) => fits(n, t))).map((n) => n.name);
}

export interface ClusterNode {
  readonly name: string;
  readonly role: "master" | "worker";
  readonly netns: string;
  readonly ips: readonly string[];
}

export interface ClusterInfo {
  readonly nodes: readonly ClusterNode[];
  /** The DaemonSets' pods the bootstrap left (kube-proxy, Cilium), host-network. */
  readonly systemPods: readonly PodStatus[];
  /** Where each Deployment's pod runs: its network namespace and addresses, its node, and the cgroup its processes run in where it has one of its own (the client pod). */
  readonly sandboxes: Readonly<Record<string, PodSandbox>>;
  /** The iptables kube-proxy's rules were written with: what `iptables-save` in its pod reads (the image's iptables-wrapper picks the mode that holds them). */
  readonly iptablesBackend: "legacy" | "nft";
}

export const objectKey = (kind: string, namespace: string | undefined, name: string) => `${kind}/${namespace ?? ""}/${name}`;

function readJson<T>(file: string, fallback: T): T {
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as T) : fallback;
}

/** Replaces a file in one rename: a reader sees the old or the new content, never a part. */
function writeJson(file: string, value: unknown): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(value));
  renameSync(tmp, file);
}

export class KubeApi {
  constructor(readonly dir: string) {}

  get objectsFile(): string {
    return path.join(this.dir, "objects.json");
  }
  get statusFile(): string {
    return path.join(this.dir, "status.json");
  }

  objects(): StoredObjects {
    return readJson(this.objectsFile, { resourceVersion: 0, objects: {} });
  }
  writeObjects(o: StoredObjects): void {
    writeJson(this.objectsFile, o);
  }
  status(): AgentStatus {
    return readJson(this.statusFile, { pods: [] });
  }
  writeStatus(s: AgentStatus): void {
    writeJson(this.statusFile, s);
  }
  cluster(): ClusterInfo {
    return readJson(path.join(this.dir, "cluster.json"), { nodes: [], systemPods: [], sandboxes: {}, iptablesBackend: "legacy" });
  }
  writeCluster(c: ClusterInfo): void {
    writeJson(path.join(this.dir, "cluster.json"), c);
  }

  /** Every pod: the system pods (each as its DaemonSet replaced it last) and the workloads' pods. */
  pods(): PodStatus[] {
    const status = this.status();
    const replaced = status.replaced ?? {};
    return [...this.cluster().systemPods.map((p) => replaced[p.name] ?? p), ...status.pods];
  }
}

/** Identifies a Deployment's pod template: a new hash is a new rollout (kubectl rollout restart changes it). */
export function templateHash(deployment: KubeObject): string {
  return createHash("sha256").update(JSON.stringify(deployment.spec?.template ?? {})).digest("hex").slice(0, 10);
}

/** Label selector: equality terms `k=v` joined by commas (what the callers pass to `-l`). */
export function matchesLabelSelector(labels: Readonly<Record<string, string>> | undefined, selector: string): boolean {
  return selector
    .split(",")
    .filter(Boolean)
    .every((term) => {
      const [k, v] = term.split("=") as [string, string | undefined];
      return v === undefined ? labels?.[k] !== undefined : labels?.[k] === v;
    });
}

/** A Service's selector against a pod's labels. */
export function selects(selector: Record<string, string> | undefined, labels: Readonly<Record<string, string>>): boolean {
  return selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
}

const familyOf = (ip: string): Family => (ip.includes(":") ? "ipv6" : "ipv4");
const ADDRESS_TYPE: Record<Family, "IPv4" | "IPv6"> = { ipv4: "IPv4", ipv6: "IPv6" };

/**
 * The EndpointSlices of the applied Services, as the EndpointSlice controller writes them: one per
 * Service and family, listing the ready pods the Service selects.
 */
export function endpointSlices(objects: StoredObjects, pods: readonly PodStatus[], namespace?: string): KubeObject[] {
  const slices: KubeObject[] = [];
  for (const svc of Object.values(objects.objects)) {
    if (svc.kind !== "Service" || (namespace !== undefined && svc.metadata.namespace !== namespace)) continue;
    const spec = svc.spec as { selector?: Record<string, string>; ipFamilies?: ("IPv4" | "IPv6")[]; ports?: { name?: string; port: number; protocol?: string; targetPort?: number }[] };
    const selected = pods.filter((p) => p.namespace === svc.metadata.namespace && selects(spec.selector, p.labels));
    for (const family of ["ipv4", "ipv6"] as const) {
      if (!(spec.ipFamilies ?? ["IPv4"]).includes(ADDRESS_TYPE[family])) continue;
      slices.push({
        apiVersion: "discovery.k8s.io/v1",
        kind: "EndpointSlice",
        metadata: {
          name: `${svc.metadata.name}-${family === "ipv4" ? "v4" : "v6"}`,
          namespace: svc.metadata.namespace!,
          labels: { "kubernetes.io/service-name": svc.metadata.name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io" },
        },
        addressType: ADDRESS_TYPE[family],
        endpoints: selected.flatMap((p) =>
          p.ips.filter((ip) => familyOf(ip) === family).map((ip) => ({ addresses: [ip], conditions: { ready: p.ready, serving: p.ready, terminating: false }, nodeName: p.nodeName })),
        ),
        ports: (spec.ports ?? []).map((p) => ({ name: p.name ?? "", port: p.targetPort ?? p.port, protocol: p.protocol ?? "TCP" })),
      });
    }
  }
  return slices;
}

/** The Service model of an applied Service object (the inverse of workloads/manifests.ts serviceObject). */
export function serviceSpecOf(obj: KubeObject): ServiceSpec {
  const spec = obj.spec as {
    type?: string;
    clusterIPs?: string[];
    externalTrafficPolicy?: string;
    selector?: Record<string, string>;
    ports?: { name?: string; protocol?: string; port: number; targetPort?: number; nodePort?: number }[];
  };
  const clusterIPs: Partial<Record<Family, string>> = {};
  for (const ip of spec.clusterIPs ?? []) clusterIPs[familyOf(ip)] = ip;
  return {
    namespace: obj.metadata.namespace ?? "default",
    name: obj.metadata.name,
    type: spec.type === "NodePort" ? "NodePort" : "ClusterIP",
    clusterIPs,
    ...(spec.externalTrafficPolicy === "Local" ? { externalTrafficPolicy: "Local" as const } : {}),
    selector: spec.selector ?? {},
    ports: (spec.ports ?? []).map(
      (p): ServicePort => ({
        name: p.name ?? "",
        protocol: (p.protocol ?? "TCP") as L4Protocol,
        port: p.port,
        targetPort: p.targetPort ?? p.port,
        ...(p.nodePort !== undefined ? { nodePort: p.nodePort } : {}),
      }),
    ),
  };
}
