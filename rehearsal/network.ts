// The network of a rehearsal of the cloud path: the stack's own hosts and networks as namespaces on
// this machine, addressed by the stack's own address plan (infra/openstack/address-plan.ts), so the
// plan's outputs are valid as they are:
//
//   operator --public-- bastion            (the bastion's floating address, on a segment of its own)
//   management: bastion, client, router, master, worker   (a bridge)
//   client:     client, router                            (tb-client on both, capped)
//   datacenter: router, master, worker                    (a bridge; tb-dc, capped on router and worker)
//   pods:       worker's cni0 bridge, the receiver pod, the scaled Services' backend pod
//
// The router forwards between client and datacenter networks with the routes the subnets hand out;
// nothing has a default route. Pure: lab/topology.ts builds it.
import { join } from "node:path";
import { nthAddress, parseCidr, type Cidr, type Family } from "../scenario/cidr.js";
import type { Scenario } from "../scenario/schema.js";
import { DATA_NIC_NAMES, deliveredRoutes, hostAddress, labPlan, LAB_NETWORKS, type LabPlan } from "../infra/openstack/address-plan.js";
import { HOST_ROLES, type HostRole, type LabNetwork } from "../infra/hosts.js";
import { RUN_STATE_DIR } from "../lab/run-registry.js";
import type { LinkEnd, LinkPlan, RoutePlan, SegmentMember, SegmentPlan, TopologyPlan } from "../lab/topology.js";

function cidr(text: string): Cidr {
  const c = parseCidr(text);
  if (!c) throw new Error(`"${text}" is not a CIDR`);
  return c;
}

/** The namespaces of a rehearsal besides the stack's five hosts. */
export const REHEARSAL_ROLES = [...HOST_ROLES, "operator", "pod", "backend", "fabric"] as const;
export type RehearsalRole = (typeof REHEARSAL_ROLES)[number];

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
/** Pod addresses on the worker's pod network: the bridge (the pods' gateway), then each pod. */
export const POD_NUMBERS = { gateway: 1, pod: 2, backend: 3 } as const;

/** The management NIC's name in the guests (cloud-init keeps the kernel's; nothing refers to it). */
export const MANAGEMENT_NIC = "ens3";
export const PUBLIC_NIC = "public";
/** The worker's pod bridge and the host side of each pod's veth, as a CNI names them. */
export const POD_BRIDGE = "cni0";
export const POD_VETH = { pod: "lxc-receiver", backend: "lxc-backend" } as const;

const FAMILIES: readonly Family[] = ["ipv4", "ipv6"];

export interface RehearsalAddresses {
  /** The bastion's floating address, where the operator connects. */
  readonly floating: string;
  readonly operator: string;
  /** Every host's management address (IPv4), as the stack's outputs name them. */
  readonly management: Readonly<Record<HostRole, string>>;
  /** Pod addresses per family. */
  readonly pods: Readonly<Record<"pod" | "backend", Readonly<Record<Family, string>>>>;
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

function addressesOf(plan: LabPlan, role: HostRole, network: LabNetwork): Record<Family, string> {
  const out = {} as Record<Family, string>;
  for (const family of FAMILIES) {
    const a = hostAddress(plan, role, network, family);
    if (!a) throw new Error(`the address plan gives the ${role} no ${family} address on the ${network} network`);
    out[family] = a;
  }
  return out;
}

/** Addresses the rehearsal adds to the stack's plan: the public segment and the worker's pods. */
export function rehearsalAddresses(s: Pick<Scenario, "families" | "network" | "openstack" | "kubernetes">): RehearsalAddresses {
  const plan = labPlan(s);
  const management = {} as Record<HostRole, string>;
  for (const role of HOST_ROLES) management[role] = addressesOf(plan, role, "management").ipv4;
  const pods = cidrs(WORKER_POD_NETWORK);
  const podAt = (n: number) => ({ ipv4: nthAddress(pods.ipv4, n), ipv6: nthAddress(pods.ipv6, n) });
  return {
    floating: nthAddress(cidr(PUBLIC_SUBNET), FLOATING_NUMBER),
    operator: OPERATOR_ADDRESS,
    management,
    pods: { pod: podAt(POD_NUMBERS.pod), backend: podAt(POD_NUMBERS.backend) },
  };
}

function cidrs(pair: Readonly<Record<Family, string>>): Record<Family, Cidr> {
  return { ipv4: cidr(pair.ipv4), ipv6: cidr(pair.ipv6) };
}

/** Pure: the rehearsal's namespaces, segments and routes for run `prefix`, from the stack's scenario. */
export function planRehearsalNetwork(prefix: string, s: Pick<Scenario, "families" | "network" | "openstack" | "kubernetes" | "linkMbps">): TopologyPlan {
  if (!s.families.includes("ipv4") || !s.families.includes("ipv6")) {
    throw new Error(`testbed:families ${JSON.stringify(s.families)}: the rehearsal runs dual-stack; accepted: ["ipv4","ipv6"]`);
  }
  const plan = labPlan(s);
  const extra = rehearsalAddresses(s);
  const allNamespaces = Object.fromEntries(REHEARSAL_ROLES.map((r) => [r, `${prefix}-${r}`])) as Record<RehearsalRole, string>;

  const segments: SegmentPlan[] = [];
  const bridgeFor: Partial<Record<LabNetwork, string>> = { management: "br-mgmt", datacenter: "br-dc" };
  for (const network of LAB_NETWORKS) {
    const members: SegmentMember[] = plan.ports
      .filter((p) => p.network === network)
      .map((p) => ({
        role: p.role,
        ifname: p.interfaceName ?? MANAGEMENT_NIC,
        addresses: addressesOf(plan, p.role, network),
        shaped: p.measured,
        peerName: `${network.slice(0, 2)}-${p.role}`,
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
  const podNetwork = cidrs(WORKER_POD_NETWORK);
  const podGateway = { ipv4: nthAddress(podNetwork.ipv4, POD_NUMBERS.gateway), ipv6: nthAddress(podNetwork.ipv6, POD_NUMBERS.gateway) };
  segments.push({
    name: "pods",
    subnets: podNetwork,
    bridge: { role: "worker", ifname: POD_BRIDGE, addresses: podGateway },
    members: (["pod", "backend"] as const).map((role) => ({ role, ifname: "eth0", addresses: extra.pods[role], shaped: false, peerName: POD_VETH[role] })),
  });

  // The routes the data subnets hand out (client <-> datacenter through the router); no default
  // route. The router receives them too, for networks it is on: there the connected route wins (the
  // guest's DHCP routes have a higher metric), so they are left out.
  const routes: RoutePlan[] = [];
  const connected = (role: string, destination: string) =>
    segments.some((seg) => seg.members.some((m) => m.role === role) && Object.values(seg.subnets).some((c) => c?.text === destination));
  for (const role of HOST_ROLES) {
    for (const r of deliveredRoutes(plan, role)) {
      if (r.destination !== "default" && !connected(role, r.destination)) routes.push({ role, family: r.family, destination: r.destination, via: r.via });
    }
  }
  // Pods reach the client and datacenter networks through their gateway on the worker.
  for (const role of ["pod", "backend"] as const) {
    for (const family of FAMILIES) {
      for (const network of ["client", "datacenter"] as const) {
        routes.push({ role, family, destination: networkSubnets(plan, network)[family].text, via: podGateway[family] });
      }
    }
  }

  const end = (role: "client" | "router" | "worker", network: "client" | "datacenter"): LinkEnd => ({
    role,
    ifname: DATA_NIC_NAMES[network],
    addresses: addressesOf(plan, role, network),
  });
  const shaped = s.linkMbps > 0;
  const links: Record<"access" | "datacenter" | "pod", LinkPlan> = {
    access: { name: "access", subnets: networkSubnets(plan, "client"), gateway: end("router", "client"), host: end("client", "client"), shaped },
    datacenter: { name: "datacenter", subnets: networkSubnets(plan, "datacenter"), gateway: end("router", "datacenter"), host: end("worker", "datacenter"), shaped },
    pod: { name: "pod", subnets: podNetwork, gateway: { role: "worker", ifname: POD_BRIDGE, addresses: podGateway }, host: { role: "pod", ifname: "eth0", addresses: extra.pods.pod }, shaped: false },
  };
  return {
    prefix,
    runDir: join(RUN_STATE_DIR, prefix),
    namespaces: { client: allNamespaces.client, router: allNamespaces.router, worker: allNamespaces.worker, pod: allNamespaces.pod },
    allNamespaces,
    links,
    segments,
    routes,
    forwarding: ["router", "worker"],
    shaping: shaped ? { shaper: "tbf", mbps: s.linkMbps } : null,
    addresses: { client: links.access.host.addresses, node: links.datacenter.host.addresses, pod: extra.pods.pod },
    worker: { uplink: DATA_NIC_NAMES.datacenter, podVeth: POD_VETH.pod },
  };
}
