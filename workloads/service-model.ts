// The Services the testbed deploys, as plain data. One model feeds the Kubernetes manifests,
// the kube-proxy-format iptables rules of the lab and the lab's eBPF service maps.
import type { Family } from "../scenario/cidr.js";

export type L4Protocol = "TCP" | "UDP";

export interface ServicePort {
  /** Port name; kube-proxy's chain hashes use "<namespace>/<service>:<name>". */
  readonly name: string;
  readonly protocol: L4Protocol;
  /** Service (ClusterIP) port. */
  readonly port: number;
  /** Port on the backend pod. */
  readonly targetPort: number;
  /** Set for NodePort Services only. */
  readonly nodePort?: number;
}

export interface ServiceSpec {
  readonly namespace: string;
  readonly name: string;
  readonly type: "NodePort" | "ClusterIP";
  /** One ClusterIP per enabled family, assigned explicitly so every backend sees the same addresses. */
  readonly clusterIPs: Readonly<Partial<Record<Family, string>>>;
  /**
   * "Local" on every scaled NodePort Service and on the paper's receiver, as in the paper (keeps the
   * client's source address); "Cluster" on the nodeport-remote path's receiver, whose only endpoint
   * is on another node.
   */
  readonly externalTrafficPolicy?: "Local" | "Cluster";
  /** Pod labels the Service selects. */
  readonly selector: Readonly<Record<string, string>>;
  readonly ports: readonly ServicePort[];
}

export interface ServiceSet {
  /** The swept Services, in creation order. */
  readonly scaled: readonly ServiceSpec[];
  /** The D-ITG receiver's Service: signaling and data NodePorts. */
  readonly receiver: ServiceSpec;
  readonly counts: { readonly nodePort: number; readonly clusterIp: number };
}
