// The rehearsal's network: the stack's hosts as namespaces on the stack's own networks, addressed
// by the stack's own address plan (infra/openstack/address-plan.ts), so the plan's outputs are valid
// as they are:
//
//   operator --public-- bastion            (the bastion's floating address, on a segment of its own)
//   management: bastion, client, router, master, worker[, worker-2]   (a bridge)
//   client:     client, router                                      (tb-client on both, capped)
//   datacenter: router, master, worker[, worker-2]                  (a bridge; tb-dc, capped on router and workers)
//   pods:       each worker's cni0 bridge and its pod sandboxes (rehearsalPods): on worker 1 the
//               paper's receiver pod, the scaled Services' backend pod and the clusterip path's
//               client pod; on worker 2 the receivers of the remote paths
//
// The router forwards between client and datacenter networks with the routes the subnets hand out;
// nothing has a default route. With a second worker each worker routes the other's pod block to it
// over the datacenter network: natively (testbed:podRouting native), or through a VXLAN device
// named as Cilium's (testbed:podRouting tunnel, `testbed rehearse --pod-routing tunnel`). Pure:
// lab/topology.ts builds it.
import { join } from "node:path";
import { nthAddress, parseCidr, type Cidr, type Family } from "../scenario/cidr.js";
import type { Scenario } from "../scenario/schema.js";
import { DATA_NIC_NAMES, deliveredRoutes, hostAddress, labPlan, LAB_NETWORKS, type LabPlan } from "../infra/openstack/address-plan.js";
import { workerHostName, type HostName, type LabNetwork } from "../infra/hosts.js";
import { containerCgroupPath, podCgroupPath } from "../lab/pod-cgroups.js";
import { RUN_STATE_DIR } from "../lab/run-registry.js";
import type { LinkEnd, LinkPlan, RoutePlan, SegmentMember, SegmentPlan, TopologyPlan, TunnelPlan } from "../lab/topology.js";
import { PATHS, type ServicePath } from "../scenario/paths.js";
import { podRouting, scenarioPaths } from "../scenario/schema.js";
import { backendDeployment } from "../workloads/manifests.js";
import { PATH_CLIENT_NAME, PATH_RECEIVER_NAMES, RECEIVER_SERVICE_NAME } from "../workloads/service-set.js";

function cidr(text: string): Cidr {
  const c = parseCidr(text);
  if (!c) throw new Error(`"${text}" is not a CIDR`);
  return c;
}

/** The namespaces of a rehearsal besides the stack's hosts and the pods. */
export const REHEARSAL_ROLES = ["operator", "fabric"] as const;

/** Where the operator (the campaign, the Pulumi CLI) reaches the bastion's floating address. */
export const PUBLIC_SUBNET = "198.18.3.0/24";
export const OPERATOR_NUMBER = 1;
/** The operator's address: the stacks' testbed:adminCidr is its /32. */
export const OPERATOR_ADDRESS = nthAddress(cidr(PUBLIC_SUBNET), OPERATOR_NUMBER);
/** The floating address's last number, as the bastion's on every other network. */
export const FLOATING_NUMBER = 10;

/**
 * The cluster's pod blocks (testbed:kubernetes.podSubnets of the rehearsal's stacks) and the worker's
 * share of them, where its pods live: the benchmarking ranges, like every other address here.
 */
export const POD_SUBNETS = { ipv4: "198.18.64.0/18", ipv6: "2001:2:0:4000::/56" } as const;
export const WORKER_POD_NETWORK = { ipv4: "198.18.64.0/24", ipv6: "2001:2:0:4000::/64" } as const;
/** Worker n's share of the pod blocks, as a CNI's per-node pod CIDR (worker 1's is WORKER_POD_NETWORK). */
export function workerPodNetwork(n: number): Record<Family, string> {
  return { ipv4: `198.18.${63 + n}.0/24`, ipv6: `2001:2:0:${(0x3fff + n).toString(16)}::/64` };
}
/** The bridge's address on each worker's pod network: the pods' gateway. */
export const POD_GATEWAY_NUMBER = 1;

/**
 * testbed:podRouting tunnel: each worker's VXLAN device as Cilium names it, on Cilium's VXLAN port
 * (the stack's security rules open UDP 8472 between the nodes for it). The VNI is the one Cilium
 * gives the world; the MACs are the rehearsal's own.
 */
export const TUNNEL_DEVICE = "cilium_vxlan";
export const TUNNEL_PORT = 8472;
const TUNNEL_VNI = 2;
function tunnelMac(host: HostName): string {
  const n = host === "worker" ? 1 : Number(host.replace(/^worker-/, ""));
  return `02:74:62:00:00:${n.toString(16).padStart(2, "0")}`;
}

/** A pod sandbox the rehearsal prepares: a network namespace on its node's pod bridge, for one Deployment's pod. */
export interface PodSandboxPlan {
  /** Its namespace's role in the topology. */
  readonly role: string;
  /** The Deployment whose pod runs in it. */
  readonly deployment: string;
  /** The host (node) it is on. */
  readonly host: HostName;
  /** Its address number on the node's pod network. */
  readonly number: number;
  /** The host side of its veth, as a CNI names it. */
  readonly veth: string;
}

/**
 * Pure: the pod sandboxes of a stack serving these paths, each on the worker the path puts its pod on
 * (scenario/paths.ts): the paper's receiver and the backend on worker 1, each further path's
 * receiver on its endpoint worker, a pod client on its worker.
 */
export function rehearsalPods(s: Pick<Scenario, "workloads"> & Partial<Pick<Scenario, "paths">>): PodSandboxPlan[] {
  const pods: PodSandboxPlan[] = [
    { role: "pod", deployment: RECEIVER_SERVICE_NAME, host: "worker", number: 2, veth: "lxc-receiver" },
    { role: "backend", deployment: backendDeployment(s).metadata!.name!, host: "worker", number: 3, veth: "lxc-backend" },
  ];
  const next = (host: HostName) => Math.max(POD_GATEWAY_NUMBER, ...pods.filter((p) => p.host === host).map((p) => p.number)) + 1;
  const add = (role: string, deployment: string, worker: number, veth: string) => {
    const host = workerHostName(worker);
    if (!pods.some((p) => p.deployment === deployment)) pods.push({ role, deployment, host, number: next(host), veth });
  };
  for (const path of scenarioPaths(s).filter((p): p is Exclude<ServicePath, "nodeport-local"> => p !== "nodeport-local")) {
    const p = PATHS[path];
    add(`pod-${path.split("-").pop()}`, PATH_RECEIVER_NAMES[path], p.endpointWorker, `lxc-${path.split("-").pop()}`);
    if (p.client.kind === "pod") add("clientpod", PATH_CLIENT_NAME, p.client.worker, "lxc-client");
  }
  return pods;
}

/** The management NIC's name in the guests (cloud-init keeps the kernel's; nothing refers to it). */
export const MANAGEMENT_NIC = "ens3";
export const PUBLIC_NIC = "public";
/** Each worker's pod bridge, as a CNI names it. */
export const POD_BRIDGE = "cni0";

const FAMILIES: readonly Family[] = ["ipv4", "ipv6"];

export interface RehearsalAddresses {
  /** The bastion's floating address, where the operator connects. */
  readonly floating: string;
  readonly operator: string;
  /** Every host's management address (IPv4), as the stack's outputs name them. */
  readonly management: Readonly<Partial<Record<HostName, string>>> & Readonly<Record<"bastion" | "client" | "router" | "master" | "worker", string>>;
  /** Pod addresses per family, by the sandbox's role (rehearsalPods). */
  readonly pods: Readonly<Record<string, Readonly<Record<Family, string>>>>;
}

/** Both families of one network of the address plan; the rehearsal runs dual-stack only. */
function networkSubnets(plan: LabPlan, network: LabNetwork): Record<Family, Cidr> {
  const pair = {} as Record<Family, Cidr>;
  for (const family of FAMILIES) {
    const subnet = plan.subnets.find((s) => s.network === network && s.family === family);
    if (!subnet) throw new Error(`the address plan has no ${family} subnet on the ${network} network; the rehearsal needs testbed:families ipv4 and ipv6`);
    pair[family] = cidr(subnet.cidr);
  }
  return pair;
}

function addressesOf(plan: LabPlan, role: HostName, network: LabNetwork): Record<Family, string> {
  const out = {} as Record<Family, string>;
  for (const family of FAMILIES) {
    const a = hostAddress(plan, role, network, family);
    if (!a) throw new Error(`the address plan gives the ${role} no ${family} address on the ${network} network`);
    out[family] = a;
  }
  return out;
}

type NetworkScenario = Pick<Scenario, "families" | "network" | "openstack" | "kubernetes" | "workloads"> & Partial<Pick<Scenario, "workers" | "podRouting" | "paths">>;

/** The pod network of a worker host (worker, worker-2, ...). */
function podNetworkOf(host: HostName): Record<Family, Cidr> {
  const n = host === "worker" ? 1 : Number(host.replace(/^worker-/, ""));
  return cidrs(n === 1 ? WORKER_POD_NETWORK : workerPodNetwork(n));
}

/** Addresses the rehearsal adds to the stack's plan: the public segment and the workers' pods. */
export function rehearsalAddresses(s: NetworkScenario): RehearsalAddresses {
  const plan = labPlan(s);
  const management = {} as Record<HostName, string>;
  for (const host of plan.hosts) management[host.name] = addressesOf(plan, host.name, "management").ipv4;
  const pods: Record<string, Record<Family, string>> = {};
  for (const p of rehearsalPods(s)) {
    const net = podNetworkOf(p.host);
    pods[p.role] = { ipv4: nthAddress(net.ipv4, p.number), ipv6: nthAddress(net.ipv6, p.number) };
  }
  return { floating: nthAddress(cidr(PUBLIC_SUBNET), FLOATING_NUMBER), operator: OPERATOR_ADDRESS, management: management as RehearsalAddresses["management"], pods };
}

function cidrs(pair: Readonly<Record<Family, string>>): Record<Family, Cidr> {
  return { ipv4: cidr(pair.ipv4), ipv6: cidr(pair.ipv6) };
}

/** Pure: the rehearsal's namespaces, segments and routes for run `prefix`, from the stack's scenario. */
export function planRehearsalNetwork(prefix: string, s: NetworkScenario & Pick<Scenario, "linkMbps">): TopologyPlan {
  if (!s.families.includes("ipv4") || !s.families.includes("ipv6")) {
    throw new Error(`testbed:families ${JSON.stringify(s.families)}: the rehearsal runs dual-stack; accepted: ["ipv4","ipv6"]`);
  }
  const plan = labPlan(s);
  const extra = rehearsalAddresses(s);
  const pods = rehearsalPods(s);
  const roles = [...plan.hosts.map((h) => h.name as string), ...REHEARSAL_ROLES, ...pods.map((p) => p.role)];
  const allNamespaces = Object.fromEntries(roles.map((r) => [r, `${prefix}-${r}`])) as Record<string, string>;
  const workers = plan.hosts.filter((h) => h.role === "worker").map((h) => h.name);

  const segments: SegmentPlan[] = [];
  const bridgeFor: Partial<Record<LabNetwork, string>> = { management: "br-mgmt", datacenter: "br-dc" };
  for (const network of LAB_NETWORKS) {
    const members: SegmentMember[] = plan.ports
      .filter((p) => p.network === network)
      .map((p) => ({
        role: p.host,
        ifname: p.interfaceName ?? MANAGEMENT_NIC,
        addresses: addressesOf(plan, p.host, network),
        shaped: p.measured,
        peerName: `${network.slice(0, 2)}-${p.host}`,
      }));
    const bridge = members.length > 2 ? { role: "fabric", ifname: bridgeFor[network] ?? `br-${network}`.slice(0, 15), addresses: {} } : undefined;
    segments.push({ name: network, subnets: networkSubnets(plan, network), members, ...(bridge ? { bridge } : {}) });
  }
  segments.push({
    name: "public",
    subnets: { ipv4: cidr(PUBLIC_SUBNET) },
    members: [
      { role: "operator", ifname: PUBLIC_NIC, addresses: { ipv4: extra.operator }, shaped: false },
      { role: "bastion", ifname: PUBLIC_NIC, addresses: { ipv4: extra.floating }, shaped: false },
    ],
  });
  const gatewayOf = (host: HostName) => {
    const net = podNetworkOf(host);
    return { ipv4: nthAddress(net.ipv4, POD_GATEWAY_NUMBER), ipv6: nthAddress(net.ipv6, POD_GATEWAY_NUMBER) };
  };
  for (const host of workers) {
    const members = pods.filter((p) => p.host === host).map((p) => ({ role: p.role, ifname: "eth0", addresses: extra.pods[p.role]!, shaped: false, peerName: p.veth }));
    if (members.length === 0) continue;
    segments.push({ name: host === "worker" ? "pods" : `pods-${host}`, subnets: podNetworkOf(host), bridge: { role: host, ifname: POD_BRIDGE, addresses: gatewayOf(host) }, members });
  }

  // The routes the data subnets hand out (client <-> datacenter through the router); no default
  // route. The router receives them too, for networks it is on: there the connected route wins (the
  // guest's DHCP routes have a higher metric), so they are left out.
  const routes: RoutePlan[] = [];
  const connected = (role: string, destination: string) =>
    segments.some((seg) => seg.members.some((m) => m.role === role) && Object.values(seg.subnets).some((c) => c?.text === destination));
  for (const host of plan.hosts) {
    for (const r of deliveredRoutes(plan, host.name)) {
      if (r.destination !== "default" && !connected(host.name, r.destination)) routes.push({ role: host.name, family: r.family, destination: r.destination, via: r.via });
    }
  }
  // Pods reach the client and datacenter networks through their gateway on their node, and with more
  // than one worker the other workers' pods and (from the client pod) the ClusterIPs, as a pod's default route takes them.
  for (const p of pods) {
    const destinations: Record<Family, string>[] = [
      { ipv4: networkSubnets(plan, "client").ipv4.text, ipv6: networkSubnets(plan, "client").ipv6.text },
      { ipv4: networkSubnets(plan, "datacenter").ipv4.text, ipv6: networkSubnets(plan, "datacenter").ipv6.text },
      ...(workers.length > 1 ? [POD_SUBNETS, s.kubernetes.serviceSubnets] : []),
    ];
    for (const to of destinations) for (const family of FAMILIES) routes.push({ role: p.role, family, destination: to[family], via: gatewayOf(p.host)[family] });
  }
  // Each worker reaches every other worker's pod block: natively through that worker's datacenter
  // address, or through the tunnel to that worker's pod gateway.
  const tunnel = podRouting(s) === "tunnel" && workers.length > 1;
  for (const a of workers) {
    for (const b of workers) {
      if (a === b) continue;
      const via = tunnel ? gatewayOf(b) : addressesOf(plan, b, "datacenter");
      for (const family of FAMILIES) routes.push({ role: a, family, destination: podNetworkOf(b)[family].text, via: via[family], ...(tunnel ? { dev: TUNNEL_DEVICE } : {}) });
    }
  }
  const tunnels: TunnelPlan[] = tunnel
    ? workers.map((a) => ({
        role: a,
        ifname: TUNNEL_DEVICE,
        vni: TUNNEL_VNI,
        port: TUNNEL_PORT,
        local: addressesOf(plan, a, "datacenter").ipv4,
        mac: tunnelMac(a),
        peers: workers.filter((b) => b !== a).map((b) => ({ mac: tunnelMac(b), underlay: addressesOf(plan, b, "datacenter").ipv4, gateways: gatewayOf(b) })),
      }))
    : [];

  const end = (role: "client" | "router" | "worker", network: "client" | "datacenter"): LinkEnd => ({
    role,
    ifname: DATA_NIC_NAMES[network],
    addresses: addressesOf(plan, role, network),
  });
  const shaped = s.linkMbps > 0;
  const podNetwork = podNetworkOf("worker");
  const podGateway = gatewayOf("worker");
  const links: Record<"access" | "datacenter" | "pod", LinkPlan> = {
    access: { name: "access", subnets: networkSubnets(plan, "client"), gateway: end("router", "client"), host: end("client", "client"), shaped },
    datacenter: { name: "datacenter", subnets: networkSubnets(plan, "datacenter"), gateway: end("router", "datacenter"), host: end("worker", "datacenter"), shaped },
    pod: { name: "pod", subnets: podNetwork, gateway: { role: "worker", ifname: POD_BRIDGE, addresses: podGateway }, host: { role: "pod", ifname: "eth0", addresses: extra.pods.pod! }, shaped: false },
  };
  const runDir = join(RUN_STATE_DIR, prefix);
  // The client pod, where a path has one: its processes run in its container's cgroup, below the pod's (the eBPF model's socket load balancer hooks the pod's).
  const client = pods.find((p) => p.deployment === PATH_CLIENT_NAME);
  if (client && client.host !== "worker") throw new Error(`the client pod runs on ${client.host}; the rehearsal's dataplane runs on worker 1 only`);
  return {
    prefix,
    runDir,
    namespaces: { client: allNamespaces.client!, router: allNamespaces.router!, worker: allNamespaces.worker!, pod: allNamespaces.pod! },
    allNamespaces,
    links,
    segments,
    routes,
    forwarding: ["router", ...workers],
    ...(tunnels.length > 0 ? { tunnels } : {}),
    shaping: shaped ? { shaper: "tbf", mbps: s.linkMbps } : null,
    addresses: { client: links.access.host.addresses, node: links.datacenter.host.addresses, pod: extra.pods.pod! },
    worker: { uplink: DATA_NIC_NAMES.datacenter, podVeth: rehearsalPods(s)[0]!.veth },
    ...(client
      ? { clientPod: { role: client.role, subnets: podNetwork, hostVeth: client.veth, addresses: extra.pods[client.role]!, cgroup: podCgroupPath(runDir, prefix, client.role), containerCgroup: containerCgroupPath(podCgroupPath(runDir, prefix, client.role)) } }
      : {}),
  };
}
