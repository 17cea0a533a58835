// The Helm values of the Cilium chart, for any dataplane, from the scenario alone.
// With kube-proxy (iptables): Cilium is the CNI only and kube-proxy serves Services.
// Without (ebpf): Cilium's kube-proxy replacement serves Services at the TC hook of the data-center NIC.
// Every key differs from the chart's default or pins a default the measurement depends on.
import { stringify } from "yaml";
import type { Scenario } from "../../scenario/schema.js";
import { nodePortRange, podRouting, serviceCapacity } from "../../scenario/schema.js";
import { clusterDataplane } from "./dataplanes/index.js";
import { CILIUM_METRICS_PORT } from "./dataplanes/ebpf.js";
import { perFamily } from "./kubeadm.js";

export const CILIUM_VALUES_ARTIFACT = "helm/cilium-values.yaml";
export const CILIUM_CHART_REPO = "https://helm.cilium.io/";

/** The chart's `bpf.lbMapMax` default; resizing later disrupts connections, so it is sized at install. */
export const LB_MAP_DEFAULT = 65536;

/** Service ports the cluster has besides the scaled Services: kubernetes (1), kube-dns (3), the D-ITG receiver (6: three for each of its pod's two ITGRecv), with room to spare. */
export const CLUSTER_SERVICE_PORTS = 16;

type SizingScenario = Pick<Scenario, "dataplane" | "services" | "sweep">;

/** The largest Service count any step of this stack deploys. */
export function largestServiceCount(s: Pick<Scenario, "services" | "sweep">): number {
  return Math.max(s.services, ...s.sweep.services);
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** `bpf.lbMapMax`: the estimated entries for the largest Service count, as a power of two, never below the default. */
export function lbMapMax(s: SizingScenario): number {
  // An upper bound per Service: Services beyond the NodePort range are ClusterIP and take fewer.
  const entries = (largestServiceCount(s) + CLUSTER_SERVICE_PORTS) * clusterDataplane(s.dataplane).lbEntriesPerService;
  return Math.max(LB_MAP_DEFAULT, nextPowerOfTwo(entries));
}

/** Cilium's service IDs (reverse-NAT indices) are 16-bit and shared by every frontend of both families. */
export const SERVICE_ID_LIMIT = 65535;

/**
 * Service IDs the largest step takes, per Service port and family (Cilium 1.17): a NodePort Service
 * takes the dataplane's serviceIdsPerNodePort (5 under the kube-proxy replacement, one per frontend),
 * a ClusterIP one 1; without the replacement only ClusterIPs take IDs.
 * Services beyond the NodePort range are ClusterIP, as in the paper. An estimate from upstream
 * issue dumps, to warn before a sweep runs into "no service ID available".
 */
export function serviceIdEstimate(s: Pick<Scenario, "dataplane" | "services" | "sweep" | "families" | "kubernetes" | "receiver">): number {
  const largest = largestServiceCount(s);
  const nodePorts = Math.min(largest, serviceCapacity(s).nodePort);
  const perNodePort = clusterDataplane(s.dataplane).serviceIdsPerNodePort;
  return s.families.length * (nodePorts * perNodePort + (largest - nodePorts) + CLUSTER_SERVICE_PORTS);
}

export interface CiliumHostFacts {
  /** The API server's address (the master on the management network): a real IP, not "auto". */
  readonly apiServerHost: string;
  readonly apiServerPort: number;
  /** Names of the data-center NICs of the nodes (the NIC the measured traffic arrives on). */
  readonly datacenterDevices: readonly string[];
}

export type CiliumValues = Record<string, unknown>;

type ValuesScenario = Pick<Scenario, "dataplane" | "families" | "kubernetes" | "services" | "sweep"> & Partial<Pick<Scenario, "podRouting">>;

export function renderCiliumValues(s: ValuesScenario, host: CiliumHostFacts): CiliumValues {
  const ipv4 = s.families.includes("ipv4");
  const ipv6 = s.families.includes("ipv6");
  const values: CiliumValues = {
    // Stated in both stacks: the chart fails without an explicit true/false (1.16+).
    kubeProxyReplacement: clusterDataplane(s.dataplane).ciliumReplacesKubeProxy,
    // Pod CIDRs are kubeadm's podSubnet, allocated per node by kube-controller-manager, so kube-proxy's
    // clusterCIDR and the real pod addresses agree (the chart's cluster-pool would use 10.0.0.0/8).
    ipam: { mode: "kubernetes" },
    // The agent starts only once its node has a pod CIDR of every family.
    k8s: { requireIPv4PodCIDR: ipv4, requireIPv6PodCIDR: ipv6 },
    // The families of the scenario (the chart enables IPv4 only).
    ipv4: { enabled: ipv4 },
    ipv6: { enabled: ipv6 },
    // Two nodes: a second operator replica adds no availability and takes CPU from the worker under test.
    operator: { replicas: 1 },
    // Off: its hubble-peer Service would take a dynamic ClusterIP from the range the scaled Services
    // are given explicitly (a collision fails their creation), and flow observation costs the node
    // under test CPU the paper's setup did not spend.
    hubble: { enabled: false },
    // Sized for the largest Service count of the sweep (the dataplane's lbEntriesPerService).
    bpf: { lbMapMax: lbMapMax(s) },
    ...routing(s),
  };
  if (clusterDataplane(s.dataplane).ciliumReplacesKubeProxy) {
    // Nobody serves the `kubernetes` ClusterIP before the agent runs without kube-proxy; "auto"
    // needs Helm's cluster lookup, so the address is stated.
    values.k8sServiceHost = host.apiServerHost;
    values.k8sServicePort = host.apiServerPort;
    // The eBPF NodePort datapath on the NIC the measured traffic arrives on, and nowhere else
    // (auto-detection would add the management NIC and double the NodePort frontends).
    if (host.datacenterDevices.length === 0) throw new Error("no data-center NIC name for Cilium's devices");
    values.devices = [...new Set(host.datacenterDevices)].join(",");
    // The API server's range (testbed:kubernetes.nodePortRange), in Cilium's "LOW,HIGH" form.
    const range = nodePortRange(s);
    values.nodePort = { range: `${range.low},${range.high}` };
    // The agent's metrics endpoint on the node (port 9962), read by the programming profile: its
    // service_implementation_delay is on by default; the bpf(2) call durations are asked for.
    values.prometheus = { enabled: true, port: CILIUM_METRICS_PORT, metrics: ["+cilium_bpf_syscall_duration_seconds"] };
  }
  return values;
}

/**
 * How pod traffic crosses between the nodes, in every stack (Cilium is the CNI of all three):
 * testbed:podRouting, by default a tunnel (VXLAN) where the nodes have IPv4, which needs nothing of
 * Neutron but UDP 8472 between the nodes (security-rules.ts). Cilium 1.17 tunnels over IPv4 only (an
 * IPv6 underlay came with 1.18), so an IPv6-only cluster routes natively. Native routing sends pod
 * addresses unencapsulated over the data-center network: each node routes every other node's pod
 * CIDR through that node (autoDirectNodeRoutes, the nodes share one L2 segment), the nodes' ports
 * allow the pod subnets as address pairs (address-plan.ts), and traffic to destinations inside the
 * pod subnets is not masqueraded (the native routing CIDRs).
 */
function routing(s: Pick<Scenario, "families" | "kubernetes" | "podRouting">): CiliumValues {
  if (podRouting(s) === "tunnel") return { routingMode: "tunnel", tunnelProtocol: "vxlan" };
  const cidr = (f: "ipv4" | "ipv6") => perFamily({ families: [f] }, s.kubernetes.podSubnets, "testbed:kubernetes.podSubnets")[0];
  return {
    routingMode: "native",
    autoDirectNodeRoutes: true,
    ...(s.families.includes("ipv4") ? { ipv4NativeRoutingCIDR: cidr("ipv4") } : {}),
    ...(s.families.includes("ipv6") ? { ipv6NativeRoutingCIDR: cidr("ipv6") } : {}),
  };
}

export function renderCiliumValuesYaml(s: ValuesScenario, host: CiliumHostFacts): string {
  return `# Cilium Helm values (dataplane: ${s.dataplane}); rendered by the testbed from the scenario.\n${stringify(renderCiliumValues(s, host), { lineWidth: 0 })}`;
}
