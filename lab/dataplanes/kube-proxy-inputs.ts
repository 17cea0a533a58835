// What both of kube-proxy's rule generators take (iptables mode: kube-proxy-rules.ts, nftables mode:
// kube-proxy-nftables-rules.ts): the Services with their ready endpoints, the node's settings, and
// kube-proxy's view of them for one family (its svcPortMap, each port with its endpoints in
// kube-proxy's order). Both modes share this code upstream too (pkg/proxy, pkg/proxy/util).
import { createHash } from "node:crypto";
import ipaddr from "ipaddr.js";
import { cidrContains, parseCidr, type Family } from "../../scenario/cidr.js";
import type { ServicePort, ServiceSpec } from "../../workloads/service-model.js";

export interface Endpoint {
  /** Pod address; endpoints of the other family are ignored by this family's rules. */
  readonly ip: string;
  /** True when the pod runs on this node. */
  readonly local: boolean;
}

/** A Service and its ready endpoints; an endpoint's port is each Service port's targetPort. */
export interface ServiceEndpoints {
  readonly service: ServiceSpec;
  readonly endpoints: readonly Endpoint[];
}

/** kube-proxy's settings and the node it runs on, for one IP family. */
export interface KubeProxyNode {
  readonly family: Family;
  /** --nodeport-addresses (CIDRs). None of this family: NodePorts on every local address. */
  readonly nodePortAddresses?: readonly string[];
  /** The node's interface addresses; used only with nodePortAddresses. */
  readonly addresses?: readonly string[];
  /** --iptables-localhost-nodeports (default true). IPv4 only; off when nodePortAddresses leaves out 127.0.0.1. */
  readonly localhostNodePorts?: boolean;
  /** --cluster-cidr of this family: the local-traffic detector. Unset: no detector. */
  readonly clusterCIDR?: string;
  /** --masquerade-all. */
  readonly masqueradeAll?: boolean;
  /** --iptables-masquerade-bit (default 14). */
  readonly masqueradeBit?: number;
  /** The mark as written; kube-proxy formats 1 << masqueradeBit with Go's %#08x (0x00004000). */
  readonly masqueradeMark?: string;
  /** iptables has MASQUERADE --random-fully (1.6.2 and later; true on Ubuntu 20.04). Default true. */
  readonly randomFully?: boolean;
  /** kube-proxy created its nfacct counters (nfnetlink_acct available). Default false. */
  readonly nfacct?: boolean;
  /** net.netfilter.nf_conntrack_tcp_be_liberal is set: no INVALID drop rule. */
  readonly conntrackTcpBeLiberal?: boolean;
}

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** First 16 characters of base32(sha256(text)), as portProtoHash and servicePortEndpointChainName. */
export function chainHash(text: string): string {
  const bytes = createHash("sha256").update(text).digest();
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 16) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
    if (out.length === 16) break;
  }
  return out;
}

/** ServicePortName.String(): "namespace/name" plus ":port" when the port is named. */
export function servicePortName(svc: Pick<ServiceSpec, "namespace" | "name">, port: Pick<ServicePort, "name">): string {
  return `${svc.namespace}/${svc.name}${port.name ? `:${port.name}` : ""}`;
}

/** Go's net.JoinHostPort. */
export function joinHostPort(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Addresses as Go's net.IP.String() prints them. */
export function canonicalIp(ip: string): string {
  return ipaddr.parse(ip).toString();
}

export function ipFamilyOf(ip: string): Family {
  return ipaddr.parse(ip).kind() === "ipv4" ? "ipv4" : "ipv6";
}

/** Go's fmt.Sprintf("%#08x", v): "0x" and at least eight hex digits. */
export function goHexMark(value: number): string {
  return `0x${value.toString(16).padStart(8, "0")}`;
}

/** The masquerade mark kube-proxy writes: node.masqueradeMark, else 1 << masqueradeBit as %#08x. */
export function masqueradeMarkOf(node: Pick<KubeProxyNode, "masqueradeMark" | "masqueradeBit">): string {
  return node.masqueradeMark ?? goHexMark(1 << (node.masqueradeBit ?? 14));
}

/** proxyutil.NodePortAddresses for one family. */
export function nodePortAddressesOf(node: Pick<KubeProxyNode, "family" | "nodePortAddresses">): {
  matchAll: boolean;
  containsIPv4Loopback: boolean;
  cidrs: string[];
} {
  const ofFamily = (node.nodePortAddresses ?? []).filter((c) => parseCidr(c)?.family === node.family);
  const cidrs = ofFamily.length ? ofFamily : [node.family === "ipv4" ? "0.0.0.0/0" : "::/0"];
  let containsIPv4Loopback = false;
  let matchAll = false;
  for (const c of cidrs) {
    const parsed = parseCidr(c)!;
    if (parsed.family === "ipv4" && cidrContains(parsed, "127.0.0.1")) containsIPv4Loopback = true;
    if (parsed.prefix === 0) {
      matchAll = true;
      break;
    }
  }
  return { matchAll, containsIPv4Loopback, cidrs };
}

/** Throws naming the key, the value and what is accepted. */
export function rejectNodeSetting(key: string, value: unknown, accepted: string): never {
  throw new Error(`kube-proxy rules: ${key} ${JSON.stringify(value)} is not accepted; accepted: ${accepted}`);
}

/** Checks the settings both modes read. */
export function validateNode(node: Pick<KubeProxyNode, "family" | "clusterCIDR" | "nodePortAddresses" | "addresses" | "masqueradeBit">): void {
  if (node.family !== "ipv4" && node.family !== "ipv6") rejectNodeSetting("family", node.family, '"ipv4" or "ipv6"');
  if (node.clusterCIDR !== undefined && parseCidr(node.clusterCIDR)?.family !== node.family) {
    rejectNodeSetting("clusterCIDR", node.clusterCIDR, `a CIDR of the ${node.family} family`);
  }
  for (const c of node.nodePortAddresses ?? []) if (!parseCidr(c)) rejectNodeSetting("nodePortAddresses", c, "CIDRs, e.g. 198.18.1.0/24");
  for (const a of node.addresses ?? []) if (!ipaddr.isValid(a)) rejectNodeSetting("addresses", a, "IP addresses");
  const bit = node.masqueradeBit ?? 14;
  if (!Number.isInteger(bit) || bit < 0 || bit > 31) rejectNodeSetting("masqueradeBit", bit, "an integer from 0 to 31");
}

/** One endpoint of a Service port: its address, "ip:port" as Go's net.JoinHostPort writes it, and locality. */
export interface PortEndpoint {
  readonly ip: string;
  readonly str: string;
  readonly local: boolean;
}

/** One entry of kube-proxy's svcPortMap for a family, with its endpoints in kube-proxy's order. */
export interface FamilyServicePort {
  readonly service: ServiceSpec;
  readonly port: ServicePort;
  /** ServicePortName.String(). */
  readonly name: string;
  /** "tcp" or "udp". */
  readonly protocol: string;
  readonly clusterIP: string;
  readonly endpoints: readonly PortEndpoint[];
}

/** The Service ports of one family (Services without a ClusterIP of the family have none). */
export function servicePortsOf(services: readonly ServiceEndpoints[], family: Family): FamilyServicePort[] {
  return services.flatMap(({ service, endpoints }) => {
    const clusterIP = service.clusterIPs[family];
    if (clusterIP === undefined) return [];
    const ofFamily = endpoints.filter((e) => ipFamilyOf(e.ip) === family);
    return service.ports.map((port) => {
      const byString = new Map<string, PortEndpoint>();
      for (const e of ofFamily) {
        const ip = canonicalIp(e.ip);
        const str = joinHostPort(ip, port.targetPort);
        byString.set(str, { ip, str, local: e.local });
      }
      // kube-proxy sorts a Service port's endpoints by their "ip:port" string.
      const sorted = [...byString.values()].sort((a, b) => (a.str < b.str ? -1 : a.str > b.str ? 1 : 0));
      return {
        service,
        port,
        name: servicePortName(service, port),
        protocol: port.protocol.toLowerCase(),
        clusterIP: canonicalIp(clusterIP),
        endpoints: sorted,
      };
    });
  });
}

// ---------------------------------------------------------------------------------------------
// What changed between two syncs (pkg/proxy's ServiceChangeTracker and EndpointsChangeTracker).

/** A Service's identity for change tracking: kube-proxy's UpdatedServices holds namespace/name. */
export const namespacedName = (s: Pick<ServiceSpec, "namespace" | "name">) => `${s.namespace}/${s.name}`;

/**
 * The namespace/name of every Service whose Service object or endpoints differ between two lists,
 * including the ones added and removed: what kube-proxy's change trackers report as UpdatedServices.
 */
export function updatedServices(before: ReadonlyMap<string, string>, after: ReadonlyMap<string, string>): Set<string> {
  const updated = new Set<string>();
  for (const [name, signature] of after) if (before.get(name) !== signature) updated.add(name);
  for (const name of before.keys()) if (!after.has(name)) updated.add(name);
  return updated;
}

/** Signatures already computed, per Service object and family: a change hands over the unchanged Services as the same objects. */
const signatureCache = new WeakMap<ServiceEndpoints, Partial<Record<Family, string>>>();

/** A signature of a Service's spec and its endpoints of one family. */
export function serviceSignature(e: ServiceEndpoints, family: Family): string {
  const cached = signatureCache.get(e) ?? {};
  if (cached[family] === undefined) {
    cached[family] = JSON.stringify([e.service, e.endpoints.filter((x) => ipFamilyOf(x.ip) === family).map((x) => [canonicalIp(x.ip), x.local]).sort()]);
    signatureCache.set(e, cached);
  }
  return cached[family]!;
}

/** Each Service's namespace/name and a signature of its spec and endpoints of this family. */
export function serviceSignatures(services: readonly ServiceEndpoints[], family: Family): Map<string, string> {
  return new Map(services.map((e) => [namespacedName(e.service), serviceSignature(e, family)]));
}
