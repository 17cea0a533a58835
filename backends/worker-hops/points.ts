// Where the hop probes sit on a worker of a deployed stack, and in which order with the Service
// dataplane's own tc programs. Pure.
//
// The worker's six points (hops/hop-maps.h numbers them; measure/hops.ts names the sections):
//
//   P3 hf_uplink_in   data NIC (tb-dc), tc ingress     before the Service dataplane
//   P4 hf_pod_veth    pod's veth, host side, egress    after the dataplane's DNAT, towards the pod
//   P5 hf_pod_in      pod's interface, tc ingress      inside the pod's network namespace
//   P6 hr_pod_out     pod's interface, tc egress       the echo leaving ITGRecv
//   P7 hr_pod_veth    pod's veth, host side, ingress   the echo from the pod, before Cilium's cil_from_container
//   P8 hr_uplink_out  data NIC, tc egress              after the reverse NAT, before cil_to_netdev
//
// Every probe is the first filter of its hook (pref 1) and returns TC_ACT_UNSPEC, so the next filter
// runs on every packet. It must be first: a direct-action program's verdict ends the chain (cls_bpf
// in direct-action mode returns the program's verdict; tcf_classify stops at any verdict but
// TC_ACT_UNSPEC), and Cilium's programs return TC_ACT_OK (CTX_ACT_OK), a redirect or a drop, never
// UNSPEC: a probe after one of them never runs (test/lab/worker-hops.test.ts shows it with a
// program that returns TC_ACT_OK).
//
// Order of the filters on each hook of a worker (Cilium 1.17 on kernel 5.4: no tcx, legacy tc):
//
//   tb-dc ingress   pref 1 hf_uplink_in | pref P cil_from_netdev-tb-dc (kube-proxy replacement:
//                   NodePort DNAT; a local backend is handed back to the stack with CTX_ACT_OK) |
//                   then netfilter (kube-proxy's iptables or nftables rules run here, after tc ingress)
//   tb-dc egress    pref 1 hr_uplink_out | pref P cil_to_netdev-tb-dc (NAT on the way out)
//   lxc ingress     pref 1 hr_pod_veth | pref P cil_from_container-lxc… (for a NodePort reply: reverse
//                   NAT, tail call CILIUM_CALL_IPV4_NODEPORT_REVNAT, redirected to tb-dc's egress)
//   lxc egress      pref 1 hf_pod_veth (Cilium attaches cil_to_container here only when the
//                   endpoint requires an egress program, e.g. with endpoint routes; otherwise it
//                   removes every filter of this hook when it regenerates the endpoint)
//   pod eth ingress pref 1 hf_pod_in (Cilium attaches nothing inside a pod in veth mode)
//   pod eth egress  pref 1 hr_pod_out
//
// P is Cilium's `bpf-filter-priority` (a hidden agent option, default 1: pkg/option/config.go
// TCFilterPriority "enabling other filters to be inserted prior to the cilium filter"; applied by
// pkg/datapath/loader/tc.go attachTCProgram with handle 1, protocol all). With the default the
// probes have no place before Cilium: the stack must set the chart's `extraConfig:
// {bpf-filter-priority: "2"}` (the chart has no dedicated value; every key of cilium-config
// reaches the agent). begin() refuses a hook whose pref 1 another filter holds, and says so.
//
// Where cil_from_netdev sends a NodePort packet for a local backend: on 5.4 BPF host routing is
// unavailable (it needs 5.10), so nodeport_lb4 (bpf/lib/nodeport.h) returns CTX_ACT_OK after the
// DNAT and the kernel stack routes the packet (via cilium_host, whose program delivers it with
// redirect_ep -> ctx_redirect to the lxc device's egress: bpf/lib/lxc.h, "!is_defined
// (ENABLE_HOST_ROUTING)"), so P4 sees it. On 5.10+ with BPF host routing (which Cilium enables only
// with its kube-proxy replacement and BPF masquerading) redirect_ep uses bpf_redirect_peer: the
// packet goes from tb-dc's ingress straight into the pod's interface ingress, and the lxc egress
// (P4) never sees it. P5, inside the pod, sees it either way: measure/hops.ts then ends the forward
// service-dataplane at P5 (P4 "bypassed"). The reply always leaves the pod through the lxc's
// ingress (P7); the redirect to tb-dc's egress (bpf_redirect or bpf_redirect_neigh) passes tb-dc's
// tc egress (P8), where cil_to_netdev runs after the probe.
//
// What the worker's points do not cover: the time cil_to_netdev spends on a reply (after P8; no
// tc point runs after a filter that returns TC_ACT_OK). Kernels with tcx (6.6+) run Cilium's tcx
// programs before every legacy tc filter: the probes would need tcx there.
import type { HopPoint } from "../../measure/hops.js";
import { HOP_POINTS } from "../../measure/hops.js";

/** The tc priority of every worker probe: the first filter of its hook. */
export const WORKER_PROBE_PREF = 1;
/** The Cilium agent option (cilium-config key, set through the chart's extraConfig) that moves Cilium's tc filters after the probes. */
export const CILIUM_FILTER_PRIORITY_KEY = "bpf-filter-priority";
/** Where each probe's object is named, so that its filters are told apart from anyone else's at the same priority. */
export const WORKER_PROBE_OBJECT = "testbed-hop-probe.o";
/** The connect call's hooks (hops/hop-connect.c), built on the client node of clusterip. */
export const WORKER_CONNECT_OBJECT = "testbed-hop-connect.o";

/**
 * Which interface of the worker a point sits on: the data NIC, the tunnel device that carries pod
 * traffic between the nodes (Cilium's VXLAN device, when the stack tunnels), the host side of the
 * pod's veth, the pod's own interface.
 */
export type WorkerInterface = "nic" | "tunnel" | "pod-veth" | "pod";

/** Cilium's VXLAN device (routingMode tunnel, tunnelProtocol vxlan): pod traffic to another node leaves through it, decapsulated traffic arrives on it. */
export const CILIUM_TUNNEL_DEVICE = "cilium_vxlan";

export interface WorkerPoint {
  /** The point stamped (the forward one where the program stamps both directions). */
  readonly point: number;
  readonly name: HopPoint;
  /** Its program in hops/hop-probe.c (section tc/<program>). */
  readonly program: string;
  readonly iface: WorkerInterface;
  readonly direction: "ingress" | "egress";
}

/**
 * What a worker is on a path: the paper's worker (its uplink and receiver pod), worker 1 of
 * nodeport-remote (its uplink alone: the NodePort, DNAT and SNAT), worker 1 of clusterip (its
 * uplink and the client pod), worker 2 of both (its uplink and the path's receiver pod).
 */
export const WORKER_ROLES = ["receiver-node", "nodeport-entry", "client-node", "endpoint-node"] as const;
export type WorkerRole = (typeof WORKER_ROLES)[number];

const place = ([point, program, iface, direction]: readonly [number, string, WorkerInterface, "ingress" | "egress"]): WorkerPoint => ({
  point,
  name: HOP_POINTS[point]!,
  program,
  iface,
  direction,
});

/** The paper's worker's points in path order. */
export const WORKER_PLACES: readonly WorkerPoint[] = (
  [
    [3, "hf_uplink_in", "nic", "ingress"],
    [4, "hf_pod_veth", "pod-veth", "egress"],
    [5, "hf_pod_in", "pod", "ingress"],
    [6, "hr_pod_out", "pod", "egress"],
    [7, "hr_pod_veth", "pod-veth", "ingress"],
    [8, "hr_uplink_out", "nic", "egress"],
  ] as const
).map(place);

/**
 * Pure: the probes a worker of a role carries, in path order. Worker 1's uplink is crossed both ways
 * on the paths to worker 2 (hb_uplink_in: P3 forward, P19 return; hb_uplink_out: P12 forward, P8
 * return). Where the stack tunnels, pod traffic between the nodes is encapsulated on the data NIC
 * (its outer header is not the data port's, so the NIC's probes pass it unstamped) and visible on
 * the tunnel device: the node-to-node points sit there as well, and whichever device carries the
 * packet stamps it.
 */
export function workerPlaces(role: WorkerRole, tunnel: boolean): WorkerPoint[] {
  const both = (program: string, direction: "ingress" | "egress", point: number): (readonly [number, string, WorkerInterface, "ingress" | "egress"])[] => [
    [point, program, "nic", direction],
    ...(tunnel ? [[point, program, "tunnel", direction] as const] : []),
  ];
  switch (role) {
    case "receiver-node":
      return [...WORKER_PLACES];
    case "nodeport-entry":
      return [...both("hb_uplink_in", "ingress", 3), ...both("hb_uplink_out", "egress", 12)].map(place);
    case "client-node":
      return [
        [20, "hf_cpod_out", "pod", "egress"] as const,
        [21, "hf_cpod_veth", "pod-veth", "ingress"] as const,
        ...both("hb_uplink_out", "egress", 12),
        ...both("hb_uplink_in", "ingress", 19),
        [22, "hr_cpod_veth", "pod-veth", "egress"] as const,
        [23, "hr_cpod_in", "pod", "ingress"] as const,
      ].map(place);
    case "endpoint-node":
      return [
        ...both("hf_node2_in", "ingress", 13),
        [14, "hf_pod2_veth", "pod-veth", "egress"] as const,
        [15, "hf_pod2_in", "pod", "ingress"] as const,
        [16, "hr_pod2_out", "pod", "egress"] as const,
        [17, "hr_pod2_veth", "pod-veth", "ingress"] as const,
        ...both("hr_node2_out", "egress", 18),
      ].map(place);
  }
}

/** Pure: whether a role's probes sit in a pod (all but worker 1 of nodeport-remote). */
export function roleHasPod(role: WorkerRole): boolean {
  return role !== "nodeport-entry";
}

/** One filter of a hook, as `tc filter show dev X ingress|egress` lists it. */
export interface ShownFilter {
  readonly pref: number;
  /** The program's name as tc shows it (object:[section] for tc's loader, else the kernel's name). */
  readonly name: string;
}

/** Pure: the filters of a hook in the order the kernel runs them (by priority), from `tc filter show`. */
export function parseFilters(shown: string): ShownFilter[] {
  const filters: ShownFilter[] = [];
  for (const line of shown.split("\n")) {
    const m = /\bpref (\d+) \S+ chain 0 handle \S+ (\S+)/.exec(line);
    if (m) filters.push({ pref: Number(m[1]), name: m[2]! });
  }
  return filters.sort((a, b) => a.pref - b.pref);
}

/** Pure: whether a shown filter is one of the worker probes. */
export function isWorkerProbe(filter: ShownFilter): boolean {
  return filter.name.startsWith(`${WORKER_PROBE_OBJECT}:[tc/`);
}

/**
 * Pure: why a probe cannot be the first filter of a hook, or undefined. A foreign filter holding
 * the probes' priority would run first, and Cilium's return a verdict that ends the chain.
 */
export function hookProblem(hook: { device: string; direction: "ingress" | "egress" }, filters: readonly ShownFilter[]): string | undefined {
  const taken = filters.find((f) => f.pref <= WORKER_PROBE_PREF && !isWorkerProbe(f));
  if (!taken) return undefined;
  const cilium = taken.name.startsWith("cil_");
  return (
    `${hook.device} ${hook.direction}: ${taken.name} holds tc priority ${taken.pref}, where the hop probe must run first ` +
    (cilium
      ? `(Cilium's programs end the filter chain); give Cilium a later priority: the chart value extraConfig: {${CILIUM_FILTER_PRIORITY_KEY}: "2"}`
      : `(a filter before it may end the chain); move it to a priority above ${WORKER_PROBE_PREF}`)
  );
}
