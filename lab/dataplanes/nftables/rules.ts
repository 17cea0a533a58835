// The ruleset kube-proxy's nftables mode writes, as `nft -f` text: a port of setupNFTables and
// syncProxyRules (pkg/proxy/nftables/proxier.go) in the format of Kubernetes 1.31 to 1.33 (filter
// chains at priority dstnat-10 plus filter-output-post-dnat, cluster-ips-check, nodeport-ips; 1.34
// moved the filter chains to priority 0) for the Service shapes the testbed uses: ClusterIP and
// NodePort Services, TCP/UDP, internalTrafficPolicy Cluster, externalTrafficPolicy Local or Cluster,
// ready endpoints on this node or on others, or none.
// Not modelled: LoadBalancer and external IPs (firewall-ips stays empty), session affinity, topology
// hints, terminating endpoints.
//
// Output per family: the transaction of kube-proxy's first full sync on a node that has no kube-proxy
// table yet, line by line as knftables writes it, and counts of what the table holds afterwards.
// One `nft -f` of it is one atomic kernel transaction. The per-Service blocks follow the given Service
// order; kube-proxy walks a Go map there, which changes the transaction's order but not the table.
import ipaddr from "ipaddr.js";
import { cidrContains, parseCidr, type Family } from "../../../scenario/cidr.js";
import {
  canonicalIp,
  chainHash,
  ipFamilyOf,
  masqueradeMarkOf,
  nodePortAddressesOf,
  rejectNodeSetting,
  servicePortsOf,
  validateNode,
  type KubeProxyNode,
  type PortEndpoint,
  type ServiceEndpoints,
} from "../kube-proxy-inputs.js";

/** The node settings nftables mode reads (the iptables-only ones of KubeProxyNode do not apply). */
export interface KubeProxyNftablesNode
  extends Pick<KubeProxyNode, "family" | "nodePortAddresses" | "addresses" | "clusterCIDR" | "masqueradeAll" | "masqueradeBit" | "masqueradeMark"> {
  /**
   * The ServiceCIDRs kube-proxy watches (OnServiceCIDRsChanged; either family, this family's are
   * used): new connections to an unallocated ClusterIP in them are dropped. Unset: no drop rule.
   */
  readonly serviceCIDRs?: readonly string[];
}

/** What a kube-proxy table holds, as `nft list table` would show it (anonymous sets not counted). */
export interface NftablesCounts {
  readonly chains: number;
  /** Chains attached to a netfilter hook. */
  readonly baseChains: number;
  readonly rules: number;
  readonly sets: number;
  readonly maps: number;
  /** Elements of each named set and map, by name. */
  readonly elements: Readonly<Record<string, number>>;
}

export interface KubeProxyNftablesRules {
  readonly family: Family;
  /** `nft -f` input: kube-proxy's first full-sync transaction for this family. */
  readonly ruleset: string;
  /** The table after the transaction. */
  readonly counts: NftablesCounts;
}

export const KUBE_PROXY_TABLE = "kube-proxy";
export const NFT_FAMILY: Readonly<Record<Family, "ip" | "ip6">> = { ipv4: "ip", ipv6: "ip6" };

// Base chains in nftablesBaseChains order; priorities as knftables writes them (dstnat = -100, srcnat = 100).
const BASE_CHAINS = [
  { name: "filter-prerouting", type: "filter", hook: "prerouting", priority: -110 },
  { name: "filter-input", type: "filter", hook: "input", priority: -110 },
  { name: "filter-forward", type: "filter", hook: "forward", priority: -110 },
  { name: "filter-output", type: "filter", hook: "output", priority: -110 },
  { name: "filter-output-post-dnat", type: "filter", hook: "output", priority: -90 },
  { name: "nat-prerouting", type: "nat", hook: "prerouting", priority: -100 },
  { name: "nat-output", type: "nat", hook: "output", priority: -100 },
  { name: "nat-postrouting", type: "nat", hook: "postrouting", priority: 100 },
] as const;

// nftablesJumpChains: regular chains and the base chain that jumps to each.
const JUMP_CHAINS = [
  { dst: "nodeport-endpoints-check", src: "filter-input", extra: "ct state new" },
  { dst: "service-endpoints-check", src: "filter-input", extra: "ct state new" },
  { dst: "service-endpoints-check", src: "filter-forward", extra: "ct state new" },
  { dst: "service-endpoints-check", src: "filter-output", extra: "ct state new" },
  { dst: "firewall-check", src: "filter-prerouting", extra: "ct state new" },
  { dst: "firewall-check", src: "filter-output", extra: "ct state new" },
  { dst: "services", src: "nat-output", extra: "" },
  { dst: "services", src: "nat-prerouting", extra: "" },
  { dst: "masquerading", src: "nat-postrouting", extra: "" },
  { dst: "cluster-ips-check", src: "filter-forward", extra: "ct state new" },
  { dst: "cluster-ips-check", src: "filter-output-post-dnat", extra: "ct state new" },
] as const;

const MARK_MASQ_CHAIN = "mark-for-masquerade";
const REJECT_CHAIN = "reject-chain";

/** knftables.NameLengthMax less the longest chain-name prefix. */
const CHAIN_NAME_BASE_LENGTH_MAX = 256 - 16;

/** hashAndTruncate: eight base32 characters of sha256(name), "-", the name; cut to the maximum length. */
export function hashAndTruncate(name: string): string {
  const out = `${chainHash(name).slice(0, 8)}-${name}`;
  return out.length > CHAIN_NAME_BASE_LENGTH_MAX ? `${out.slice(0, CHAIN_NAME_BASE_LENGTH_MAX - 3)}...` : out;
}

/** A Service port as kube-proxy names its chains. */
export interface ServicePortRef {
  readonly namespace: string;
  readonly name: string;
  /** "tcp" or "udp". */
  readonly protocol: string;
  readonly portName: string;
}

/** servicePortChainNameBase: "HASH-namespace/name/protocol/portName". */
export function serviceChainBase(s: ServicePortRef): string {
  return hashAndTruncate(`${s.namespace}/${s.name}/${s.protocol}/${s.portName}`);
}

/** servicePortEndpointChainNameBase: the endpoint's IP with ":" written as ".", then "/port". */
export function endpointChainBase(s: ServicePortRef, ip: string, port: number): string {
  return hashAndTruncate(`${s.namespace}/${s.name}/${s.protocol}/${s.portName}__${ip.replaceAll(":", ".")}/${port}`);
}

/** Go's %q for the ASCII strings kube-proxy writes as comments. */
const quote = (text: string) => JSON.stringify(text);

/** knftables' writer for one table: each method appends one operation, in knftables' syntax. */
class Transaction {
  readonly lines: string[] = [];
  private readonly elements = new Map<string, string>();
  constructor(private readonly family: "ip" | "ip6") {}

  private op(verb: string, kind: string, rest: string): void {
    this.lines.push(`${verb} ${kind} ${this.family} ${KUBE_PROXY_TABLE}${rest ? ` ${rest}` : ""}`);
  }
  table(comment: string): void {
    this.op("add", "table", `{ comment ${quote(comment)} ; }`);
  }
  chain(name: string, spec?: { type: string; hook: string; priority: number } | { comment: string }): void {
    const body = !spec ? "" : "type" in spec ? ` { type ${spec.type} hook ${spec.hook} priority ${spec.priority} ; }` : ` { comment ${quote(spec.comment)} ; }`;
    this.op("add", "chain", `${name}${body}`);
  }
  rule(chain: string, rule: string, comment?: string): void {
    this.op("add", "rule", `${chain} ${rule}${comment ? ` comment ${quote(comment)}` : ""}`);
  }
  container(kind: "set" | "map", name: string, type: string, comment: string): void {
    this.op("add", kind, `${name} { type ${type} ; comment ${quote(comment)} ; }`);
  }
  /** nftElementStorage.ensureElem: each key once (a ClusterIP of several ports is one cluster-ips element). */
  element(container: string, key: readonly (string | number)[], value?: string, comment?: string): void {
    const k = `${container} ${key.join(" . ")}`;
    const known = this.elements.get(k);
    if (known !== undefined) {
      if (known !== (value ?? "")) throw new Error(`nftables rules: ${k} would map to both ${known} and ${value}`);
      return;
    }
    this.elements.set(k, value ?? "");
    this.op("add", "element", `${container} { ${key.join(" . ")}${comment ? ` comment ${quote(comment)}` : ""}${value ? ` : ${value}` : ""} }`);
  }
  flush(kind: "chain" | "set", name: string): void {
    this.op("flush", kind, name);
  }
  delete(kind: "chain" | "set", name: string): void {
    this.op("delete", kind, name);
  }
}

function validateNftablesNode(node: KubeProxyNftablesNode): void {
  validateNode(node);
  for (const c of node.serviceCIDRs ?? []) if (!parseCidr(c)) rejectNodeSetting("serviceCIDRs", c, "CIDRs, e.g. 198.19.128.0/17");
}

/** The transaction kube-proxy (nftables mode) runs on its first full sync of one family. */
export function kubeProxyNftablesRules(node: KubeProxyNftablesNode, services: readonly ServiceEndpoints[]): KubeProxyNftablesRules {
  validateNftablesNode(node);
  const family = node.family;
  const ipX = NFT_FAMILY[family];
  const addrType = family === "ipv4" ? "ipv4_addr" : "ipv6_addr";
  const noLocalhost = family === "ipv4" ? "ip daddr != 127.0.0.0/8" : "ip6 daddr != ::1";
  const mark = masqueradeMarkOf(node);
  const npa = nodePortAddressesOf(node);
  const detector = node.clusterCIDR ? parseCidr(node.clusterCIDR)!.text : undefined;
  const serviceCIDRs = (node.serviceCIDRs ?? []).map((c) => parseCidr(c)!).filter((c) => c.family === family).map((c) => c.text);
  const tx = new Transaction(ipX);
  const created = new Set<string>();
  const ensureChain = (name: string) => {
    if (created.has(name)) return;
    created.add(name);
    tx.chain(name);
    tx.flush("chain", name);
  };

  // setupNFTables
  tx.table("rules for kube-proxy");
  // First sync after start: add and delete the base chains so that changed properties take effect.
  for (const bc of BASE_CHAINS) {
    tx.chain(bc.name);
    tx.delete("chain", bc.name);
  }
  for (const bc of BASE_CHAINS) {
    tx.chain(bc.name, bc);
    tx.flush("chain", bc.name);
  }
  for (const j of JUMP_CHAINS) {
    ensureChain(j.dst);
    tx.rule(j.src, [j.extra, "jump", j.dst].filter(Boolean).join(" "));
  }
  for (const name of ["services", "cluster-ips-check", "masquerading", MARK_MASQ_CHAIN]) ensureChain(name);
  tx.rule(MARK_MASQ_CHAIN, `mark set mark or ${mark}`);
  tx.rule("masquerading", `mark and ${mark} == 0 return`);
  tx.rule("masquerading", `mark set mark xor ${mark}`);
  tx.rule("masquerading", "masquerade fully-random");

  tx.container("set", "cluster-ips", addrType, "Active ClusterIPs");
  tx.rule("cluster-ips-check", `${ipX} daddr @cluster-ips reject`, "Reject traffic to invalid ports of ClusterIPs");
  if (serviceCIDRs.length > 0) {
    tx.rule("cluster-ips-check", `${ipX} daddr { ${serviceCIDRs.join(",")} } drop`, "Drop traffic to unallocated ClusterIPs");
  }

  tx.container("set", "nodeport-ips", addrType, "IPs that accept NodePort traffic");
  if (npa.matchAll) {
    tx.delete("set", "nodeport-ips");
  } else {
    tx.flush("set", "nodeport-ips");
    // GetNodeIPs: the node's addresses inside --nodeport-addresses; localhost NodePorts are not supported.
    const nodeIps = new Set<string>();
    for (const a of node.addresses ?? []) {
      if (ipFamilyOf(a) !== family) continue;
      const ip = canonicalIp(a);
      if (npa.cidrs.some((c) => cidrContains(parseCidr(c)!, ip)) && ipaddr.parse(ip).range() !== "loopback") nodeIps.add(ip);
    }
    for (const ip of nodeIps) tx.element("nodeport-ips", [ip]);
  }

  tx.container("map", "no-endpoint-services", `${addrType} . inet_proto . inet_service : verdict`, "vmap to drop or reject packets to services with no endpoints");
  tx.container("map", "no-endpoint-nodeports", "inet_proto . inet_service : verdict", "vmap to drop or reject packets to service nodeports with no endpoints");
  tx.chain(REJECT_CHAIN, { comment: "helper for @no-endpoint-services / @no-endpoint-nodeports" });
  tx.flush("chain", REJECT_CHAIN);
  tx.rule(REJECT_CHAIN, "reject");
  tx.rule("service-endpoints-check", `${ipX} daddr . meta l4proto . th dport vmap @no-endpoint-services`);
  tx.rule(
    "nodeport-endpoints-check",
    npa.matchAll ? `${noLocalhost} meta l4proto . th dport vmap @no-endpoint-nodeports` : `${ipX} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports`,
  );

  tx.container("map", "firewall-ips", `${addrType} . inet_proto . inet_service : verdict`, "destinations that are subject to LoadBalancerSourceRanges");
  ensureChain("firewall-check");
  tx.rule("firewall-check", `${ipX} daddr . meta l4proto . th dport vmap @firewall-ips`);

  tx.container("map", "service-ips", `${addrType} . inet_proto . inet_service : verdict`, "ClusterIP, ExternalIP and LoadBalancer IP traffic");
  tx.container("map", "service-nodeports", "inet_proto . inet_service : verdict", "NodePort traffic");
  tx.rule("services", `${ipX} daddr . meta l4proto . th dport vmap @service-ips`);
  tx.rule(
    "services",
    npa.matchAll
      ? `fib daddr type local ${noLocalhost} meta l4proto . th dport vmap @service-nodeports`
      : `${ipX} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports`,
  );

  // syncProxyRules: one block per Service port.
  for (const p of servicePortsOf(services, family)) {
    const { name, protocol, port, clusterIP } = p;
    const ref = { namespace: p.service.namespace, name: p.service.name, protocol, portName: port.name };
    const base = serviceChainBase(ref);
    const clusterPolicyChain = `service-${base}`;
    const localPolicyChain = `local-${base}`;
    const externalTrafficChain = `external-${base}`;
    const nodePort = p.service.type === "NodePort" ? (port.nodePort ?? 0) : 0;
    const externallyAccessible = nodePort !== 0;
    const externalPolicyLocal = externallyAccessible && p.service.externalTrafficPolicy === "Local";

    // CategorizeEndpoints with internalTrafficPolicy Cluster: every ready endpoint serves internal
    // traffic; with externalTrafficPolicy Local the node's own ones serve external traffic.
    const clusterEndpoints = p.endpoints;
    const localEndpoints = externalPolicyLocal ? p.endpoints.filter((e) => e.local) : [];
    const hasEndpoints = clusterEndpoints.length > 0;
    const endpointChain = new Map(clusterEndpoints.map((e) => [e, `endpoint-${endpointChainBase(ref, e.ip, port.targetPort)}`]));

    for (const ep of clusterEndpoints) ensureChain(endpointChain.get(ep)!);
    const usesClusterPolicyChain = clusterEndpoints.length > 0;
    if (usesClusterPolicyChain) ensureChain(clusterPolicyChain);
    const usesLocalPolicyChain = localEndpoints.length > 0;
    if (usesLocalPolicyChain) ensureChain(localPolicyChain);

    const hasInternalEndpoints = hasEndpoints;
    const externalPolicyChain = externalPolicyLocal ? localPolicyChain : clusterPolicyChain;
    const hasExternalEndpoints = externalPolicyLocal ? localEndpoints.length > 0 : hasEndpoints;
    const usesExternalTrafficChain = hasEndpoints && externallyAccessible;
    if (usesExternalTrafficChain) ensureChain(externalTrafficChain);

    const internalVerdict = hasEndpoints ? "" : `goto ${REJECT_CHAIN}`;
    const externalVerdict = !hasEndpoints ? `goto ${REJECT_CHAIN}` : !hasExternalEndpoints ? "drop" : "";

    tx.element("cluster-ips", [clusterIP]);
    if (hasInternalEndpoints) tx.element("service-ips", [clusterIP, protocol, port.port], `goto ${clusterPolicyChain}`);
    else tx.element("no-endpoint-services", [clusterIP, protocol, port.port], internalVerdict, name);

    if (nodePort !== 0) {
      if (hasEndpoints) tx.element("service-nodeports", [protocol, nodePort], `goto ${externalTrafficChain}`);
      if (!hasExternalEndpoints) tx.element("no-endpoint-nodeports", [protocol, nodePort], externalVerdict, name);
    }

    if (hasInternalEndpoints) {
      const dest = `${ipX} daddr ${clusterIP} ${protocol} dport ${port.port}`;
      if (node.masqueradeAll) tx.rule(clusterPolicyChain, `${dest} jump ${MARK_MASQ_CHAIN}`);
      else if (detector) tx.rule(clusterPolicyChain, `${dest} ${ipX} saddr != ${detector} jump ${MARK_MASQ_CHAIN}`);
    }

    if (usesExternalTrafficChain) {
      if (!externalPolicyLocal) {
        tx.rule(externalTrafficChain, `jump ${MARK_MASQ_CHAIN}`);
      } else {
        if (detector) tx.rule(externalTrafficChain, `${ipX} saddr ${detector} goto ${clusterPolicyChain}`, "short-circuit pod traffic");
        tx.rule(externalTrafficChain, `fib saddr type local jump ${MARK_MASQ_CHAIN}`, "masquerade local traffic");
        tx.rule(externalTrafficChain, `fib saddr type local goto ${clusterPolicyChain}`, "short-circuit local traffic");
      }
      if (hasExternalEndpoints) tx.rule(externalTrafficChain, `goto ${externalPolicyChain}`);
    }

    // writeServiceToEndpointRules: random choice among the endpoints through an anonymous vmap.
    const toEndpoints = (chain: string, eps: readonly PortEndpoint[]) => {
      const entries = eps.map((e, i) => `${i} : goto ${endpointChain.get(e)!}`).join(" , ");
      tx.rule(chain, `numgen random mod ${eps.length} vmap { ${entries} }`);
    };
    if (usesClusterPolicyChain) toEndpoints(clusterPolicyChain, clusterEndpoints);
    if (usesLocalPolicyChain) toEndpoints(localPolicyChain, localEndpoints);

    for (const ep of clusterEndpoints) {
      const chain = endpointChain.get(ep)!;
      tx.rule(chain, `${ipX} saddr ${ep.ip} jump ${MARK_MASQ_CHAIN}`);
      tx.rule(chain, `meta l4proto ${protocol} dnat to ${ep.str}`);
    }
  }

  const ruleset = `${tx.lines.join("\n")}\n`;
  return { family, ruleset, counts: countTable(applyNftablesTransaction(ruleset)) };
}

// ---------------------------------------------------------------------------------------------
// What a transaction leaves in the table, read the way knftables' Fake applies and dumps it.

interface ChainState {
  line: string;
  hooked: boolean;
  rules: string[];
}

interface ContainerState {
  line: string;
  kind: "set" | "map";
  /** Element line by key. */
  elements: Map<string, string>;
}

/** One kube-proxy table after a transaction. */
export interface NftablesTable {
  readonly family: "ip" | "ip6";
  readonly tableLine: string;
  readonly chains: ReadonlyMap<string, ChainState>;
  readonly containers: ReadonlyMap<string, ContainerState>;
}

function transactionError(line: string, why: string): Error {
  return new Error(`nftables transaction: ${why}: ${line}`);
}

/** The key of an "add element" line: what stands between "{ " and a comment, a ":" or "}". */
function elementKey(body: string): string {
  return body.replace(/^\{ /, "").split(/ comment "| : | \}$/)[0]!;
}

/**
 * Applies a transaction of add/flush/delete operations on one table, as the kernel would, and throws
 * on what the kernel would refuse: an object used before it exists, a duplicate key with another
 * value, a jump, goto or @-lookup of something the table does not hold.
 */
export function applyNftablesTransaction(text: string): NftablesTable {
  let family: "ip" | "ip6" | undefined;
  let tableLine = "";
  const chains = new Map<string, ChainState>();
  const containers = new Map<string, ContainerState>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    // VERB OBJECT FAMILY TABLE [NAME [REST]], cut by hand: the transaction of 10000 Services has 130000 lines.
    const cut: number[] = [];
    for (let at = line.indexOf(" "); at !== -1 && cut.length < 5; at = line.indexOf(" ", at + 1)) cut.push(at);
    if (cut.length < 3) throw transactionError(line, "not an operation of the form VERB OBJECT FAMILY TABLE ...");
    const verb = line.slice(0, cut[0]);
    const kind = line.slice(cut[0]! + 1, cut[1]);
    const fam = line.slice(cut[1]! + 1, cut[2]);
    const table = line.slice(cut[2]! + 1, cut[3] ?? line.length);
    const name = cut[3] === undefined ? undefined : line.slice(cut[3] + 1, cut[4] ?? line.length);
    const rest = cut[4] === undefined ? undefined : line.slice(cut[4] + 1);
    if (fam !== "ip" && fam !== "ip6") throw transactionError(line, `family ${fam} is not ip or ip6`);
    if (table !== KUBE_PROXY_TABLE) throw transactionError(line, `table ${table} is not ${KUBE_PROXY_TABLE}`);
    if (family !== undefined && fam !== family) throw transactionError(line, `family ${fam} in a transaction on ${family}`);
    family = fam;
    if (kind !== "table" && !tableLine) throw transactionError(line, "the table does not exist");
    if (kind !== "table" && name === undefined) throw transactionError(line, `no ${kind} name`);
    const key = `${verb} ${kind}`;
    if (key === "add table") {
      tableLine ||= line;
    } else if (key === "delete table") {
      tableLine = "";
      chains.clear();
      containers.clear();
    } else if (key === "add chain") {
      if (!chains.has(name!)) chains.set(name!, { line, hooked: / hook /.test(rest ?? ""), rules: [] });
    } else if (key === "flush chain" || key === "delete chain") {
      if (!chains.has(name!)) throw transactionError(line, `no chain ${name}`);
      if (verb === "flush") chains.get(name!)!.rules = [];
      else chains.delete(name!);
    } else if (key === "add rule") {
      const chain = chains.get(name!);
      if (!chain) throw transactionError(line, `no chain ${name}`);
      chain.rules.push(line);
    } else if (key === "add set" || key === "add map") {
      if (!containers.has(name!)) containers.set(name!, { line, kind: kind as "set" | "map", elements: new Map() });
    } else if (key === "flush set" || key === "flush map" || key === "delete set" || key === "delete map") {
      const c = containers.get(name!);
      if (!c || c.kind !== kind) throw transactionError(line, `no ${kind} ${name}`);
      if (verb === "flush") c.elements.clear();
      else containers.delete(name!);
    } else if (key === "add element") {
      const c = containers.get(name!);
      if (!c) throw transactionError(line, `no set or map ${name}`);
      const k = elementKey(rest ?? "");
      const existing = c.elements.get(k);
      if (existing !== undefined && existing !== line) throw transactionError(line, `element ${k} exists with another value`);
      c.elements.set(k, line);
    } else {
      throw transactionError(line, `${key} is not an operation kube-proxy writes`);
    }
  }
  if (!family || !tableLine) throw new Error("nftables transaction: it leaves no kube-proxy table");
  const checkReferences = (line: string) => {
    if (line.includes(" jump ") || line.includes(" goto ")) {
      for (const [, target] of line.matchAll(/ (?:jump|goto) (\S+)/g)) {
        if (!chains.has(target!)) throw transactionError(line, `no chain ${target} to jump to`);
      }
    }
    if (line.includes("@")) {
      for (const [, ref] of line.matchAll(/@(\S+)/g)) {
        if (!containers.has(ref!)) throw transactionError(line, `no set or map ${ref}`);
      }
    }
  };
  for (const chain of chains.values()) for (const rule of chain.rules) checkReferences(rule);
  for (const c of containers.values()) for (const element of c.elements.values()) checkReferences(element);
  return { family, tableLine, chains, containers };
}

export function countTable(table: NftablesTable): NftablesCounts {
  const chains = [...table.chains.values()];
  const containers = [...table.containers.entries()];
  return {
    chains: chains.length,
    baseChains: chains.filter((c) => c.hooked).length,
    rules: chains.reduce((n, c) => n + c.rules.length, 0),
    sets: containers.filter(([, c]) => c.kind === "set").length,
    maps: containers.filter(([, c]) => c.kind === "map").length,
    elements: Object.fromEntries(containers.map(([name, c]) => [name, c.elements.size]).sort(([a], [b]) => (a! < b! ? -1 : 1))),
  };
}

const byName = <T>(m: ReadonlyMap<string, T>) => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/** The table as knftables' Fake.Dump() lists it: objects, then rules, then elements, as "add" lines. */
export function nftablesDump(table: NftablesTable): string {
  const chains = byName(table.chains);
  const containers = byName(table.containers);
  const lines = [
    table.tableLine,
    ...chains.map(([, c]) => c.line),
    ...containers.filter(([, c]) => c.kind === "set").map(([, c]) => c.line),
    ...containers.filter(([, c]) => c.kind === "map").map(([, c]) => c.line),
    ...chains.flatMap(([, c]) => c.rules),
    ...containers.flatMap(([, c]) => [...c.elements.values()]),
  ];
  return `${lines.join("\n")}\n`;
}

// sortNFTablesTransaction (pkg/proxy/nftables/helpers_test.go): higher first.
const OBJECT_ORDER: Readonly<Record<string, number>> = { table: 10, chain: 9, rule: 8, set: 7, map: 6, element: 5 };

/**
 * Text sorted as kube-proxy's tests sort both sides before comparing (sortNFTablesTransaction):
 * blank and "#" lines dropped; then by object type (table, chain, rule, set, map, element), by
 * object name, rules keeping their order within a chain, everything else by the whole line.
 */
export function sortLikeKubeProxyNftablesTests(text: string): string {
  const lines = text.split("\n").filter((l) => l !== "" && !l.startsWith("#"));
  for (const l of lines) {
    const type = l.split(" ")[1]!;
    // The Go comparator is not an order for two unknown types; kube-proxy's dumps have none.
    if (!(type in OBJECT_ORDER)) throw new Error(`sortLikeKubeProxyNftablesTests: "${l}" is not about a table, chain, rule, set, map or element`);
  }
  const less = (li: string, lj: string): boolean => {
    const wi = li.split(" ");
    const wj = lj.split(" ");
    if (wi.length < 5 || wj.length < 5) return false;
    if (wi[1] !== wj[1]) return OBJECT_ORDER[wi[1]!]! >= OBJECT_ORDER[wj[1]!]!;
    if (wi[4] !== wj[4]) return wi[4]! < wj[4]!;
    if (wi[1] === "rule") return false;
    return li < lj;
  };
  return [...lines].sort((a, b) => (less(a, b) ? -1 : less(b, a) ? 1 : 0)).join("\n");
}
