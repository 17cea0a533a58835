// The local lab's network: the paper's client VM, router VM, Kubernetes worker and receiver pod as
// network namespaces on this host, joined by veth pairs the way the VMs' ports and a CNI join them:
//
//   client --access-- router --datacenter-- worker --pod-- pod
//
// One small subnet per link from the benchmarking ranges only, routes for the lab's subnets only
// (no default route, so nothing can leave for another address), forwarding on router and worker,
// and the paper's link cap on the access and datacenter links.
//
// Every name carries a per-run prefix (run-registry.ts); everything is removed by destroy(), on
// exit, on SIGINT/SIGTERM, and after a crash by cleanupLeftovers().
//
// Several workers (the paths beyond the paper's, scenario/paths.ts): worker n >= 2 is one more
// namespace with its own link to the router (its uplink) and its own receiver pod, and a client pod
// may sit on worker 1 beside the receiver. Pod blocks are routed natively, worker to worker through
// the router, as a CNI in native-routing mode has the nodes route them: no tunnel. With one worker
// and no client pod the plan is the paper's lab, unchanged.
//
// The builder works from segments: a two-member segment is a veth pair, a larger one a bridge with a
// veth to each member. The lab's four namespaces and three links are one such plan; a plan with more
// hosts (the rehearsal of the cloud path, rehearsal/network.ts) goes through LabTopology.createFrom.
import { join } from "node:path";
import type { ChildProcess, SpawnOptions } from "node:child_process";
import { cidrContains, cidrsOverlap, coveringCidr, nthAddress, parseCidr, type Cidr, type Family } from "../scenario/cidr.js";
import { exec, inNetns, run, startProcess, type CommandOptions, type CommandResult } from "./netns.js";
import { processPrivilegeProblem } from "./privileges.js";
import { claimPrefix, findRunPrefixes, PREFIX_PATTERN, removeRun, RUN_MARKER, RUN_STATE_DIR } from "./run-registry.js";
import { SHAPERS, shapingCommands, type Shaper } from "../scenario/link-cap.js";
import { cgroupMountOf, containerCgroupPath, createCgroups, inCgroup, podCgroupPath } from "./pod-cgroups.js";

export { cleanupLeftovers, findRunObjects, type CleanupReport, type RunObjects } from "./run-registry.js";

export const ROLES = ["client", "router", "worker", "pod"] as const;
export type Role = (typeof ROLES)[number];
export const LINKS = ["access", "datacenter", "pod"] as const;
export type LinkName = (typeof LINKS)[number];
const FAMILIES: readonly Family[] = ["ipv4", "ipv6"];


/** The only blocks the lab may address (RFC 2544 and RFC 5180 benchmarking ranges). */
export const BENCHMARK_RANGES: Readonly<Record<Family, Cidr>> = {
  ipv4: parseCidr("198.18.0.0/15")!,
  ipv6: parseCidr("2001:2::/48")!,
};

/** Defaults: access and datacenter equal the scenario's client and datacenter networks. */
export const DEFAULT_SUBNETS: Readonly<Record<LinkName, Readonly<Record<Family, string>>>> = {
  access: { ipv4: "198.18.0.0/24", ipv6: "2001:2:0:10::/64" },
  datacenter: { ipv4: "198.18.1.0/24", ipv6: "2001:2:0:20::/64" },
  pod: { ipv4: "198.18.2.0/24", ipv6: "2001:2:0:40::/64" },
};

export { SHAPERS, shapingCommands, type Shaper } from "../scenario/link-cap.js";

export interface TopologyOptions {
  /** Four characters [a-z0-9] that complete the run prefix; random when absent. */
  readonly runId?: string;
  readonly subnets?: Partial<Record<LinkName, Partial<Record<Family, string>>>>;
  /** Cap of the access and datacenter links in Mbit/s, each direction; 0 turns it off. Default 500. */
  readonly linkMbps?: number;
  /** Queueing discipline that enforces the cap. Default tbf. */
  readonly shaper?: Shaper;
  /** Workers, each with its receiver pod; default 1, the paper's. */
  readonly workers?: number;
  /**
   * A client pod on worker 1 (the clusterip path), and the Service blocks it reaches through its
   * node (its routes to the ClusterIPs, as a pod's default route takes them).
   */
  readonly clientPod?: { readonly serviceSubnets: Readonly<Record<Family, string>> };
}

/** Most workers the lab builds (scenario MAX_WORKERS allows more on the cloud). */
export const MAX_LAB_WORKERS = 4;

/** The blocks of worker n >= 2's uplink and pod links, and of worker 1's client pod link: disjoint from DEFAULT_SUBNETS. */
export function extraSubnets(n: number): { uplink: Record<Family, string>; pod: Record<Family, string> } {
  return {
    uplink: { ipv4: `198.18.${10 + n}.0/24`, ipv6: `2001:2:0:${20 + n}::/64` },
    pod: { ipv4: `198.18.${20 + n}.0/24`, ipv6: `2001:2:0:${40 + n}::/64` },
  };
}
/**
 * The client pod's block, beside worker 1's pod block (DEFAULT_SUBNETS.pod): one cluster CIDR covers
 * both (podClusterCidr), so that kube-proxy's local-traffic detector counts the client pod as a pod.
 */
export const CLIENT_POD_SUBNETS: Readonly<Record<Family, string>> = { ipv4: "198.18.3.0/24", ipv6: "2001:2:0:41::/64" };

/** A worker of the plan: its namespace, its NIC toward the router and its receiver pod. */
export interface WorkerPlan {
  /** 1-based, as scenario/paths.ts counts workers. */
  readonly index: number;
  /** The namespace roles of the worker and of its receiver pod (TopologyPlan.allNamespaces). */
  readonly role: string;
  readonly podRole: string;
  readonly uplink: string;
  readonly podVeth: string;
  /** The worker's uplink address (its node address) and its receiver pod's. */
  readonly node: Readonly<Record<Family, string>>;
  readonly pod: Readonly<Record<Family, string>>;
  /** The block of its pods, routed to it natively. */
  readonly podSubnets: Readonly<Record<Family, Cidr>>;
}

/** The client pod on worker 1 (clusterip path). */
export interface ClientPodPlan {
  readonly role: string;
  readonly subnets: Readonly<Record<Family, Cidr>>;
  /** Worker 1's host-side veth of the client pod. */
  readonly hostVeth: string;
  readonly addresses: Readonly<Record<Family, string>>;
  /** Its cgroup v2 directory (lab/pod-cgroups.ts): the pod's, where the lab's socket load balancer attaches. */
  readonly cgroup: string;
  /**
   * Its container's cgroup, below the pod's, as the kubelet nests a container's cgroup in its pod's:
   * every process the lab starts in the client pod runs in it. A socket hook of the container's cgroup
   * runs before the pod's (the connect call's first stamp before any translation, hops/hop-connect.c).
   */
  readonly containerCgroup: string;
}

export interface LinkEnd {
  readonly role: Role;
  readonly ifname: string;
  readonly addresses: Readonly<Record<Family, string>>;
}

export interface LinkPlan {
  readonly name: LinkName;
  readonly subnets: Readonly<Record<Family, Cidr>>;
  /** The end that routes for the other (address #1 of each subnet). */
  readonly gateway: LinkEnd;
  /** Address #2 of each subnet. */
  readonly host: LinkEnd;
  readonly shaped: boolean;
}

export interface RoutePlan {
  /** A namespace of the plan (TopologyPlan.allNamespaces). */
  readonly role: string;
  readonly family: Family;
  readonly destination: string;
  readonly via: string;
  /** The device, where the next hop is not on a connected subnet (a tunnel's peer: onlink). */
  readonly dev?: string;
}

/**
 * A VXLAN device carrying pod traffic between nodes, as a CNI in tunnel mode has (Cilium's
 * cilium_vxlan): no learning, every peer's MAC in the forwarding database with its node's underlay
 * address, and a permanent neighbour entry for each peer's pod gateway, so that routes to the peers'
 * pod blocks point through the tunnel without ARP or neighbour discovery across it.
 */
export interface TunnelPlan {
  readonly role: string;
  readonly ifname: string;
  readonly vni: number;
  readonly port: number;
  /** This node's underlay address (IPv4: Cilium 1.17 tunnels over IPv4). */
  readonly local: string;
  readonly mac: string;
  readonly peers: readonly { readonly mac: string; readonly underlay: string; readonly gateways: Readonly<Record<Family, string>> }[];
}

export interface LabAddresses {
  readonly client: Readonly<Record<Family, string>>;
  /** The worker's uplink address: the NodePort address. */
  readonly node: Readonly<Record<Family, string>>;
  /** The receiver pod's address: the Services' backend. */
  readonly pod: Readonly<Record<Family, string>>;
}

/** One end of a segment: an interface in a namespace of the plan. */
export interface SegmentMember {
  /** A namespace of the plan (TopologyPlan.allNamespaces). */
  readonly role: string;
  readonly ifname: string;
  /** Addresses of the interface, each family optional. */
  readonly addresses: Readonly<Partial<Record<Family, string>>>;
  /** Its egress carries the link cap (TopologyPlan.shaping). */
  readonly shaped: boolean;
  /** On a bridged segment: the name of the veth's other end, the bridge's port (default: derived from the segment and role). */
  readonly peerName?: string;
}

/** A bridge joining the members of a segment, in a namespace of the plan. */
export interface BridgePlan {
  readonly role: string;
  readonly ifname: string;
  /** The bridge's own addresses (a gateway that lives on the bridge), if any. */
  readonly addresses: Readonly<Partial<Record<Family, string>>>;
}

/** A network segment: two members joined by a veth pair, or any number joined by a bridge. */
export interface SegmentPlan {
  readonly name: string;
  readonly subnets: Readonly<Partial<Record<Family, Cidr>>>;
  readonly members: readonly SegmentMember[];
  /** Required with more than two members. */
  readonly bridge?: BridgePlan;
}

export interface TopologyPlan {
  readonly prefix: string;
  readonly runDir: string;
  /** The lab's four roles (client, router, worker, pod) as every lab dataplane and probe finds them. */
  readonly namespaces: Readonly<Record<Role, string>>;
  /** Every namespace of the run by role: the lab's four, and any other of a larger plan. */
  readonly allNamespaces: Readonly<Record<string, string>>;
  readonly links: Readonly<Record<LinkName, LinkPlan>>;
  /** How the namespaces are joined; the lab's links are three two-member segments. */
  readonly segments: readonly SegmentPlan[];
  readonly routes: readonly RoutePlan[];
  readonly forwarding: readonly string[];
  /**
   * Namespaces whose IPv4 reverse-path filter is loose (rp_filter 2) whatever the host's default:
   * the router, once a reply may reach it from another worker than the one its source address
   * belongs to (the eBPF model's DSR on nodeport-remote: worker 2 answers with worker 1's address).
   * A strict filter, a new namespace's default on hosts that set rp_filter=1, would drop it. On
   * OpenStack, Neutron's port security drops it too, unless worker 2's port lists worker 1's
   * address in its allowed-address-pairs.
   */
  readonly looseReversePath?: readonly string[];
  /** Tunnels between nodes, built after the segments and before the routes (which may point through them). */
  readonly tunnels?: readonly TunnelPlan[];
  readonly shaping: { readonly shaper: Shaper; readonly mbps: number } | null;
  readonly addresses: LabAddresses;
  /** The worker's interfaces: uplink (the node's NIC, where NodePort traffic arrives) and the pod's host-side veth. */
  readonly worker: { readonly uplink: string; readonly podVeth: string };
  /** Every worker, worker 1 (the lab's "worker" and "pod") first; absent in plans of one worker built elsewhere (the rehearsal's). */
  readonly workers?: readonly WorkerPlan[];
  readonly clientPod?: ClientPodPlan;
}

/** Why the lab cannot run on this host, or undefined when it can. */
export function labHostProblem(): string | undefined {
  if (process.platform !== "linux") return `the local lab needs Linux (this is ${process.platform})`;
  return processPrivilegeProblem();
}

/**
 * Pure: the cluster CIDR kube-proxy's local-traffic detector on worker 1 is given (--cluster-cidr):
 * worker 1's pod block, or with a client pod the smallest block holding it and the client pod's, as a
 * cluster's pod CIDR holds every pod of the node.
 */
export function podClusterCidr(plan: Pick<TopologyPlan, "links" | "clientPod">, family: Family): string {
  const pods = plan.links.pod.subnets[family];
  if (!plan.clientPod) return pods.text;
  return coveringCidr(pods, plan.clientPod.subnets[family]).text;
}

/** Pure: names, addresses, routes and shaping of one run. Throws naming the bad option. */
export function planTopology(prefix: string, options: TopologyOptions = {}): TopologyPlan {
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new Error(`prefix: "${prefix}" is not a run prefix; accepted: "${RUN_MARKER}" + 4 characters [a-z0-9]`);
  }
  const subnets = resolveSubnets(options.subnets ?? {});
  const shaping = resolveShaping(options);
  const ns = Object.fromEntries(ROLES.map((r) => [r, `${prefix}-${r}`])) as Record<Role, string>;
  const ifname = (suffix: string) => `${prefix}-${suffix}`;
  const end = (role: Role, link: LinkName, n: number, suffix: string): LinkEnd => ({
    role,
    ifname: ifname(suffix),
    addresses: { ipv4: nthAddress(subnets[link].ipv4, n), ipv6: nthAddress(subnets[link].ipv6, n) },
  });
  const links: Record<LinkName, LinkPlan> = {
    access: {
      name: "access",
      subnets: subnets.access,
      gateway: end("router", "access", 1, "rac"),
      host: end("client", "access", 2, "cli"),
      shaped: shaping !== null,
    },
    datacenter: {
      name: "datacenter",
      subnets: subnets.datacenter,
      gateway: end("router", "datacenter", 1, "rdc"),
      host: end("worker", "datacenter", 2, "up"),
      shaped: shaping !== null,
    },
    pod: {
      name: "pod",
      subnets: subnets.pod,
      gateway: end("worker", "pod", 1, "lxc"),
      host: end("pod", "pod", 2, "eth"),
      shaped: false,
    },
  };
  const routes: RoutePlan[] = [];
  const route = (role: Role, to: LinkName, via: LinkEnd) => {
    for (const family of FAMILIES) {
      routes.push({ role, family, destination: subnets[to][family].text, via: via.addresses[family] });
    }
  };
  route("client", "datacenter", links.access.gateway);
  route("client", "pod", links.access.gateway);
  route("router", "pod", links.datacenter.host);
  route("worker", "access", links.datacenter.gateway);
  route("pod", "access", links.pod.gateway);
  route("pod", "datacenter", links.pod.gateway);
  const paper = {
    prefix,
    runDir: join(RUN_STATE_DIR, prefix),
    namespaces: ns,
    allNamespaces: ns,
    links,
    segments: Object.values(links).map(linkSegment),
    routes,
    forwarding: ["router", "worker"],
    shaping,
    addresses: {
      client: links.access.host.addresses,
      node: links.datacenter.host.addresses,
      pod: links.pod.host.addresses,
    },
    worker: { uplink: links.datacenter.host.ifname, podVeth: links.pod.gateway.ifname },
  };
  const workers = options.workers ?? 1;
  if (!Number.isInteger(workers) || workers < 1 || workers > MAX_LAB_WORKERS) {
    throw new Error(`workers: ${String(workers)} is not accepted; accepted: a whole number from 1 to ${MAX_LAB_WORKERS}`);
  }
  if (workers === 1 && options.clientPod === undefined) return paper;
  return { ...paper, ...morePlan(paper, subnets, workers, options.clientPod) };
}

/**
 * The parts of a plan beyond the paper's lab: workers 2..n, each with a link to the router and a
 * receiver pod, and the client pod on worker 1; their segments and routes are added to the paper's.
 */
function morePlan(
  paper: Pick<TopologyPlan, "prefix" | "runDir" | "namespaces" | "allNamespaces" | "links" | "segments" | "routes" | "forwarding" | "addresses" | "worker">,
  subnets: Record<LinkName, Record<Family, Cidr>>,
  workers: number,
  clientPod: TopologyOptions["clientPod"],
): Pick<TopologyPlan, "allNamespaces" | "segments" | "routes" | "forwarding" | "looseReversePath" | "workers" | "clientPod"> {
  const { prefix, links } = paper;
  const taken = LINKS.flatMap((l) => FAMILIES.map((f) => ({ key: `subnets.${l}.${f}`, cidr: subnets[l][f] })));
  const block = (text: string, what: string): Cidr => {
    const cidr = parseCidr(text)!;
    const clash = taken.find((t) => cidrsOverlap(t.cidr, cidr));
    if (clash) throw new Error(`${clash.key}: "${clash.cidr.text}" overlaps the ${what} (${text}); accepted: a block disjoint from ${text}`);
    taken.push({ key: what, cidr });
    return cidr;
  };
  const pair = (texts: Readonly<Record<Family, string>>, what: string) =>
    Object.fromEntries(FAMILIES.map((f) => [f, block(texts[f], `${what} ${f}`)])) as Record<Family, Cidr>;
  const at = (cidrs: Record<Family, Cidr>, n: number) => Object.fromEntries(FAMILIES.map((f) => [f, nthAddress(cidrs[f], n)])) as Record<Family, string>;
  const allNamespaces: Record<string, string> = { ...paper.allNamespaces };
  const segments: SegmentPlan[] = [...paper.segments];
  const routes: RoutePlan[] = [...paper.routes];
  const forwarding = [...paper.forwarding];
  const plans: WorkerPlan[] = [
    {
      index: 1, role: "worker", podRole: "pod", uplink: paper.worker.uplink, podVeth: paper.worker.podVeth,
      node: paper.addresses.node, pod: paper.addresses.pod, podSubnets: links.pod.subnets,
    },
  ];
  /** Routes a namespace's way to a block through a neighbour's address. */
  const via = (role: string, to: Record<Family, Cidr>, next: Record<Family, string>) => {
    for (const family of FAMILIES) routes.push({ role, family, destination: to[family].text, via: next[family] });
  };
  const veth = (name: string, subnet: Record<Family, Cidr>, a: { role: string; ifname: string }, b: { role: string; ifname: string }, shaped = false): SegmentPlan => ({
    name,
    subnets: subnet,
    members: [
      { role: a.role, ifname: a.ifname, addresses: at(subnet, 1), shaped },
      { role: b.role, ifname: b.ifname, addresses: at(subnet, 2), shaped },
    ],
  });
  const uplinks = new Map<number, Record<Family, Cidr>>();
  for (let n = 2; n <= workers; n++) {
    const extra = extraSubnets(n);
    const uplinkNet = pair(extra.uplink, `uplink of worker ${n}`);
    uplinks.set(n, uplinkNet);
    const podNet = pair(extra.pod, `pod block of worker ${n}`);
    const role = `worker${n}`;
    const podRole = `pod${n}`;
    allNamespaces[role] = `${prefix}-${role}`;
    allNamespaces[podRole] = `${prefix}-${podRole}`;
    forwarding.push(role);
    // The router's side is address 1 (the gateway), the worker's address 2, as on the paper's datacenter link.
    // Capped as the paper's datacenter link is: the remote paths cross it.
    segments.push(veth(`uplink${n}`, uplinkNet, { role: "router", ifname: `${prefix}-rw${n}` }, { role, ifname: `${prefix}-up${n}` }, links.datacenter.shaped));
    segments.push(veth(`pod${n}`, podNet, { role, ifname: `${prefix}-lxc${n}` }, { role: podRole, ifname: `${prefix}-eth${n}` }));
    plans.push({ index: n, role, podRole, uplink: `${prefix}-up${n}`, podVeth: `${prefix}-lxc${n}`, node: at(uplinkNet, 2), pod: at(podNet, 2), podSubnets: podNet });
    // Worker n reaches the client's network and every other lab block through the router; its pod through it.
    const toRouter = at(uplinkNet, 1);
    via(role, links.access.subnets, toRouter);
    via(role, links.datacenter.subnets, toRouter);
    via(role, links.pod.subnets, toRouter);
    via("router", podNet, at(uplinkNet, 2));
    via("worker", podNet, links.datacenter.gateway.addresses);
    via("worker", uplinkNet, links.datacenter.gateway.addresses);
    via("pod", podNet, links.pod.gateway.addresses);
    via("client", uplinkNet, links.access.gateway.addresses);
    via("client", podNet, links.access.gateway.addresses);
    via(podRole, links.access.subnets, at(podNet, 1));
    via(podRole, links.datacenter.subnets, at(podNet, 1));
    via(podRole, links.pod.subnets, at(podNet, 1));
    via(podRole, uplinkNet, at(podNet, 1));
  }
  // Workers 2..n reach each other's pods through the router.
  for (const a of plans.slice(1)) {
    for (const b of plans.slice(1)) {
      if (a === b) continue;
      via(a.role, b.podSubnets, at(uplinks.get(a.index)!, 1));
      via(a.podRole, b.podSubnets, at(a.podSubnets, 1));
    }
  }
  let client: ClientPodPlan | undefined;
  if (clientPod) {
    const net = pair(CLIENT_POD_SUBNETS, "client pod's block");
    const role = "clientpod";
    allNamespaces[role] = `${prefix}-${role}`;
    segments.push(veth("clientpod", net, { role: "worker", ifname: `${prefix}-lxcc` }, { role, ifname: `${prefix}-ethc` }));
    const cgroup = podCgroupPath(paper.runDir, prefix, role);
    client = { role, subnets: net, hostVeth: `${prefix}-lxcc`, addresses: at(net, 2), cgroup, containerCgroup: containerCgroupPath(cgroup) };
    // The cluster CIDR that holds both pod blocks must hold no other block of the lab (the client's would then count as pods).
    for (const family of FAMILIES) {
      const cover = coveringCidr(links.pod.subnets[family], net[family]);
      const clash = taken.find((t) => t.cidr.family === family && t.cidr !== links.pod.subnets[family] && t.cidr !== net[family] && cidrsOverlap(t.cidr, cover));
      if (clash) throw new Error(`subnets.pod.${family}: "${links.pod.subnets[family].text}" and the client pod's block ${net[family].text} are covered only by ${cover.text}, which overlaps ${clash.key} (${clash.cidr.text}); accepted: a pod block beside ${net[family].text}`);
    }
    const gateway = at(net, 1);
    const services = Object.fromEntries(FAMILIES.map((f) => [f, parseCidr(clientPod.serviceSubnets[f])!])) as Record<Family, Cidr>;
    for (const to of [links.access.subnets, links.datacenter.subnets, links.pod.subnets, services, ...plans.slice(1).flatMap((w) => [w.podSubnets])]) {
      via(role, to, gateway);
    }
    // The way back to the client pod, from the router and from every other worker and pod.
    via("router", net, links.datacenter.host.addresses);
    via("pod", net, links.pod.gateway.addresses);
    for (const w of plans.slice(1)) {
      via(w.role, net, at(uplinks.get(w.index)!, 1));
      via(w.podRole, net, at(w.podSubnets, 1));
    }
  }
  return { allNamespaces, segments, routes, forwarding, ...(workers > 1 ? { looseReversePath: ["router"] } : {}), workers: plans, ...(client ? { clientPod: client } : {}) };
}

/** A lab link as the builder's segment: a veth pair whose ends both carry the cap when the link does. */
export function linkSegment(link: LinkPlan): SegmentPlan {
  return {
    name: link.name,
    subnets: link.subnets,
    members: [link.gateway, link.host].map((e) => ({ role: e.role, ifname: e.ifname, addresses: e.addresses, shaped: link.shaped })),
  };
}

/** The name of a bridged member's veth end on the bridge's side: at most 15 characters (IFNAMSIZ). */
export function bridgePortName(segment: Pick<SegmentPlan, "name">, member: Pick<SegmentMember, "role" | "peerName">): string {
  return member.peerName ?? `${segment.name.slice(0, 4)}-${member.role}`.slice(0, 15);
}

function resolveSubnets(
  given: NonNullable<TopologyOptions["subnets"]>,
): Record<LinkName, Record<Family, Cidr>> {
  for (const key of Object.keys(given)) {
    if (!(LINKS as readonly string[]).includes(key)) {
      throw new Error(`subnets.${key}: unknown link; accepted: ${LINKS.join(", ")}`);
    }
  }
  const out = {} as Record<LinkName, Record<Family, Cidr>>;
  const seen: { key: string; cidr: Cidr }[] = [];
  for (const link of LINKS) {
    const pair = {} as Record<Family, Cidr>;
    for (const family of FAMILIES) {
      const key = `subnets.${link}.${family}`;
      const text = given[link]?.[family] ?? DEFAULT_SUBNETS[link][family];
      const range = BENCHMARK_RANGES[family];
      const cidr = parseCidr(text);
      if (!cidr || cidr.family !== family) {
        throw new Error(`${key}: "${text}" is not an ${family === "ipv4" ? "IPv4" : "IPv6"} CIDR; accepted: a block inside ${range.text}`);
      }
      if (!cidrContains(range, nthAddress(cidr, 0)) || cidr.prefix < range.prefix) {
        throw new Error(`${key}: "${text}" is outside ${range.text}; accepted: a block inside ${range.text} (the lab sends to no other address)`);
      }
      const maxPrefix = family === "ipv4" ? 30 : 126;
      if (cidr.prefix > maxPrefix) {
        throw new Error(`${key}: "${text}" is too small for two hosts; accepted: a prefix length up to /${maxPrefix}`);
      }
      const clash = seen.find((s) => cidrsOverlap(s.cidr, cidr));
      if (clash) throw new Error(`${key}: "${text}" overlaps ${clash.key} (${clash.cidr.text}); accepted: disjoint blocks`);
      seen.push({ key, cidr });
      pair[family] = cidr;
    }
    out[link] = pair;
  }
  return out;
}

function resolveShaping(options: TopologyOptions): TopologyPlan["shaping"] {
  const mbps = options.linkMbps ?? 500;
  if (typeof mbps !== "number" || !Number.isFinite(mbps) || mbps < 0 || mbps > 100_000) {
    throw new Error(`linkMbps: ${String(mbps)} is not a rate; accepted: Mbit/s from 0 (no cap) to 100000`);
  }
  const shaper = options.shaper ?? "tbf";
  if (!(SHAPERS as readonly string[]).includes(shaper)) {
    throw new Error(`shaper: "${String(shaper)}" is unknown; accepted: ${SHAPERS.join(", ")}`);
  }
  return mbps === 0 ? null : { shaper, mbps };
}

// ---------------------------------------------------------------------------------------------
// Teardown on exit and on SIGINT/SIGTERM.

const active = new Map<string, LabTopology>();
const SIGNALS = ["SIGINT", "SIGTERM"] as const;

function destroyAllActive(): void {
  for (const topology of [...active.values()].reverse()) {
    try {
      topology.destroy();
    } catch (error) {
      process.stderr.write(`${(error as Error).message}\n`);
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  destroyAllActive();
  unhook();
  // With our handler gone, re-raising gives the default action (exit by that signal) unless the program has its own.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function hook(): void {
  if (active.size !== 1) return;
  process.on("exit", destroyAllActive);
  for (const s of SIGNALS) process.on(s, onSignal);
}

function unhook(): void {
  process.removeListener("exit", destroyAllActive);
  for (const s of SIGNALS) process.removeListener(s, onSignal);
}

// ---------------------------------------------------------------------------------------------

function randomRunId(): string {
  return Array.from({ length: 4 }, () => "abcdefghijklmnopqrstuvwxyz0123456789"[Math.floor(Math.random() * 36)]).join("");
}

/** A lab network that exists on this host until destroy(). */
export class LabTopology {
  private readonly teardownHooks: (() => void)[] = [];
  private destroyed = false;

  private constructor(readonly plan: TopologyPlan) {}

  get prefix(): string {
    return this.plan.prefix;
  }
  get addresses(): LabAddresses {
    return this.plan.addresses;
  }
  /** Directory of this run for mount points and state; removed on teardown. */
  get runDir(): string {
    return this.plan.runDir;
  }
  /** The namespace of a role: the lab's four, or any other of the plan. */
  namespace(role: Role | (string & {})): string {
    const ns = this.plan.allNamespaces[role];
    if (ns === undefined) throw new Error(`no namespace "${role}" in lab run ${this.prefix}; accepted: ${Object.keys(this.plan.allNamespaces).join(", ")}`);
    return ns;
  }

  /** Builds the lab's network. Everything created is removed again if a step fails. */
  static create(options: TopologyOptions = {}): LabTopology {
    return LabTopology.createFrom((prefix) => planTopology(prefix, options), options.runId);
  }

  /**
   * Builds the network a planner gives for the run's prefix: the lab's, or a larger one. The planner
   * runs once before anything is claimed, so bad input is refused with nothing created.
   */
  static createFrom(planner: (prefix: string) => TopologyPlan, runId?: string): LabTopology {
    const problem = labHostProblem();
    if (problem) throw new Error(problem);
    if (runId !== undefined && !/^[a-z0-9]{4}$/.test(runId)) {
      throw new Error(`runId: "${runId}" is not accepted; accepted: 4 characters [a-z0-9]`);
    }
    checkSegments(planner(`${RUN_MARKER}0000`));
    const taken = new Set(findRunPrefixes());
    let prefix = `${RUN_MARKER}${runId ?? randomRunId()}`;
    while (taken.has(prefix) || !claimPrefix(prefix)) {
      if (runId !== undefined) throw new Error(`runId: "${runId}" is in use by lab run ${prefix}; accepted: an unused id`);
      taken.add(prefix);
      prefix = `${RUN_MARKER}${randomRunId()}`;
    }
    let plan: TopologyPlan;
    try {
      plan = planner(prefix);
    } catch (error) {
      removeRun(prefix);
      throw error;
    }
    const topology = new LabTopology(plan);
    active.set(prefix, topology);
    hook();
    try {
      topology.build();
    } catch (error) {
      topology.destroy();
      throw error;
    }
    return topology;
  }

  private build(): void {
    const { plan } = this;
    // The client pod's cgroup first: nothing of the pod may start before it exists.
    if (plan.clientPod) createCgroups(cgroupMountOf(plan.runDir), [plan.clientPod.cgroup, plan.clientPod.containerCgroup]);
    for (const [role, ns] of Object.entries(plan.allNamespaces)) {
      run(["ip", "netns", "add", ns]);
      const sysctls = [
        // Addresses usable at once: no duplicate address detection, also for link-local addresses.
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
        ...(plan.forwarding.includes(role) ? ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] : []),
        // The effective filter of an interface is the larger of "all" and its own: 2 (loose) wins over 1 (strict).
        ...(plan.looseReversePath?.includes(role) ? ["net.ipv4.conf.all.rp_filter=2"] : []),
      ];
      run(inNetns(ns, ["sysctl", "-q", "-w", ...sysctls]));
      run(["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    for (const segment of plan.segments) this.buildSegment(segment);
    for (const t of plan.tunnels ?? []) this.buildTunnel(t);
    for (const r of plan.routes) {
      run(["ip", "-n", this.namespace(r.role), r.family === "ipv6" ? "-6" : "-4", "route", "add", r.destination, "via", r.via, ...(r.dev ? ["dev", r.dev, "onlink"] : [])]);
    }
  }

  private buildTunnel(t: TunnelPlan): void {
    const ns = this.namespace(t.role);
    run(["ip", "-n", ns, "link", "add", t.ifname, "address", t.mac, "type", "vxlan", "id", String(t.vni), "local", t.local, "dstport", String(t.port), "nolearning"]);
    run(["ip", "-n", ns, "link", "set", t.ifname, "up"]);
    for (const peer of t.peers) {
      run(["bridge", "-n", ns, "fdb", "append", peer.mac, "dev", t.ifname, "dst", peer.underlay]);
      for (const family of FAMILIES) run(["ip", "-n", ns, "neigh", "add", peer.gateways[family], "lladdr", peer.mac, "dev", t.ifname, "nud", "permanent"]);
    }
  }

  private buildSegment(segment: SegmentPlan): void {
    const configure = (ns: string, ifname: string, addresses: SegmentMember["addresses"], shaped: boolean) => {
      for (const family of FAMILIES) {
        const address = addresses[family];
        const subnet = segment.subnets[family];
        if (address === undefined || subnet === undefined) continue;
        run(["ip", "-n", ns, "addr", "add", `${address}/${subnet.prefix}`, "dev", ifname, ...(family === "ipv6" ? ["nodad"] : [])]);
      }
      run(["ip", "-n", ns, "link", "set", ifname, "up"]);
      if (shaped && this.plan.shaping) {
        for (const argv of shapingCommands(ifname, this.plan.shaping.shaper, this.plan.shaping.mbps)) run(["ip", "netns", "exec", ns, ...argv]);
      }
    };
    const { bridge } = segment;
    if (!bridge) {
      const [a, b] = segment.members as [SegmentMember, SegmentMember];
      const [nsA, nsB] = [this.namespace(a.role), this.namespace(b.role)];
      run(["ip", "-n", nsA, "link", "add", a.ifname, "type", "veth", "peer", "name", b.ifname, "netns", nsB]);
      configure(nsA, a.ifname, a.addresses, a.shaped);
      configure(nsB, b.ifname, b.addresses, b.shaped);
      return;
    }
    const nsBridge = this.namespace(bridge.role);
    // No multicast snooping: IPv6 neighbour discovery reaches every port without an MLD querier.
    run(["ip", "-n", nsBridge, "link", "add", bridge.ifname, "type", "bridge", "mcast_snooping", "0"]);
    configure(nsBridge, bridge.ifname, bridge.addresses, false);
    for (const m of segment.members) {
      const port = bridgePortName(segment, m);
      run(["ip", "-n", this.namespace(m.role), "link", "add", m.ifname, "type", "veth", "peer", "name", port, "netns", nsBridge]);
      run(["ip", "-n", nsBridge, "link", "set", port, "master", bridge.ifname, "up"]);
      configure(this.namespace(m.role), m.ifname, m.addresses, m.shaped);
    }
  }

  /** The argument array that runs argv in the role's namespace, and in its pod's cgroup where it has one (the client pod). */
  private inRole(role: Role | (string & {}), argv: readonly string[]): string[] {
    const inNs = inNetns(this.namespace(role), argv);
    const pod = this.plan.clientPod;
    return pod && role === pod.role ? inCgroup(pod.containerCgroup, inNs) : inNs;
  }

  /** Runs argv inside the role's namespace and returns its output and status. */
  exec(role: Role | (string & {}), argv: readonly string[], options?: CommandOptions): CommandResult {
    return exec(this.inRole(role, argv), options);
  }

  /** Runs argv inside the role's namespace; throws unless it exits 0. */
  run(role: Role | (string & {}), argv: readonly string[], options?: CommandOptions): string {
    return run(this.inRole(role, argv), options);
  }

  /** Starts a long-running program in the role's namespace. Teardown kills whatever still runs there. */
  spawn(role: Role | (string & {}), argv: readonly string[], options?: SpawnOptions): ChildProcess {
    return startProcess(this.inRole(role, argv), options);
  }

  /** Registers work to undo before the namespaces go (e.g. a dataplane's filters and mounts); runs last-in first-out. */
  onTeardown(hook: () => void): void {
    this.teardownHooks.push(hook);
  }

  /** Removes every object of the run. Safe to call twice. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const failures: string[] = [];
    for (const hook of this.teardownHooks.reverse()) {
      try {
        hook();
      } catch (error) {
        failures.push((error as Error).message);
      }
    }
    try {
      removeRun(this.prefix);
    } catch (error) {
      failures.push((error as Error).message);
    }
    active.delete(this.prefix);
    if (active.size === 0) unhook();
    if (failures.length > 0) throw new Error(failures.join("\n"));
  }
}

/** Refuses a plan the builder cannot build: a segment without two members, or more than two without a bridge. */
function checkSegments(plan: TopologyPlan): void {
  for (const s of plan.segments) {
    if (s.members.length < 2 && !s.bridge) throw new Error(`segment ${s.name}: ${s.members.length} member(s); accepted: two, or a bridge`);
    if (s.members.length > 2 && !s.bridge) throw new Error(`segment ${s.name}: ${s.members.length} members and no bridge; accepted: a bridge for more than two`);
    for (const role of [...s.members.map((m) => m.role), ...(s.bridge ? [s.bridge.role] : [])]) {
      if (plan.allNamespaces[role] === undefined) throw new Error(`segment ${s.name}: no namespace "${role}" in the plan`);
    }
  }
}

export function createTopology(options: TopologyOptions = {}): LabTopology {
  return LabTopology.create(options);
}
