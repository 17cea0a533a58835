// Security groups of least privilege, as data: which ingress each port admits and why. Egress keeps
// Neutron's default (everything out), which package installs need; replies to admitted traffic pass
// by connection tracking. ARP, DHCP and IPv6 neighbour discovery are allowed by Neutron itself.
import { parseCidr, type Family } from "../../scenario/cidr.js";
import { CONFIG_NAMESPACE, nodePortRange, podRouting, type Scenario } from "../../scenario/schema.js";
import { API_SERVER_PORT } from "../cluster/kubeadm.js";
import { roleOf, type HostName, type LabNetwork } from "../hosts.js";
import { subnetFamilies } from "./address-plan.js";

export const SSH_PORT = 22;
export const KUBELET_PORT = 10250;
/** Cilium's VXLAN port (Linux's IANA-unassigned default, not 4789). */
export const CILIUM_VXLAN_PORT = 8472;
/** cilium-health's HTTP endpoint between nodes. */
export const CILIUM_HEALTH_PORT = 4240;

export const SECURITY_GROUPS = ["admin", "management", "kube-api", "path", "nodeport", "cluster"] as const;
export type SecurityGroupName = (typeof SECURITY_GROUPS)[number];

export type Protocol = "tcp" | "udp" | "icmp" | "ipv6-icmp";
export type Ethertype = "IPv4" | "IPv6";

export interface RulePlan {
  readonly ethertype: Ethertype;
  /** Undefined: any protocol. */
  readonly protocol?: Protocol;
  readonly portRangeMin?: number;
  readonly portRangeMax?: number;
  /** Source block, or "self": any port in the same group. */
  readonly remote: { readonly cidr: string } | "self";
  /** Why the rule exists; becomes the rule's description in Neutron. */
  readonly reason: string;
}

export interface SecurityGroupPlan {
  readonly name: SecurityGroupName;
  readonly description: string;
  readonly rules: readonly RulePlan[];
}

const ETHERTYPE: Record<Family, Ethertype> = { ipv4: "IPv4", ipv6: "IPv6" };
const ICMP: Record<Family, Protocol> = { ipv4: "icmp", ipv6: "ipv6-icmp" };

function familyOf(cidr: string): Family {
  const parsed = parseCidr(cidr);
  if (!parsed) throw new Error(`"${cidr}" is not a CIDR`);
  return parsed.family;
}

function fromCidr(cidr: string, protocol: Protocol | undefined, ports: [number, number] | undefined, reason: string): RulePlan {
  const family = familyOf(cidr);
  return {
    ethertype: ETHERTYPE[family],
    ...(protocol ? { protocol } : {}),
    ...(ports ? { portRangeMin: ports[0], portRangeMax: ports[1] } : {}),
    remote: { cidr },
    reason,
  };
}

const icmpFrom = (cidr: string, reason: string) => fromCidr(cidr, ICMP[familyOf(cidr)], undefined, reason);

/**
 * The bastion is reached through an IPv4 floating IP, so the admin block must be IPv4: an IPv6 block
 * would open nothing that can be used.
 */
export function adminBlock(s: Pick<Scenario, "adminCidr">): string {
  const parsed = parseCidr(s.adminCidr);
  if (!parsed || parsed.family !== "ipv4") {
    throw new Error(
      `${CONFIG_NAMESPACE}:adminCidr "${s.adminCidr}" is not an IPv4 block; accepted: an IPv4 block such as 203.0.113.7/32 (the bastion's floating IP is IPv4)`,
    );
  }
  return parsed.text;
}

type RuleScenario = Pick<Scenario, "adminCidr" | "families" | "network" | "kubernetes"> & Partial<Pick<Scenario, "podRouting">>;

export function securityGroupPlans(s: RuleScenario): SecurityGroupPlan[] {
  const admin = adminBlock(s);
  const present = subnetFamilies(s);
  const blocks = (network: LabNetwork, families: readonly Family[]) => families.map((f) => s.network[network][f]);
  const management = blocks("management", present);
  const dataPath = [...blocks("client", present), ...blocks("datacenter", present)];
  const range = nodePortRange(s);
  const nodePorts: [number, number] = [range.low, range.high];

  const cluster: RulePlan[] = [];
  for (const f of s.families) {
    const self = (protocol: Protocol, ports: [number, number] | undefined, reason: string): RulePlan => ({
      ethertype: ETHERTYPE[f],
      protocol,
      ...(ports ? { portRangeMin: ports[0], portRangeMax: ports[1] } : {}),
      remote: "self",
      reason,
    });
    cluster.push(
      self("tcp", [KUBELET_PORT, KUBELET_PORT], "kubelet API: the API server reaches kubelets at their node IPs (logs, exec, metrics)"),
      self("tcp", [CILIUM_HEALTH_PORT, CILIUM_HEALTH_PORT], "cilium-health probes between nodes"),
      self(ICMP[f], undefined, "cilium-health node reachability pings"),
    );
  }
  if (podRouting(s) === "tunnel") {
    cluster.push({
      ethertype: "IPv4",
      protocol: "udp",
      portRangeMin: CILIUM_VXLAN_PORT,
      portRangeMax: CILIUM_VXLAN_PORT,
      remote: "self",
      reason: "Cilium's VXLAN tunnel between the nodes (pod-to-pod traffic across nodes)",
    });
  } else {
    // Native routing: pod addresses arrive unencapsulated from the other nodes, and so does what a
    // node sends to a pod elsewhere from its own address (a NodePort's remote backend behind SNAT,
    // externalTrafficPolicy Cluster; a host-network client of a ClusterIP), which no port rule can
    // name in advance.
    for (const f of s.families) {
      cluster.push(fromCidr(s.kubernetes.podSubnets[f], undefined, undefined, "pod-to-pod traffic routed natively between the nodes"));
    }
    for (const f of s.families) {
      cluster.push({ ethertype: ETHERTYPE[f], remote: "self", reason: "a node's own traffic to pods on the other nodes, routed natively (SNAT to a remote NodePort backend)" });
    }
  }

  return [
    {
      name: "admin",
      description: "The bastion: SSH from the administrator's block only, the one door into the lab",
      rules: [
        fromCidr(admin, "tcp", [SSH_PORT, SSH_PORT], "SSH from the administrator's block (testbed:adminCidr)"),
        icmpFrom(admin, "ping and path-MTU messages from the administrator's block"),
      ],
    },
    {
      name: "management",
      description: "Every host but the bastion: SSH from the management network, i.e. through the bastion",
      rules: management.flatMap((cidr) => [
        fromCidr(cidr, "tcp", [SSH_PORT, SSH_PORT], "SSH from the management network (the bastion jumps here)"),
        icmpFrom(cidr, "diagnosis from the management network"),
      ]),
    },
    {
      name: "kube-api",
      description: "The master's API server on the management network, never on the measured path",
      rules: management.map((cidr) =>
        fromCidr(cidr, "tcp", [API_SERVER_PORT, API_SERVER_PORT], "Kubernetes API from the management network (kubelets, kubectl via the bastion)"),
      ),
    },
    {
      name: "path",
      description: "Every data port: ICMP along the measured path, for ping, traceroute and path-MTU discovery",
      rules: dataPath.map((cidr) => icmpFrom(cidr, "diagnosis and path-MTU messages along client -> router -> worker")),
    },
    {
      name: "nodeport",
      description: "The measured traffic: the NodePort range from the client network only",
      rules: blocks("client", s.families).flatMap((cidr) => [
        fromCidr(cidr, "tcp", nodePorts, "D-ITG TCP flows and signaling to NodePorts, from the client network"),
        fromCidr(cidr, "udp", nodePorts, "D-ITG UDP flows to NodePorts, from the client network"),
      ]),
    },
    {
      name: "cluster",
      description: "Master and worker on the data-center network: what the kubelet and Cilium need between the nodes (etcd stays on the master)",
      rules: cluster,
    },
  ];
}

/** The groups of each port; a port not listed here does not exist. */
export function portSecurityGroups(host: HostName, network: LabNetwork): SecurityGroupName[] {
  const role = roleOf(host);
  if (network === "management") {
    if (role === "bastion") return ["admin"];
    return role === "master" ? ["management", "kube-api"] : ["management"];
  }
  // The router's client port admits what it forwards to the worker; its data-center port only sees
  // replies (connection tracking) and ICMP.
  if (role === "router") return network === "client" ? ["path", "nodeport"] : ["path"];
  // Every path enters the cluster at worker 1's NodePorts (scenario/paths.ts); the other workers
  // hold endpoints, reached from the nodes only.
  if (role === "worker") return host === "worker" ? ["path", "nodeport", "cluster"] : ["path", "cluster"];
  if (role === "master") return ["path", "cluster"];
  return ["path"];
}
