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
  namespacedName,
  serviceSignatures,
  servicePortsOf,
  updatedServices,
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

/** What each operation of a transaction is part of, for transactions split the way kubernetes issue #139328 proposes. */
export type OperationGroup = "setup" | "endpoint" | "service";

/** knftables' writer for one table: each method appends one operation, in knftables' syntax. */
class Transaction {
  readonly lines: string[] = [];
  /** The group of each line, and the Service port or endpoint chain it belongs to. */
  readonly groups: { group: OperationGroup; owner: string }[] = [];
  /** Where the next operations belong. */
  group: OperationGroup = "setup";
  owner = "";
  constructor(private readonly family: "ip" | "ip6") {}

  private op(verb: string, kind: string, rest: string): void {
    this.lines.push(`${verb} ${kind} ${this.family} ${KUBE_PROXY_TABLE}${rest ? ` ${rest}` : ""}`);
    this.groups.push({ group: this.group, owner: this.owner });
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
  /** knftables' Element: a delete names the key only. */
  element(verb: "add" | "delete", container: string, key: string, value?: string, comment?: string): void {
    const rest = verb === "add" ? `${comment ? ` comment ${quote(comment)}` : ""}${value ? ` : ${value}` : ""}` : "";
    this.op(verb, "element", `${container} { ${key}${rest} }`);
  }
  flush(kind: "chain" | "set", name: string): void {
    this.op("flush", kind, name);
  }
  delete(kind: "chain" | "set", name: string): void {
    this.op("delete", kind, name);
  }
  get text(): string {
    return this.lines.length === 0 ? "" : `${this.lines.join("\n")}\n`;
  }
}

/**
 * nftElementStorage: kube-proxy's copy of one set or map, so that a sync writes only the elements that
 * changed. Keys and values as " . "-joined strings.
 */
class ElementStorage {
  private readonly elements = new Map<string, string>();
  private leftover = new Set<string>();
  constructor(readonly name: string) {}

  /** readOrReset: the elements as the kernel holds them (none when the table does not exist). */
  read(elements: ReadonlyMap<string, string> | undefined): void {
    this.elements.clear();
    for (const [k, v] of elements ?? []) this.elements.set(k, v);
    this.leftover = new Set(this.elements.keys());
  }

  ensure(tx: Transaction, key: readonly (string | number)[], value?: string, comment?: string): void {
    const k = key.join(" . ");
    const v = value ?? "";
    const existing = this.elements.get(k);
    if (existing !== undefined) {
      if (existing !== v) {
        tx.element("delete", this.name, k);
        tx.element("add", this.name, k, value, comment);
        this.elements.set(k, v);
      }
      this.leftover.delete(k);
    } else {
      tx.element("add", this.name, k, value, comment);
      this.elements.set(k, v);
    }
  }

  cleanupLeftoverKeys(tx: Transaction): void {
    for (const k of this.leftover) {
      tx.element("delete", this.name, k);
      this.elements.delete(k);
    }
    this.leftover = new Set(this.elements.keys());
  }
}

/** The sets and maps kube-proxy keeps copies of, in the order it cleans them up. */
const STORED_CONTAINERS = ["cluster-ips", "service-ips", "firewall-ips", "no-endpoint-services", "no-endpoint-nodeports", "service-nodeports"] as const;

/**
 * What kube-proxy reads from and writes to the kernel: the table's chains (knftables List("chain")),
 * a set's or map's elements (ListElements), and running a transaction (`nft -f`). The lab's kernel
 * side implements it with nft; NftablesModel implements it on the transaction model.
 */
export interface NftablesKernel {
  /** The table's chain names, or undefined when the table does not exist. */
  chains(): readonly string[] | undefined;
  /** The elements of a set or map by " . "-joined key, values " . "-joined; undefined when there is no such set or map. */
  elements(container: string): ReadonlyMap<string, string> | undefined;
  /** Runs one transaction; throws when the kernel refuses it (nothing of it is applied). */
  run(transaction: string): void;
}

export interface NftablesSyncOptions {
  /** kube-proxy's clock, seconds: stale chains are deleted in the first sync a second after they went stale. */
  readonly now?: number;
  /** A full sync, as after a failed one or a change of the node (needFullSync). */
  readonly full?: boolean;
  /**
   * The cold start of kubernetes issue #139328: on a kernel without the table, the sync's transaction
   * split into several of at most this many operations (coldStartTransactions).
   */
  readonly split?: number;
}

export interface NftablesSync {
  readonly family: Family;
  /** Whether it was a full sync (setupNFTables and every Service chain written). */
  readonly full: boolean;
  /** What kube-proxy ran, in order: the stale-chain deletion when one was due, then the sync's own transaction. */
  readonly transactions: readonly string[];
  /** Operations of the sync's own transaction (knftables' LastTransaction.NumOperations()). */
  readonly operations: number;
  /** Chains flushed because no Service uses them any more; deleted by a sync a second later. */
  readonly staleChains: readonly string[];
}

/** FullSyncPeriod (pkg/proxy/util): a sync this long after the last full one is a full one. */
export const FULL_SYNC_PERIOD_S = 3600;
/** How long a flushed chain waits before it is deleted (kernels before 6.2 need the delay). */
export const STALE_CHAIN_DELAY_S = 1;

/** isServiceChainName: Service and endpoint chains have a "/" in their names; kube-proxy's own chains do not. */
const isServiceChainName = (name: string) => name.includes("/");

/**
 * kube-proxy's nftables proxier for one family (syncProxyRules and setupNFTables of
 * pkg/proxy/nftables/proxier.go), with the state it keeps between syncs: its copies of the sets and
 * maps, the chains that went stale and when, whether it has synced once. The first sync of a new
 * proxier is a full sync; later ones are partial (only the chains of the Services that changed, the
 * elements that changed, the stale chains flushed), unless `full` is asked or FULL_SYNC_PERIOD_S has
 * passed. A new proxier on a kernel that already holds the table is kube-proxy restarting: its full
 * sync keeps the elements and endpoint chains it finds.
 */
export class KubeProxyNftables {
  private flushed = false;
  private syncedOnce = false;
  private needFullSync = true;
  private lastFullSync = Number.NEGATIVE_INFINITY;
  private readonly storages = new Map(STORED_CONTAINERS.map((name) => [name, new ElementStorage(name)]));
  private readonly staleChains = new Map<string, number>();
  private previous = new Map<string, string>();

  constructor(
    readonly node: KubeProxyNftablesNode,
    private readonly options: { readonly fullSyncPeriodS?: number } = {},
  ) {
    validateNftablesNode(node);
  }

  private storage(name: (typeof STORED_CONTAINERS)[number]): ElementStorage {
    return this.storages.get(name)!;
  }

  /** The chains this proxier flushed and will delete, with the time they went stale. */
  get stale(): ReadonlyMap<string, number> {
    return this.staleChains;
  }

  /** Writes the kernel's table for the Services (syncProxyRules), through `kernel`. Throws what the kernel throws; the next sync is then a full one. */
  sync(services: readonly ServiceEndpoints[], kernel: NftablesKernel, options: NftablesSyncOptions = {}): NftablesSync {
    const node = this.node;
    const family = node.family;
    const now = options.now ?? 0;
    const doFullSync = this.needFullSync || options.full === true || now - this.lastFullSync > (this.options.fullSyncPeriodS ?? FULL_SYNC_PERIOD_S);
    const signatures = serviceSignatures(services, family);
    const updated = updatedServices(this.previous, signatures);
    const transactions: string[] = [];
    let success = false;
    try {
      // Stale chains of earlier syncs, in a transaction of their own.
      if (this.staleChains.size > 0) {
        const deletion = new Transaction(NFT_FAMILY[family]);
        for (const [chain, since] of this.staleChains) {
          if (since < now - STALE_CHAIN_DELAY_S) {
            deletion.delete("chain", chain);
            this.staleChains.delete(chain);
          }
        }
        if (deletion.lines.length > 0) {
          kernel.run(deletion.text);
          transactions.push(deletion.text);
        }
      }

      const tx = new Transaction(NFT_FAMILY[family]);
      if (doFullSync) this.setupNFTables(tx, kernel);
      const listed = kernel.chains();
      const existingChains = listed === undefined ? undefined : new Set(listed);
      const activeChains = new Set<string>();
      const ensureChain = (name: string, skip: boolean) => {
        if (activeChains.has(name)) return;
        activeChains.add(name);
        if (skip) return;
        tx.chain(name);
        tx.flush("chain", name);
      };
      // epChainSkipUpdate: only the first sync of a proxier keeps the endpoint chains it finds.
      const epChainSkipUpdate = (chain: string) => !this.syncedOnce && existingChains !== undefined && existingChains.has(chain);
      this.writeServices(tx, services, { doFullSync, updated, ensureChain, epChainSkipUpdate });

      // Chains no Service uses any more: flushed now, deleted a second later.
      tx.group = "setup";
      tx.owner = "";
      const flushed: string[] = [];
      for (const chain of existingChains ?? []) {
        if (!isServiceChainName(chain)) continue;
        if (!activeChains.has(chain)) {
          tx.flush("chain", chain);
          this.staleChains.set(chain, now);
          flushed.push(chain);
        } else {
          this.staleChains.delete(chain);
        }
      }
      for (const name of STORED_CONTAINERS) this.storage(name).cleanupLeftoverKeys(tx);

      const parts = options.split === undefined ? [tx.text] : coldStartTransactions(tx, options.split, listed);
      try {
        for (const part of parts) if (part) kernel.run(part);
      } catch (error) {
        // staleChains is wrong now: the chains were not flushed.
        this.staleChains.clear();
        throw error;
      }
      transactions.push(...parts);
      success = true;
      return { family, full: doFullSync, transactions, operations: tx.lines.length, staleChains: flushed };
    } finally {
      this.syncedOnce = true;
      this.previous = signatures;
      if (!success) this.needFullSync = true;
      else {
        this.needFullSync = false;
        if (doFullSync) this.lastFullSync = now;
      }
    }
  }

  private setupNFTables(tx: Transaction, kernel: NftablesKernel): void {
    const node = this.node;
    const family = node.family;
    const ipX = NFT_FAMILY[family];
    const addrType = family === "ipv4" ? "ipv4_addr" : "ipv6_addr";
    const noLocalhost = family === "ipv4" ? "ip daddr != 127.0.0.0/8" : "ip6 daddr != ::1";
    const mark = masqueradeMarkOf(node);
    const npa = nodePortAddressesOf(node);
    const serviceCIDRs = (node.serviceCIDRs ?? []).map((c) => parseCidr(c)!).filter((c) => c.family === family).map((c) => c.text);
    const created = new Set<string>();
    const ensureChain = (name: string) => {
      if (created.has(name)) return;
      created.add(name);
      tx.chain(name);
      tx.flush("chain", name);
    };
    tx.group = "setup";
    tx.owner = "";
    tx.table("rules for kube-proxy");
    // Once per process: add and delete the base chains so that changed properties take effect.
    if (!this.flushed) {
      for (const bc of BASE_CHAINS) {
        tx.chain(bc.name);
        tx.delete("chain", bc.name);
      }
      this.flushed = true;
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
      for (const ip of nodeIps) tx.element("add", "nodeport-ips", ip);
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
    for (const name of STORED_CONTAINERS) this.storage(name).read(kernel.elements(name));
  }

  /** syncProxyRules' loop over the Service ports. */
  private writeServices(
    tx: Transaction,
    services: readonly ServiceEndpoints[],
    how: {
      doFullSync: boolean;
      updated: ReadonlySet<string>;
      ensureChain: (name: string, skip: boolean) => void;
      epChainSkipUpdate: (chain: string) => boolean;
    },
  ): void {
    const node = this.node;
    const ipX = NFT_FAMILY[node.family];
    const detector = node.clusterCIDR ? parseCidr(node.clusterCIDR)!.text : undefined;
    const { ensureChain, epChainSkipUpdate } = how;
    for (const p of servicePortsOf(services, node.family)) {
      const { name, protocol, port, clusterIP } = p;
      const ref = { namespace: p.service.namespace, name: p.service.name, protocol, portName: port.name };
      const base = serviceChainBase(ref);
      const clusterPolicyChain = `service-${base}`;
      const localPolicyChain = `local-${base}`;
      const externalTrafficChain = `external-${base}`;
      const nodePort = p.service.type === "NodePort" ? (port.nodePort ?? 0) : 0;
      const externallyAccessible = nodePort !== 0;
      const externalPolicyLocal = externallyAccessible && p.service.externalTrafficPolicy === "Local";
      // skipServiceUpdate: a partial sync writes only the chains of Services that changed.
      const skip = !how.doFullSync && !how.updated.has(namespacedName(p.service));

      // CategorizeEndpoints with internalTrafficPolicy Cluster: every ready endpoint serves internal
      // traffic; with externalTrafficPolicy Local the node's own ones serve external traffic.
      const clusterEndpoints = p.endpoints;
      const localEndpoints = externalPolicyLocal ? p.endpoints.filter((e) => e.local) : [];
      const hasEndpoints = clusterEndpoints.length > 0;
      const endpointChain = new Map(clusterEndpoints.map((e) => [e, `endpoint-${endpointChainBase(ref, e.ip, port.targetPort)}`]));

      for (const ep of clusterEndpoints) {
        const chain = endpointChain.get(ep)!;
        tx.group = "endpoint";
        tx.owner = chain;
        ensureChain(chain, skip || epChainSkipUpdate(chain));
      }
      tx.group = "service";
      tx.owner = name;
      const usesClusterPolicyChain = clusterEndpoints.length > 0;
      if (usesClusterPolicyChain) ensureChain(clusterPolicyChain, skip);
      const usesLocalPolicyChain = localEndpoints.length > 0;
      if (usesLocalPolicyChain) ensureChain(localPolicyChain, skip);

      const hasInternalEndpoints = hasEndpoints;
      const externalPolicyChain = externalPolicyLocal ? localPolicyChain : clusterPolicyChain;
      const hasExternalEndpoints = externalPolicyLocal ? localEndpoints.length > 0 : hasEndpoints;
      const usesExternalTrafficChain = hasEndpoints && externallyAccessible;
      if (usesExternalTrafficChain) ensureChain(externalTrafficChain, skip);

      const internalVerdict = hasEndpoints ? "" : `goto ${REJECT_CHAIN}`;
      const externalVerdict = !hasEndpoints ? `goto ${REJECT_CHAIN}` : !hasExternalEndpoints ? "drop" : "";

      this.storage("cluster-ips").ensure(tx, [clusterIP]);
      if (hasInternalEndpoints) this.storage("service-ips").ensure(tx, [clusterIP, protocol, port.port], `goto ${clusterPolicyChain}`);
      else this.storage("no-endpoint-services").ensure(tx, [clusterIP, protocol, port.port], internalVerdict, name);

      if (nodePort !== 0) {
        if (hasEndpoints) this.storage("service-nodeports").ensure(tx, [protocol, nodePort], `goto ${externalTrafficChain}`);
        if (!hasExternalEndpoints) this.storage("no-endpoint-nodeports").ensure(tx, [protocol, nodePort], externalVerdict, name);
      }
      if (skip) continue;

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
        if (epChainSkipUpdate(chain)) continue;
        tx.group = "endpoint";
        tx.owner = chain;
        tx.rule(chain, `${ipX} saddr ${ep.ip} jump ${MARK_MASQ_CHAIN}`);
        tx.rule(chain, `meta l4proto ${protocol} dnat to ${ep.str}`);
      }
    }
  }
}

function validateNftablesNode(node: KubeProxyNftablesNode): void {
  validateNode(node);
  for (const c of node.serviceCIDRs ?? []) if (!parseCidr(c)) rejectNodeSetting("serviceCIDRs", c, "CIDRs, e.g. 198.19.128.0/17");
}

/** The transaction kube-proxy (nftables mode) runs on its first full sync of one family, on a node without its table. */
export function kubeProxyNftablesRules(node: KubeProxyNftablesNode, services: readonly ServiceEndpoints[]): KubeProxyNftablesRules {
  const model = new NftablesModel();
  const { transactions } = new KubeProxyNftables(node).sync(services, model);
  const ruleset = transactions.join("");
  return { family: node.family, ruleset, counts: countTable(model.table!) };
}

/** At most this many operations per transaction of a split cold start (kubernetes PR #139546's bound). */
export const COLD_START_MAX_OPERATIONS = 1000;

/**
 * The cold start of kubernetes issue #139328: kube-proxy's first full sync on a node without its
 * table, split into several transactions instead of one: the table, its base chains, sets and maps
 * first; then the endpoint chains with their rules; then the Service chains with their rules and
 * their map elements, in transactions of at most `maxOperations` operations (an endpoint chain and a
 * Service port never split). Run in order, they leave the table the single transaction leaves.
 */
function coldStartTransactions(tx: Transaction, maxOperations: number, chains: readonly string[] | undefined): string[] {
  if (!Number.isInteger(maxOperations) || maxOperations < 1) {
    throw new Error(`maxOperations: ${maxOperations} is not accepted; accepted: a positive integer`);
  }
  if (chains !== undefined && chains.length > 0) {
    throw new Error("a cold start split into several transactions starts from a node without kube-proxy's table; this one has it");
  }
  const byGroup = (group: OperationGroup) => {
    const owners = new Map<string, string[]>();
    tx.lines.forEach((line, i) => {
      const g = tx.groups[i]!;
      if (g.group !== group) return;
      const list = owners.get(g.owner) ?? [];
      list.push(line);
      owners.set(g.owner, list);
    });
    return [...owners.values()];
  };
  const chunks = (blocks: string[][]) => {
    const out: string[] = [];
    let current: string[] = [];
    for (const block of blocks) {
      if (current.length > 0 && current.length + block.length > maxOperations) {
        out.push(`${current.join("\n")}\n`);
        current = [];
      }
      current.push(...block);
    }
    if (current.length > 0) out.push(`${current.join("\n")}\n`);
    return out;
  };
  return [...chunks(byGroup("setup")), ...chunks(byGroup("endpoint")), ...chunks(byGroup("service"))];
}

/** The transactions of a cold start split as kubernetes issue #139328 proposes (coldStartTransactions). */
export function kubeProxyNftablesColdStartSplit(
  node: KubeProxyNftablesNode,
  services: readonly ServiceEndpoints[],
  maxOperations = COLD_START_MAX_OPERATIONS,
): string[] {
  return [...new KubeProxyNftables(node).sync(services, new NftablesModel(), { split: maxOperations }).transactions];
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
 * Applies a transaction of add/flush/delete operations on one table (a new one, or a copy of `base`),
 * as the kernel would, and throws on what the kernel would refuse: an object used before it exists,
 * a duplicate key with another value, a jump, goto or @-lookup of something the table does not hold.
 */
export function applyNftablesTransaction(text: string, base?: NftablesTable): NftablesTable {
  const table: MutableTable = base
    ? {
        family: base.family,
        tableLine: base.tableLine,
        chains: new Map([...base.chains].map(([name, c]) => [name, { ...c, rules: [...c.rules] }])),
        containers: new Map([...base.containers].map(([name, c]) => [name, { ...c, elements: new Map(c.elements) }])),
      }
    : { family: undefined, tableLine: "", chains: new Map(), containers: new Map() };
  applyOperations(table, text);
  if (!table.family || !table.tableLine) throw new Error("nftables transaction: it leaves no kube-proxy table");
  checkReferences(table);
  return table as NftablesTable;
}

interface MutableTable {
  family: "ip" | "ip6" | undefined;
  tableLine: string;
  readonly chains: Map<string, ChainState>;
  readonly containers: Map<string, ContainerState>;
}

function applyOperations(table: MutableTable, text: string): void {
  const { chains, containers } = table;
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    // VERB OBJECT FAMILY TABLE [NAME [REST]], cut by hand: the transaction of 10000 Services has 130000 lines.
    const cut: number[] = [];
    for (let at = line.indexOf(" "); at !== -1 && cut.length < 5; at = line.indexOf(" ", at + 1)) cut.push(at);
    if (cut.length < 3) throw transactionError(line, "not an operation of the form VERB OBJECT FAMILY TABLE ...");
    const verb = line.slice(0, cut[0]);
    const kind = line.slice(cut[0]! + 1, cut[1]);
    const fam = line.slice(cut[1]! + 1, cut[2]);
    const tableName = line.slice(cut[2]! + 1, cut[3] ?? line.length);
    const name = cut[3] === undefined ? undefined : line.slice(cut[3] + 1, cut[4] ?? line.length);
    const rest = cut[4] === undefined ? undefined : line.slice(cut[4] + 1);
    if (fam !== "ip" && fam !== "ip6") throw transactionError(line, `family ${fam} is not ip or ip6`);
    if (tableName !== KUBE_PROXY_TABLE) throw transactionError(line, `table ${tableName} is not ${KUBE_PROXY_TABLE}`);
    if (table.family !== undefined && fam !== table.family) throw transactionError(line, `family ${fam} in a transaction on ${table.family}`);
    table.family = fam;
    if (kind !== "table" && !table.tableLine) throw transactionError(line, "the table does not exist");
    if (kind !== "table" && name === undefined) throw transactionError(line, `no ${kind} name`);
    const key = `${verb} ${kind}`;
    if (key === "add table") {
      table.tableLine ||= line;
    } else if (key === "delete table") {
      table.tableLine = "";
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
    } else if (key === "add element" || key === "delete element") {
      const c = containers.get(name!);
      if (!c) throw transactionError(line, `no set or map ${name}`);
      const k = elementKey(rest ?? "");
      if (verb === "delete") {
        if (!c.elements.delete(k)) throw transactionError(line, `no element ${k}`);
        continue;
      }
      const existing = c.elements.get(k);
      if (existing !== undefined && existing !== line) throw transactionError(line, `element ${k} exists with another value`);
      c.elements.set(k, line);
    } else {
      throw transactionError(line, `${key} is not an operation kube-proxy writes`);
    }
  }
}

function checkReferences(table: MutableTable): void {
  const { chains, containers } = table;
  const check = (line: string) => {
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
  for (const chain of chains.values()) for (const rule of chain.rules) check(rule);
  for (const c of containers.values()) for (const element of c.elements.values()) check(element);
}

/** The value of an "add element" line of a map (what follows " : "), or "" for a set's element. */
function elementValue(line: string): string {
  const body = line.slice(line.indexOf("{ ") + 2, line.lastIndexOf(" }"));
  const at = body.indexOf(" : ");
  return at === -1 ? "" : body.slice(at + 3);
}

/**
 * The kernel as kube-proxy sees it, on the transaction model: what its tests run against (knftables'
 * Fake). Each transaction is checked and applied whole, or not at all.
 */
export class NftablesModel implements NftablesKernel {
  constructor(public table?: NftablesTable) {}
  chains(): readonly string[] | undefined {
    return this.table ? [...this.table.chains.keys()] : undefined;
  }
  elements(container: string): ReadonlyMap<string, string> | undefined {
    const c = this.table?.containers.get(container);
    return c ? new Map([...c.elements].map(([k, line]) => [k, elementValue(line)])) : undefined;
  }
  run(transaction: string): void {
    this.table = applyNftablesTransaction(transaction, this.table);
  }
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
