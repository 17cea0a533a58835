// The Service dataplane of a cluster, one module each behind one interface, chosen by the
// scenario's testbed:dataplane through REGISTRY. Nothing else in infra/ branches on a dataplane's
// name: kubeadm asks for kube-proxy's mode, the Cilium values for the replacement, the readiness
// checks for the module's own shell checks.
import type { Dataplane } from "../../../scenario/schema.js";
import { ebpf } from "./ebpf.js";
import { iptables } from "./iptables.js";
import { nftables } from "./nftables.js";

/**
 * The control plane that programs the worker's dataplane, as the programming profile uses it
 * (backends/cloud-programming.ts): restarted by deleting its pod on the worker (the full-sync
 * change), and read through the Prometheus endpoint it serves on the node (host network).
 */
export interface ControlPlane {
  /** What it is, in messages. */
  readonly name: string;
  /** The label of its DaemonSet's pods in kube-system. */
  readonly podLabel: string;
  /** Its metrics endpoint, as the node reaches it. */
  readonly metricsUrl: string;
  /** The histograms it exposes there, read before and after every change. */
  readonly metrics: {
    /** One observation per sync of the rules (per family where there is a proxier per family). */
    readonly sync?: string;
    /** One observation per Service or endpoint change, from the change to its rules or maps written. */
    readonly programming: string;
    /** One observation per bpf(2) call. */
    readonly calls?: string;
  };
}

/** The names of every histogram a control plane exposes. */
export function controlPlaneHistograms(c: ControlPlane): string[] {
  return Object.values(c.metrics).filter((m): m is string => typeof m === "string");
}

export interface ClusterDataplane {
  readonly name: Dataplane;
  /** kube-proxy's mode in its KubeProxyConfiguration; undefined: no kube-proxy (kubeadm `proxy.disabled`). */
  readonly kubeProxyMode: "iptables" | "nftables" | undefined;
  /** Cilium serves Services itself (kubeProxyReplacement): NodePort devices, the API server's address. */
  readonly ciliumReplacesKubeProxy: boolean;
  /**
   * Entries one Service port takes in one family's cilium_lb map, with one backend on the node under
   * test (Cilium 1.17): the sizing of `bpf.lbMapMax` (cilium-values.ts).
   */
  readonly lbEntriesPerService: number;
  /** Cilium service IDs one NodePort Service port takes per family (ClusterIP-only Services take 1). */
  readonly serviceIdsPerNodePort: number;
  /**
   * Bash, run on the master with KUBECONFIG set: exits non-zero, saying why, unless this dataplane
   * and no other serves the cluster's Services.
   */
  readonly activeCheck: string;
  /**
   * Bash, run on the master with KUBECONFIG set, $WORKER_NODE the worker's node name and
   * $SERVICE_FAMILIES the scenario's families ("ipv4 ipv6"): prints `CLUSTER_IP NAMESPACE/NAME`,
   * one line per ClusterIP the worker's dataplane forwards to a backend and per Service port, read
   * from the dataplane itself (its rules or maps, where it names the Service), not from the API
   * server. Exits non-zero when the dataplane cannot be read.
   */
  readonly programmedClusterIps: string;
  /**
   * Bash, run on the master with KUBECONFIG set, $WORKER_NODE, $SERVICE_FAMILIES and $SERVICE
   * (NAMESPACE/NAME): prints the chains the worker's dataplane still holds for a Service that was
   * removed, one per line. kube-proxy's nftables mode flushes a removed Service's chains and deletes
   * them at a sync a second later; its first sync after a restart keeps the endpoint chains it finds,
   * flushed or not, so a restart in between leaves a re-created Service's endpoint chain empty.
   * Absent where a removed Service leaves nothing behind.
   */
  readonly leftoverChains?: string;
  /**
   * Bash, run as root on the worker node: forgets every connection the dataplane tracks there, so
   * that a reused 5-tuple is a new connection again (the connection-setup probe, once it has used
   * up its fresh source ports). Exits non-zero, saying why, when it could not.
   */
  readonly forgetConnections: string;
  readonly controlPlane: ControlPlane;
}

export const REGISTRY: Readonly<Record<Dataplane, ClusterDataplane>> = { iptables, nftables, ebpf };

export function clusterDataplane(name: Dataplane): ClusterDataplane {
  return REGISTRY[name];
}
