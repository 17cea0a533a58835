// The paths Service traffic takes through the testbed, as one definition the local lab and the
// cloud share: where the sender is, which Service it addresses, which worker's dataplane translates
// the Service address, and where the only endpoint runs. Workers are numbered from 1; worker 1 is
// the paper's one worker, where the external client's NodePort traffic arrives.
//
// - nodeport-local (the paper's): the external client, through the router, to a NodePort of
//   worker 1 with externalTrafficPolicy Local; the endpoint is on worker 1 itself, so the packet
//   is translated (DNAT) and delivered on one node and keeps the client's source address.
// - nodeport-remote: the same client and NodePort on worker 1, externalTrafficPolicy Cluster, the
//   only endpoint on worker 2. kube-proxy masquerades (SNAT to worker 1's address) before it
//   forwards to worker 2; Cilium's replacement SNATs too (or uses DSR with loadBalancer.mode dsr).
// - clusterip: a client pod on worker 1 to a ClusterIP whose only endpoint is on worker 2. No node
//   port and no router: kube-proxy translates in the OUTPUT path of the pod's packets as they leave
//   its node (PREROUTING of the host's netfilter, seen from the pod's veth), Cilium at connect()
//   (socket load balancing), before the first packet exists.

export const SERVICE_PATHS = ["nodeport-local", "nodeport-remote", "clusterip"] as const;
export type ServicePath = (typeof SERVICE_PATHS)[number];

/** The paper's path: the one a run measures unless it names another. */
export const DEFAULT_PATH: ServicePath = "nodeport-local";

/** The paper's path alone: what a scenario measures unless told otherwise. */
export const DEFAULT_PATHS: readonly ServicePath[] = [DEFAULT_PATH];

/** The worker the external client's NodePort traffic enters, and where a client pod runs. */
export const ENTRY_WORKER = 1;

export type PathClient =
  /** The client host, behind the router VM, on the client network. */
  | { readonly kind: "external" }
  /** A pod on this worker (1-based). */
  | { readonly kind: "pod"; readonly worker: number };

export type PathService =
  | { readonly type: "NodePort"; readonly externalTrafficPolicy: "Local" | "Cluster" }
  | { readonly type: "ClusterIP" };

export interface PathDefinition {
  readonly name: ServicePath;
  /** One line for plans, outputs and reports. */
  readonly description: string;
  readonly client: PathClient;
  /** The Service the client addresses. */
  readonly service: PathService;
  /** The worker (1-based) whose dataplane translates the Service address: the NodePort's node, or the client pod's. */
  readonly translatingWorker: number;
  /** The worker (1-based) the path's only endpoint, the D-ITG receiver pod, runs on. */
  readonly endpointWorker: number;
}

export const PATHS: Readonly<Record<ServicePath, PathDefinition>> = {
  "nodeport-local": {
    name: "nodeport-local",
    description: "external client -> NodePort of worker 1 (externalTrafficPolicy Local) -> endpoint on worker 1",
    client: { kind: "external" },
    service: { type: "NodePort", externalTrafficPolicy: "Local" },
    translatingWorker: ENTRY_WORKER,
    endpointWorker: ENTRY_WORKER,
  },
  "nodeport-remote": {
    name: "nodeport-remote",
    description: "external client -> NodePort of worker 1 (externalTrafficPolicy Cluster) -> endpoint on worker 2",
    client: { kind: "external" },
    service: { type: "NodePort", externalTrafficPolicy: "Cluster" },
    translatingWorker: ENTRY_WORKER,
    endpointWorker: 2,
  },
  clusterip: {
    name: "clusterip",
    description: "client pod on worker 1 -> ClusterIP -> endpoint on worker 2",
    client: { kind: "pod", worker: ENTRY_WORKER },
    service: { type: "ClusterIP" },
    translatingWorker: ENTRY_WORKER,
    endpointWorker: 2,
  },
};

/** How many workers a path needs: the highest worker it puts anything on. */
export function workersNeeded(path: ServicePath): number {
  const p = PATHS[path];
  return Math.max(p.translatingWorker, p.endpointWorker, p.client.kind === "pod" ? p.client.worker : 1);
}

/** Whether the path's packets cross from one worker to another (pod traffic between the nodes). */
export function crossesWorkers(path: ServicePath): boolean {
  const p = PATHS[path];
  return p.endpointWorker !== p.translatingWorker;
}
