// The Service set of one sweep step: the N scaled Services and the D-ITG receiver's Service, as plain data.
//
// Types: NodePort while the NodePort range lasts (less the receiver's own NodePorts), ClusterIP after,
// as in the paper. Every NodePort Service has `externalTrafficPolicy: Local`.
//
// NodePorts are a seeded random permutation of the free range (seed: `sweep.seed`), so they look like
// what the apiserver's allocator hands out, yet are reproducible, and the set of step k is a prefix of
// the set of step k+1: Service i keeps its name, its NodePort and its ClusterIPs as N grows.
//
// ClusterIPs are explicit, one per enabled family, taken in order from the service subnets. Skipped:
//   index 0 and the last address (the apiserver's allocator never hands them out),
//   index 1 (the `kubernetes` Service), index 10 (kube-dns, kubeadm's choice),
//   index 2 (the receiver's Service, fixed here so both backends see the same address).
// Caveat: Services that the cluster creates later with a dynamic ClusterIP (for example Cilium's
// hubble-peer) draw a random free address; if they were created first and drew an address of this
// sequence, creating that scaled Service fails with "provided IP is already allocated". Keep such
// Services off (hubble.enabled=false) or give them explicit ClusterIPs.
//
// Backend: every scaled Service selects one always-Ready pause pod pinned to the worker (see
// manifests.ts). kube-proxy writes the measured rule set only for Services with endpoints: without an
// endpoint it writes no KUBE-SVC/KUBE-EXT/KUBE-SVL/KUBE-SEP chain and no KUBE-NODEPORTS jump, only a
// filter-table REJECT rule per Service; with the endpoint on another node (ETP=Local) it adds a
// "has no local endpoints" DROP instead of the KUBE-SVL jump. Either would measure another rule set.
import { xoroshiro128plus, unsafeUniformIntDistribution } from "pure-rand";
import { cidrSize, nthAddress, parseCidr, type Family } from "../scenario/cidr.js";
import { PATHS, type ServicePath } from "../scenario/paths.js";
import {
  CONFIG_NAMESPACE,
  PATH_RECEIVER_CLUSTER_IP_SLOT,
  RECEIVER_INSTANCES,
  receiverPortKeys,
  ScenarioError,
  nodePortRange,
  receiverNodePorts,
  scenarioPaths,
  serviceCapacity,
  type ReceiverInstance,
  type Scenario,
} from "../scenario/schema.js";
import type { ServicePort, ServiceSet, ServiceSpec } from "./service-model.js";

/** Address indices inside each service subnet that scaled Services never take. */
export const RESERVED_CLUSTER_IP_INDEX = {
  kubernetes: 1,
  receiver: 2,
  kubeDns: 10,
} as const;

/** Labels of the one backend pod that every scaled Service selects. */
export const SCALED_BACKEND_LABELS: Readonly<Record<string, string>> = { "app.kubernetes.io/name": "scale-backend" };

/** Labels of the D-ITG receiver pod. */
export const RECEIVER_LABELS: Readonly<Record<string, string>> = { "app.kubernetes.io/name": "ditg-receiver" };

export const RECEIVER_SERVICE_NAME = "ditg-receiver";

/** The one port of every scaled Service; the backend declares it, nothing listens on it. */
export const SCALED_SERVICE_PORT: ServicePort = { name: "http", protocol: "TCP", port: 80, targetPort: 80 };

/** Name of the i-th scaled Service (0-based); independent of N so names survive a larger step. */
export function scaledServiceName(i: number): string {
  return `svc-${String(i + 1).padStart(5, "0")}`;
}

/**
 * Every scaled Service's name, and no other Service's, matches this (a POSIX extended regular
 * expression, for awk on the hosts): the receiver may share the scaled Services' namespace.
 */
export const SCALED_SERVICE_NAME_PATTERN = "^svc-[0-9]+$";

type ScenarioPart = Pick<Scenario, "kubernetes" | "families" | "receiver" | "sweep" | "workloads" | "services"> & Partial<Pick<Scenario, "paths">>;

/**
 * NodePorts for scaled Services, in assignment order: the range less the paper's receiver's
 * NodePorts (its first ITGRecv's), shuffled by a Fisher-Yates pass seeded with `sweep.seed`, less
 * the NodePorts of the alternate ITGRecv and of the further paths' receivers (withoutReserved).
 * Depends on neither N nor the sweep.
 */
export function scaledNodePorts(s: Pick<Scenario, "kubernetes" | "receiver" | "sweep"> & Partial<Pick<Scenario, "paths">>): number[] {
  const { low, high } = nodePortRange(s);
  const paper = [s.receiver.signalingNodePort, s.receiver.dataPort];
  const taken = new Set(paper);
  const ports: number[] = [];
  for (let p = low; p <= high; p++) if (!taken.has(p)) ports.push(p);
  const rng = xoroshiro128plus(s.sweep.seed);
  for (let i = 0; i < ports.length - 1; i++) {
    const j = unsafeUniformIntDistribution(i, ports.length - 1, rng);
    const t = ports[i]!;
    ports[i] = ports[j]!;
    ports[j] = t;
  }
  return withoutReserved(ports, new Set(receiverNodePorts(s).filter((p) => !paper.includes(p))));
}

/**
 * The assignment order without the reserved ports: a slot that holds one takes the last port of the
 * order that is not reserved, and the order ends that much sooner. Every Service whose port is not
 * reserved keeps it, so listing another path on a running lab moves no NodePort but the reserved
 * ones (a shift would make Services claim ports their neighbours still hold, which the API refuses).
 */
export function withoutReserved(order: readonly number[], reserved: ReadonlySet<number>): number[] {
  const out = [...order];
  let end = out.length;
  for (let i = 0; i < end; i++) {
    if (!reserved.has(out[i]!)) continue;
    while (end - 1 > i && reserved.has(out[end - 1]!)) end--;
    if (end - 1 > i) {
      out[i] = out[end - 1]!;
      end--;
    } else {
      end = i;
    }
  }
  out.length = end;
  return out;
}

/** Address index (inside each service subnet) of the i-th scaled Service. */
export function scaledClusterIpIndex(i: number): number {
  // Indices 3..9 hold the first seven Services; from index 11 on the sequence is dense.
  return i < 7 ? i + 3 : i + 4;
}

function clusterIpsAt(s: Pick<Scenario, "kubernetes" | "families">, index: number): Partial<Record<Family, string>> {
  const ips: Partial<Record<Family, string>> = {};
  for (const f of s.families) ips[f] = nthAddress(parseCidr(s.kubernetes.serviceSubnets[f])!, index);
  return ips;
}

function capacityError(n: number, s: ScenarioPart, key: string): ScenarioError {
  const cap = serviceCapacity(s);
  return new ScenarioError([
    `${CONFIG_NAMESPACE}:${key}: ${n} Services do not fit: the NodePort range ${s.kubernetes.nodePortRange} holds ${cap.nodePort} and the service subnets hold ${cap.clusterIp} in all; accepted: an integer from 0 to ${cap.clusterIp}, or widen testbed:kubernetes.serviceSubnets`,
  ]);
}

/** The i-th address from the top of each service subnet (0: the last one the allocator hands out). */
function clusterIpsFromTop(s: Pick<Scenario, "kubernetes" | "families">, slot: number): Partial<Record<Family, string>> {
  const ips: Partial<Record<Family, string>> = {};
  for (const f of s.families) {
    const cidr = parseCidr(s.kubernetes.serviceSubnets[f])!;
    ips[f] = nthAddress(cidr, Number(cidrSize(cidr) - 2n) - slot);
  }
  return ips;
}

/** The receiver's Service: the paper's path's (pathReceiverService). */
export function receiverService(s: Pick<Scenario, "kubernetes" | "families" | "receiver">): ServiceSpec {
  return pathReceiverService(s, "nodeport-local");
}

/** Names of each path's receiver (its Deployment, its Service and its pod's `app.kubernetes.io/name`). */
export const PATH_RECEIVER_NAMES: Readonly<Record<ServicePath, string>> = {
  "nodeport-local": RECEIVER_SERVICE_NAME,
  "nodeport-remote": "ditg-receiver-remote",
  clusterip: "ditg-receiver-clusterip",
};

/** The clusterip path's client pod: a Deployment of this name on worker 1, with D-ITG and the connection-setup probe. */
export const PATH_CLIENT_NAME = "ditg-client";
export const PATH_CLIENT_LABELS: Readonly<Record<string, string>> = { "app.kubernetes.io/name": PATH_CLIENT_NAME };

/** The pod labels a path's receiver Service selects. */
export function pathReceiverLabels(path: ServicePath): Readonly<Record<string, string>> {
  return path === "nodeport-local" ? RECEIVER_LABELS : { "app.kubernetes.io/name": PATH_RECEIVER_NAMES[path] };
}

/** One ITGRecv of a path's receiver pod, as the path reaches it. */
export interface PathReceiverPorts {
  /** Its signaling port in the pod (`ITGRecv -Sp`; the Service port on a ClusterIP path). */
  readonly signalingPort: number;
  /** Its signaling NodePort, on a NodePort path. */
  readonly signalingNodePort?: number;
  /** Its data port: pod port = Service port (= NodePort on a NodePort path). */
  readonly dataPort: number;
}

/** The ports of one ITGRecv (scenario RECEIVER_INSTANCES) of a path's receiver pod. */
export function pathReceiverPorts(s: Pick<Scenario, "receiver">, path: ServicePath, instance: ReceiverInstance = 0): PathReceiverPorts {
  const keys = receiverPortKeys(s, instance);
  const remote = path === "nodeport-remote";
  return {
    signalingPort: keys.signalingPort,
    ...(PATHS[path].service.type === "NodePort" ? { signalingNodePort: remote ? keys.remoteSignalingNodePort : keys.signalingNodePort } : {}),
    dataPort: remote ? keys.remoteDataPort : keys.dataPort,
  };
}

/** The data port of a path's receiver (its first ITGRecv's, unless told): pod port = Service port (= NodePort on a NodePort path). */
export function pathDataPort(s: Pick<Scenario, "receiver">, path: ServicePath, instance: ReceiverInstance = 0): number {
  return pathReceiverPorts(s, path, instance).dataPort;
}

/**
 * The receiver Service of one path, as PATHS defines it: for nodeport-local the paper's
 * (`ditg-receiver`, NodePort, externalTrafficPolicy Local, its ClusterIP at the reserved index); for
 * nodeport-remote a NodePort Service with externalTrafficPolicy Cluster on the remote receiver's own
 * NodePorts; for clusterip a ClusterIP Service on the pod's ports. The two further ones take their
 * ClusterIPs from the top of the service subnets (PATH_RECEIVER_CLUSTER_IP_SLOT), never from the
 * scaled Services' sequence. Each serves the pod's two ITGRecv: signaling through a port of its
 * own (a NodePort on a NodePort path), data on one number for TCP and UDP (D-ITG names the data
 * port in its signaling; it must be the same number at every hop).
 */
export function pathReceiverService(s: Pick<Scenario, "kubernetes" | "families" | "receiver">, path: ServicePath): ServiceSpec {
  const r = s.receiver;
  const service = PATHS[path].service;
  const ports = RECEIVER_INSTANCES.flatMap((instance): ServicePort[] => {
    const p = pathReceiverPorts(s, path, instance);
    const suffix = instance === 0 ? "" : `-${instance + 1}`;
    const data = p.signalingNodePort !== undefined ? { nodePort: p.dataPort } : {};
    return [
      { name: `signaling${suffix}`, protocol: "TCP", port: p.signalingPort, targetPort: p.signalingPort, ...(p.signalingNodePort !== undefined ? { nodePort: p.signalingNodePort } : {}) },
      { name: `data-tcp${suffix}`, protocol: "TCP", port: p.dataPort, targetPort: p.dataPort, ...data },
      { name: `data-udp${suffix}`, protocol: "UDP", port: p.dataPort, targetPort: p.dataPort, ...data },
    ];
  });
  return {
    namespace: r.namespace,
    name: PATH_RECEIVER_NAMES[path],
    type: service.type,
    clusterIPs: path === "nodeport-local" ? clusterIpsAt(s, RESERVED_CLUSTER_IP_INDEX.receiver) : clusterIpsFromTop(s, PATH_RECEIVER_CLUSTER_IP_SLOT[path]),
    ...(service.type === "NodePort" ? { externalTrafficPolicy: service.externalTrafficPolicy } : {}),
    selector: pathReceiverLabels(path),
    ports,
  };
}

/** The receiver Service of every path the scenario lists, in the scenario's order. */
export function pathReceiverServices(s: Pick<Scenario, "kubernetes" | "families" | "receiver"> & Partial<Pick<Scenario, "paths">>): ServiceSpec[] {
  return scenarioPaths(s).map((p) => pathReceiverService(s, p));
}

/**
 * The Service set for N scaled Services (default: the scenario's `services`).
 * Throws ScenarioError when N does not fit the service subnets.
 */
export function buildServiceSet(s: ScenarioPart, n: number = s.services): ServiceSet {
  const key = n === s.services ? "services" : "sweep.services";
  if (!Number.isInteger(n) || n < 0) {
    throw new ScenarioError([`${CONFIG_NAMESPACE}:${key}: ${JSON.stringify(n)} is not accepted; accepted: an integer >= 0`]);
  }
  const cap = serviceCapacity(s);
  if (n > cap.clusterIp) throw capacityError(n, s, key);

  const nodePorts = scaledNodePorts(s);
  const nodePortCount = Math.min(n, cap.nodePort, nodePorts.length);
  const scaled: ServiceSpec[] = [];
  for (let i = 0; i < n; i++) {
    const nodePort = i < nodePortCount ? nodePorts[i] : undefined;
    const base = {
      namespace: s.workloads.namespace,
      name: scaledServiceName(i),
      clusterIPs: clusterIpsAt(s, scaledClusterIpIndex(i)),
      selector: SCALED_BACKEND_LABELS,
    };
    scaled.push(
      nodePort === undefined
        ? { ...base, type: "ClusterIP", ports: [SCALED_SERVICE_PORT] }
        : { ...base, type: "NodePort", externalTrafficPolicy: "Local", ports: [{ ...SCALED_SERVICE_PORT, nodePort }] },
    );
  }
  return {
    scaled,
    receiver: receiverService(s),
    counts: { nodePort: nodePortCount, clusterIp: n - nodePortCount },
  };
}
