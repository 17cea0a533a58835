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
import { nthAddress, parseCidr, type Family } from "../scenario/cidr.js";
import {
  CONFIG_NAMESPACE,
  ScenarioError,
  nodePortRange,
  receiverNodePorts,
  serviceCapacity,
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

type ScenarioPart = Pick<Scenario, "kubernetes" | "families" | "receiver" | "sweep" | "workloads" | "services">;

/**
 * NodePorts for scaled Services, in assignment order: the range less the receiver's NodePorts,
 * shuffled by a Fisher-Yates pass seeded with `sweep.seed`. Depends on neither N nor the sweep.
 */
export function scaledNodePorts(s: Pick<Scenario, "kubernetes" | "receiver" | "sweep">): number[] {
  const { low, high } = nodePortRange(s);
  const taken = new Set(receiverNodePorts(s));
  const ports: number[] = [];
  for (let p = low; p <= high; p++) if (!taken.has(p)) ports.push(p);
  const rng = xoroshiro128plus(s.sweep.seed);
  for (let i = 0; i < ports.length - 1; i++) {
    const j = unsafeUniformIntDistribution(i, ports.length - 1, rng);
    const t = ports[i]!;
    ports[i] = ports[j]!;
    ports[j] = t;
  }
  return ports;
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

/** The receiver's Service: signaling through its own NodePort, data on one number for TCP and UDP. */
export function receiverService(s: Pick<Scenario, "kubernetes" | "families" | "receiver">): ServiceSpec {
  const r = s.receiver;
  return {
    namespace: r.namespace,
    name: RECEIVER_SERVICE_NAME,
    type: "NodePort",
    clusterIPs: clusterIpsAt(s, RESERVED_CLUSTER_IP_INDEX.receiver),
    externalTrafficPolicy: "Local",
    selector: RECEIVER_LABELS,
    ports: [
      { name: "signaling", protocol: "TCP", port: r.signalingPort, targetPort: r.signalingPort, nodePort: r.signalingNodePort },
      // D-ITG names the data port in its signaling; it must be the same number at every hop.
      { name: "data-tcp", protocol: "TCP", port: r.dataPort, targetPort: r.dataPort, nodePort: r.dataPort },
      { name: "data-udp", protocol: "UDP", port: r.dataPort, targetPort: r.dataPort, nodePort: r.dataPort },
    ],
  };
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
