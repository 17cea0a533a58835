// Every address of the OpenStack lab, decided from the scenario before any resource exists: subnets,
// each host's fixed IPs, the router VM's next hops and the routes each host receives. Pure, so the
// plan, the tests and a kernel check all read the same numbers.
//
// Why fixed addresses: the routes on both data networks name the router VM as next hop, so its
// addresses must be known when the subnets are declared; fixing every host the same way makes the
// whole lab readable before deployment (kubeadm, D-ITG and the plan all see final addresses).
//
// IPv6 is static (no ipv6_address_mode, no DHCPv6): nova hands a static subnet's address and host
// routes to the guest in network_data.json, and cloud-init writes them into netplan. SLAAC or DHCPv6
// would leave routes to router advertisements (cloud-init ignores a dynamic subnet's routes), which
// means a radvd whose absence silently drops IPv6 routing. One consequence: the kernel refuses an
// IPv6 route whose gateway is a local address ("Gateway can not be a local address"), and nova gives
// a subnet's host routes to every port on it, the router VM's own included. So the router VM's IPv6
// address on each data network is not a Neutron fixed IP but a reserved address it is allowed to use
// (an allowed address pair), configured by its cloud-init. IPv4 needs no such care: its routes come
// by DHCP (option 121, metric 100) and the kernel accepts a local IPv4 gateway, which the connected
// route (metric 0) then outranks.
import { cidrSize, nthAddress, parseCidr, type Cidr, type Family } from "../../scenario/cidr.js";
import { CONFIG_NAMESPACE, podRouting, type Scenario } from "../../scenario/schema.js";
import { labHosts, type HostName, type HostRole, type LabHost, type LabNetwork } from "../hosts.js";

export const LAB_NETWORKS: readonly LabNetwork[] = ["management", "client", "datacenter"];

/**
 * Networks of each host in NIC order (the order of the server's `networks`). Management comes first
 * everywhere: it is the NIC cloud-init falls back to and the default route.
 */
export const ATTACHMENTS: Readonly<Record<HostRole, readonly LabNetwork[]>> = {
  bastion: ["management"],
  client: ["management", "client"],
  router: ["management", "client", "datacenter"],
  master: ["management", "datacenter"],
  worker: ["management", "datacenter"],
};

/**
 * The names the guests give their data NICs. The kernel names NICs by PCI slot (ens4 on libvirt's
 * i440fx machine type, enp2s0 on q35), so a name read off one cloud is wrong on another; each host
 * matches its data NICs by the MAC address Neutron gave the port and renames them to these at first
 * boot (cloud-init.ts). Cilium's `devices`, the router's addresses and the link cap use them. The
 * management NIC keeps the name cloud-init gives it: nothing refers to it by name.
 */
export const DATA_NIC_NAMES: Readonly<Record<Exclude<LabNetwork, "management">, string>> = { client: "tb-client", datacenter: "tb-dc" };

/**
 * A host's address on every network ends in the same number: the bastion is .10 and ::10 everywhere
 * (IPv6 offsets are the same digits read as hex, so both families read alike).
 */
export const HOST_NUMBER: Readonly<Record<HostRole, number>> = { bastion: 10, client: 11, router: 12, master: 13, worker: 14 };

/**
 * The number of a host: its role's, and n for the n-th worker from the second on. Those sit below
 * the bastion's 10, above the management gateway's 1 and below the DHCP pool, so more workers move
 * neither a host of the paper's lab nor a pool (testbed:workers stops at 9 for this reason).
 */
export function hostNumber(host: LabHost): number {
  return host.role === "worker" && host.worker !== undefined && host.worker > 1 ? host.worker : HOST_NUMBER[host.role];
}
/** The Neutron router's address on the management subnet (the hosts' default gateway). */
export const MANAGEMENT_GATEWAY_NUMBER = 1;
/** Addresses below this number are never handed out by Neutron (DHCP ports, anything unplanned). */
export const FIRST_POOL_NUMBER = 16;
/**
 * The ports on the measured path client -> router -> worker: they carry the link cap. Every worker's
 * data-center port is one (matched by role): the remote paths cross from worker 1 to the others.
 */
export const MEASURED_PORTS: readonly { readonly role: HostRole; readonly network: LabNetwork }[] = [
  { role: "client", network: "client" },
  { role: "router", network: "client" },
  { role: "router", network: "datacenter" },
  { role: "worker", network: "datacenter" },
];

export interface HostRoute {
  readonly destinationCidr: string;
  readonly nextHop: string;
}

export interface SubnetPlan {
  readonly network: LabNetwork;
  readonly family: Family;
  readonly cidr: string;
  /** Undefined: the subnet has no gateway (Neutron `noGateway`), so it installs no default route. */
  readonly gatewayIp?: string;
  readonly enableDhcp: boolean;
  readonly allocationPool: { readonly start: string; readonly end: string };
  readonly hostRoutes: readonly HostRoute[];
  readonly dnsNameservers: readonly string[];
}

export interface PortAddress {
  readonly family: Family;
  readonly address: string;
}

export interface PortPlan {
  /** The host the port belongs to (its role's name, or worker-N). */
  readonly host: HostName;
  readonly role: HostRole;
  readonly network: LabNetwork;
  /** Position among the host's NICs (0 = management). */
  readonly nic: number;
  /** The guest's stable name of a data NIC (DATA_NIC_NAMES); undefined for the management NIC. */
  readonly interfaceName?: string;
  /** Neutron fixed IPs (set with the port's fixedIps). */
  readonly fixedIps: readonly PortAddress[];
  /** Addresses the guest configures itself (the router VM's IPv6 next hops); also address pairs. */
  readonly guestAddresses: readonly PortAddress[];
  /** Foreign addresses the port may send from and receive for (Neutron allowed address pairs). */
  readonly allowedAddressPairs: readonly string[];
  /** On the measured path: gets the QoS policy. */
  readonly measured: boolean;
}

export interface LabPlan {
  /** Every host, in the order of their resources (HOST_ROLES, the workers after worker 1 last). */
  readonly hosts: readonly LabHost[];
  readonly subnets: readonly SubnetPlan[];
  readonly ports: readonly PortPlan[];
}

/**
 * Families that have a subnet on a network. IPv4 is always there: the floating IP, package mirrors
 * and the metadata service are IPv4, and Neutron applies security groups only to ports with an
 * address, which the router VM's data ports then always have. IPv6 follows testbed:families.
 */
export function subnetFamilies(s: Pick<Scenario, "families">): Family[] {
  return s.families.includes("ipv6") ? ["ipv4", "ipv6"] : ["ipv4"];
}

/** A lab block; the schema has already refused blocks too small for it (MIN_BLOCK_ADDRESSES). */
function block(s: Pick<Scenario, "network">, network: LabNetwork, family: Family): Cidr {
  const text = s.network[network][family];
  const cidr = parseCidr(text);
  if (!cidr || cidr.family !== family) throw new Error(`${CONFIG_NAMESPACE}:network.${network}.${family} "${text}" is not an ${family} CIDR`);
  return cidr;
}

/** The n-th address of a block, n written in decimal digits that IPv6 reads as hex (12 -> ::12). */
export function numberedAddress(cidr: Cidr, n: number): string {
  return nthAddress(cidr, cidr.family === "ipv6" ? Number.parseInt(String(n), 16) : n);
}

/** The other data network: where the router VM forwards to. */
function across(network: "client" | "datacenter"): "client" | "datacenter" {
  return network === "client" ? "datacenter" : "client";
}

/** What the address plan reads: workers and podRouting default to the paper's lab. */
export type PlanScenario = Pick<Scenario, "families" | "network" | "openstack" | "kubernetes"> & Partial<Pick<Scenario, "workers" | "podRouting">>;

/** The whole lab's addressing, or an error naming the key of a block that cannot hold it. */
export function labPlan(s: PlanScenario): LabPlan {
  const families = subnetFamilies(s);
  const cidrs = new Map<string, Cidr>();
  for (const network of LAB_NETWORKS) for (const family of families) cidrs.set(`${network}/${family}`, block(s, network, family));
  const cidrOf = (network: LabNetwork, family: Family) => cidrs.get(`${network}/${family}`)!;
  const routerAddress = (network: LabNetwork, family: Family) => numberedAddress(cidrOf(network, family), HOST_NUMBER.router);

  const subnets: SubnetPlan[] = [];
  for (const network of LAB_NETWORKS) {
    for (const family of families) {
      const cidr = cidrOf(network, family);
      const last = cidrSize(cidr) - (family === "ipv4" ? 2n : 1n);
      const dataNetwork = network !== "management";
      subnets.push({
        network,
        family,
        cidr: cidr.text,
        // Only management IPv4 has a gateway: the Neutron router with the external uplink. Data
        // subnets name no gateway so they never compete with it for the default route; management
        // IPv6 has no uplink to offer.
        gatewayIp: network === "management" && family === "ipv4" ? numberedAddress(cidr, MANAGEMENT_GATEWAY_NUMBER) : undefined,
        // IPv4 by DHCP (routes as option 121); IPv6 static from network_data.json (see the header).
        enableDhcp: family === "ipv4",
        allocationPool: { start: numberedAddress(cidr, FIRST_POOL_NUMBER), end: nthAddress(cidr, last) },
        hostRoutes: dataNetwork
          ? [{ destinationCidr: cidrOf(across(network), family).text, nextHop: routerAddress(network, family) }]
          : [],
        // Every subnet names the resolvers. Without, Neutron's DHCP hands out its own dnsmasq, which
        // answers no outside name (--no-resolv): on a data NIC it joins the node's resolvers,
        // CoreDNS forwards to each in turn, and pods fail to resolve at random.
        dnsNameservers: s.openstack.dnsNameservers.filter((a) => (a.includes(":") ? "ipv6" : "ipv4") === family),
      });
    }
  }

  // Pods routed natively between the nodes (podRouting native, and always on an IPv6-only cluster:
  // Cilium 1.17 tunnels over IPv4 only) arrive from and leave for the other nodes with their own
  // addresses, so the nodes' data-center ports must let the pod subnets through.
  const podPairs = podRouting(s) === "native" ? s.families.map((f) => s.kubernetes.podSubnets[f]) : [];

  const hosts = labHosts(s.workers ?? 1);
  const ports: PortPlan[] = [];
  for (const host of hosts) {
    const role = host.role;
    ATTACHMENTS[role].forEach((network, nic) => {
      const fixedIps: PortAddress[] = [];
      const guestAddresses: PortAddress[] = [];
      const allowedAddressPairs: string[] = [];
      for (const family of families) {
        const address = numberedAddress(cidrOf(network, family), hostNumber(host));
        if (role === "router" && network !== "management") {
          // Forwarding: the router sends from and receives for the other side's addresses.
          allowedAddressPairs.push(cidrOf(across(network), family).text);
          if (family === "ipv6") {
            guestAddresses.push({ family, address });
            allowedAddressPairs.push(`${address}/128`);
            continue;
          }
        }
        fixedIps.push({ family, address });
      }
      if ((role === "master" || role === "worker") && network === "datacenter") allowedAddressPairs.push(...podPairs);
      ports.push({
        host: host.name,
        role,
        network,
        nic,
        ...(network === "management" ? {} : { interfaceName: DATA_NIC_NAMES[network] }),
        fixedIps,
        guestAddresses,
        allowedAddressPairs,
        measured: MEASURED_PORTS.some((m) => m.role === role && m.network === network),
      });
    });
  }
  return { hosts, subnets, ports };
}

export function portOf(plan: LabPlan, host: HostName, network: LabNetwork): PortPlan {
  const port = plan.ports.find((p) => p.host === host && p.network === network);
  if (!port) throw new Error(`the ${host} has no port on the ${network} network`);
  return port;
}

/** A host's address on a network, whether Neutron or the guest configures it. */
export function hostAddress(plan: LabPlan, host: HostName, network: LabNetwork, family: Family): string | undefined {
  const port = plan.ports.find((p) => p.host === host && p.network === network);
  return [...(port?.fixedIps ?? []), ...(port?.guestAddresses ?? [])].find((a) => a.family === family)?.address;
}

export interface GuestRoute {
  readonly network: LabNetwork;
  /** The NIC's stable name; undefined on the management NIC. */
  readonly interfaceName?: string;
  readonly family: Family;
  /** "default" or a CIDR. */
  readonly destination: string;
  readonly via: string;
  /** What installs it: DHCP (IPv4, metric 100 under netplan) or cloud-init's netplan (static IPv6). */
  readonly source: "dhcp" | "network_data";
}

/**
 * The routes a host receives from Neutron: for each of its fixed IPs, the subnet's gateway (as a
 * default route) and host routes. IPv4 arrives by DHCP, static IPv6 through network_data.json.
 */
export function deliveredRoutes(plan: LabPlan, host: HostName): GuestRoute[] {
  const routes: GuestRoute[] = [];
  for (const port of plan.ports.filter((p) => p.host === host)) {
    for (const fixed of port.fixedIps) {
      const subnet = plan.subnets.find((s) => s.network === port.network && s.family === fixed.family)!;
      const source = fixed.family === "ipv4" ? "dhcp" : "network_data";
      const nic = { network: port.network, ...(port.interfaceName ? { interfaceName: port.interfaceName } : {}) };
      if (subnet.gatewayIp) routes.push({ ...nic, family: fixed.family, destination: "default", via: subnet.gatewayIp, source });
      for (const r of subnet.hostRoutes) {
        routes.push({ ...nic, family: fixed.family, destination: r.destinationCidr, via: r.nextHop, source });
      }
    }
  }
  return routes;
}
