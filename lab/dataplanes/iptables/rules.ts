// The rules kube-proxy's iptables mode writes, as text: a port of syncProxyRules
// (pkg/proxy/iptables/proxier.go, the format of Kubernetes 1.28 to 1.33) for the Service shapes the
// testbed uses: ClusterIP and NodePort Services, TCP/UDP, internalTrafficPolicy Cluster,
// externalTrafficPolicy Local or Cluster, ready endpoints on this node or on others.
// Not modelled: LoadBalancer/externalIPs, session affinity, topology hints, terminating endpoints.
//
// Output per family: the `iptables-restore --noflush` input kube-proxy builds on a full sync, and the
// jump rules it installs beforehand with `iptables -I` (iptablesJumpChains). Order inside KUBE-SERVICES
// and KUBE-NODEPORTS follows the given Service order; kube-proxy walks a Go map there, so its own order
// changes between syncs (sortLikeKubeProxyTests gives the order kube-proxy's tests compare in).
import ipaddr from "ipaddr.js";
import { cidrContains, parseCidr, type Family } from "../../../scenario/cidr.js";
import {
  canonicalIp,
  chainHash,
  ipFamilyOf,
  masqueradeMarkOf,
  namespacedName,
  nodePortAddressesOf,
  serviceSignatures,
  servicePortsOf,
  updatedServices,
  validateNode,
  type KubeProxyNode,
  type ServiceEndpoints,
} from "../kube-proxy-inputs.js";

export { chainHash, servicePortName, type Endpoint, type KubeProxyNode, type ServiceEndpoints } from "../kube-proxy-inputs.js";

export type Table = "filter" | "nat";
export type BuiltinChain = "INPUT" | "FORWARD" | "OUTPUT" | "PREROUTING" | "POSTROUTING";

/** A jump from a built-in chain into a kube-proxy chain; installed with `iptables -t TABLE -I CHAIN ARGS`. */
export interface JumpRule {
  readonly table: Table;
  readonly chain: BuiltinChain;
  readonly target: string;
  /** The rule's arguments after the chain name, as kube-proxy passes them to iptables. */
  readonly args: readonly string[];
}

export interface KubeProxyRules {
  readonly family: Family;
  /** `iptables-restore --noflush --counters` input: *filter ... COMMIT *nat ... COMMIT. */
  readonly restore: string;
  /** Jumps in the order kube-proxy ensures them, each preceded by creating its target chain. */
  readonly jumps: readonly JumpRule[];
  /** nfacct counters kube-proxy ensures before restoring (empty unless node.nfacct). */
  readonly nfacctCounters: readonly string[];
  /** Rule counts of the restore input, as kube-proxy's sync_proxy_rules_iptables_total reports them. */
  readonly ruleCounts: { readonly filter: number; readonly nat: number };
  /** More than 1000 endpoints: comments left out of the endpoint rules (largeClusterMode). */
  readonly largeClusterMode: boolean;
}

export const LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000;
export const NFACCT_LOCALHOST_NODEPORTS = "localhost_nps_accepted_pkts";
export const NFACCT_INVALID_DROPPED = "ct_state_invalid_dropped_pkts";

const KUBE_SERVICES = "KUBE-SERVICES";
const KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES";
const KUBE_NODEPORTS = "KUBE-NODEPORTS";
const KUBE_POSTROUTING = "KUBE-POSTROUTING";
const KUBE_MARK_MASQ = "KUBE-MARK-MASQ";
const KUBE_FORWARD = "KUBE-FORWARD";
const KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL";
const KUBE_FIREWALL = "KUBE-FIREWALL";

/** iptablesJumpChains, then kubelet's KUBE-FIREWALL jumps that kube-proxy duplicates. */
const JUMP_TABLE: readonly { table: Table; target: string; chain: BuiltinChain; comment: string; extra: readonly string[] }[] = [
  { table: "filter", target: KUBE_EXTERNAL_SERVICES, chain: "INPUT", comment: "kubernetes externally-visible service portals", extra: ["-m", "conntrack", "--ctstate", "NEW"] },
  { table: "filter", target: KUBE_EXTERNAL_SERVICES, chain: "FORWARD", comment: "kubernetes externally-visible service portals", extra: ["-m", "conntrack", "--ctstate", "NEW"] },
  { table: "filter", target: KUBE_NODEPORTS, chain: "INPUT", comment: "kubernetes health check service ports", extra: [] },
  { table: "filter", target: KUBE_SERVICES, chain: "FORWARD", comment: "kubernetes service portals", extra: ["-m", "conntrack", "--ctstate", "NEW"] },
  { table: "filter", target: KUBE_SERVICES, chain: "OUTPUT", comment: "kubernetes service portals", extra: ["-m", "conntrack", "--ctstate", "NEW"] },
  { table: "filter", target: KUBE_FORWARD, chain: "FORWARD", comment: "kubernetes forwarding rules", extra: [] },
  { table: "filter", target: KUBE_PROXY_FIREWALL, chain: "INPUT", comment: "kubernetes load balancer firewall", extra: ["-m", "conntrack", "--ctstate", "NEW"] },
  { table: "filter", target: KUBE_PROXY_FIREWALL, chain: "OUTPUT", comment: "kubernetes load balancer firewall", extra: ["-m", "conntrack", "--ctstate", "NEW"] },
  { table: "filter", target: KUBE_PROXY_FIREWALL, chain: "FORWARD", comment: "kubernetes load balancer firewall", extra: ["-m", "conntrack", "--ctstate", "NEW"] },
  { table: "nat", target: KUBE_SERVICES, chain: "OUTPUT", comment: "kubernetes service portals", extra: [] },
  { table: "nat", target: KUBE_SERVICES, chain: "PREROUTING", comment: "kubernetes service portals", extra: [] },
  { table: "nat", target: KUBE_POSTROUTING, chain: "POSTROUTING", comment: "kubernetes postrouting rules", extra: [] },
  { table: "filter", target: KUBE_FIREWALL, chain: "INPUT", comment: "", extra: [] },
  { table: "filter", target: KUBE_FIREWALL, chain: "OUTPUT", comment: "", extra: [] },
];

/** The jump rules kube-proxy ensures on a full sync, in its order (each with `-I`, so later ones end up first). */
export const KUBE_PROXY_JUMPS: readonly JumpRule[] = JUMP_TABLE.map((j) => ({
  table: j.table,
  chain: j.chain,
  target: j.target,
  args: [...j.extra, ...(j.comment ? ["-m", "comment", "--comment", j.comment] : []), "-j", j.target],
}));

/** fmt.Sprintf("%0.10f", 1/n) */
function probability(n: number): string {
  return (1 / n).toFixed(10);
}

class Lines {
  readonly lines: string[] = [];
  write(...tokens: (string | readonly string[])[]): void {
    this.lines.push(tokens.flat().join(" "));
  }
}

/** The chains of one Service port, and whether they go into the restore input. */
interface PortChains {
  readonly chainLines: string[];
  readonly rules: string[];
}

export interface IptablesSyncOptions {
  /** kube-proxy's clock, seconds (the periodic full sync, the large-cluster cleanup's period). */
  readonly now?: number;
  /** A full sync, as after a failed restore or kube-proxy's start. */
  readonly full?: boolean;
  /**
   * The KUBE-* chains of the nat table now (kube-proxy's `iptables-save -t nat`), read only when a
   * cleanup of stale chains is due. Default: the chains this proxier's restores left.
   */
  readonly natChains?: () => readonly string[];
}

export interface IptablesSync extends KubeProxyRules {
  /** Whether it was a full sync (every chain written, the jumps ensured). */
  readonly full: boolean;
  /** Chains of Services that are gone, deleted by this restore (`-X`). */
  readonly deletedChains: readonly string[];
}

/** kube-proxy's --iptables-sync-period default: in large-cluster mode stale chains go at most this often. */
export const IPTABLES_SYNC_PERIOD_S = 30;
/** FullSyncPeriod (pkg/proxy/util). */
export const FULL_SYNC_PERIOD_S = 3600;

const SERVICE_CHAIN_PREFIXES = ["KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-"];
/** isServiceChainName: the chains kube-proxy deletes when no Service uses them. */
const isServiceChainName = (name: string) => SERVICE_CHAIN_PREFIXES.some((p) => name.startsWith(p));

/**
 * kube-proxy's iptables proxier for one family (syncProxyRules of pkg/proxy/iptables/proxier.go with
 * MinimizeIPTablesRestore, GA since 1.28), with the state it keeps between syncs. A full sync writes
 * every chain and ensures the jumps from the built-in chains; a partial sync rewrites the top-level
 * chains (KUBE-SERVICES, KUBE-NODEPORTS, the filter chains) and only the chains of the Services that
 * changed, and deletes the chains of Services that are gone: at every sync, or in large-cluster mode
 * (more than 1000 endpoints) at most once per IPTABLES_SYNC_PERIOD_S. The first sync, a failed
 * restore (restoreFailed) and FULL_SYNC_PERIOD_S make a full sync.
 */
export class KubeProxyIptables {
  private needFullSync = true;
  private lastFullSync = Number.NEGATIVE_INFINITY;
  private lastCleanup = Number.NEGATIVE_INFINITY;
  private previous = new Map<string, string>();
  /** The KUBE-* nat chains the restores so far left in the kernel. */
  private readonly natChains = new Set<string>();
  /** What the last restore does to them, once it applied (undone by restoreFailed). */
  private pending: { readonly declared: readonly string[]; readonly deleted: readonly string[] } | undefined;
  /** Whether the restores so far left chains of Services that are gone (large-cluster mode between cleanups). */
  private staleLeft = false;

  constructor(
    readonly node: KubeProxyNode,
    private readonly options: { readonly syncPeriodS?: number; readonly fullSyncPeriodS?: number } = {},
  ) {
    validateNode(node);
  }

  /**
   * Whether the kernel holds, after the last sync's restore, chains of Services that are gone: in
   * large-cluster mode a sync between cleanups leaves them for a later one (by this proxier's own
   * record of what its restores wrote).
   */
  get holdsStaleChains(): boolean {
    return this.staleLeft;
  }

  /** The restore of the last sync did not apply: the next sync is a full one, and the chains are read again. */
  restoreFailed(): void {
    this.needFullSync = true;
    this.previous = new Map();
    this.pending = undefined;
    // What the kernel holds is not known any more: a cleanup reads it.
    this.staleLeft = true;
  }

  sync(services: readonly ServiceEndpoints[], options: IptablesSyncOptions = {}): IptablesSync {
    if (this.pending) {
      for (const c of this.pending.declared) this.natChains.add(c);
      for (const c of this.pending.deleted) this.natChains.delete(c);
      this.pending = undefined;
    }
    const node = this.node;
    const family = node.family;
    const now = options.now ?? 0;
    const full = this.needFullSync || options.full === true || now - this.lastFullSync > (this.options.fullSyncPeriodS ?? FULL_SYNC_PERIOD_S);
    const signatures = serviceSignatures(services, family);
    const updated = updatedServices(this.previous, signatures);
    const isIPv6 = family === "ipv6";
    const mark = masqueradeMarkOf(node);
    const npa = nodePortAddressesOf(node);
    const localhostNodePorts = !isIPv6 && (node.localhostNodePorts ?? true) && npa.containsIPv4Loopback;
    const nfacct = node.nfacct ?? false;
    const detector = node.clusterCIDR ? parseCidr(node.clusterCIDR)!.text : undefined;

    const filterChains = new Lines();
    const filterRules = new Lines();
    const natChains = new Lines();
    const natRules = new Lines();
    const chainLine = (name: string) => `:${name} - [0:0]`;

    for (const c of [KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL]) filterChains.write(chainLine(c));
    for (const c of [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ]) natChains.write(chainLine(c));

    natRules.write("-A", KUBE_POSTROUTING, "-m", "mark", "!", "--mark", `${mark}/${mark}`, "-j", "RETURN");
    natRules.write("-A", KUBE_POSTROUTING, "-j", "MARK", "--xor-mark", mark);
    natRules.write(
      "-A", KUBE_POSTROUTING, "-m", "comment", "--comment", '"kubernetes service traffic requiring SNAT"', "-j", "MASQUERADE",
      (node.randomFully ?? true) ? ["--random-fully"] : [],
    );
    natRules.write("-A", KUBE_MARK_MASQ, "-j", "MARK", "--or-mark", mark);

    if (localhostNodePorts) {
      filterChains.write(chainLine(KUBE_FIREWALL));
      filterRules.write(
        "-A", KUBE_FIREWALL, "-m", "comment", "--comment", '"block incoming localnet connections"',
        "-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP",
      );
    }

    // One entry per Service port of this family (kube-proxy's svcPortMap).
    const ports = servicePortsOf(services, family).map((p) => ({
      ...p,
      eps: p.endpoints.map((e) => ({ ...e, chain: `KUBE-SEP-${chainHash(p.name + p.protocol + e.str)}` })),
    }));

    const totalEndpoints = ports.reduce((n, p) => n + p.eps.length, 0);
    const largeClusterMode = totalEndpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;
    const comment = (text: string) => (largeClusterMode ? [] : ["-m", "comment", "--comment", text]);
    const activeNatChains = new Set<string>([KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ]);

    for (const p of ports) {
      const { name, protocol, port } = p;
      const hash = chainHash(name + protocol);
      const svcChain = `KUBE-SVC-${hash}`;
      const svlChain = `KUBE-SVL-${hash}`;
      const extChain = `KUBE-EXT-${hash}`;
      const nodePort = p.service.type === "NodePort" ? port.nodePort : undefined;
      const externallyAccessible = nodePort !== undefined && nodePort !== 0;
      const externalPolicyLocal = externallyAccessible && p.service.externalTrafficPolicy === "Local";

      const clusterEndpoints = p.eps;
      const localEndpoints = externalPolicyLocal ? p.eps.filter((e) => e.local) : [];
      const hasEndpoints = clusterEndpoints.length > 0;
      const hasExternalEndpoints = externalPolicyLocal ? localEndpoints.length > 0 : hasEndpoints;
      const externalPolicyChain = externalPolicyLocal ? svlChain : svcChain;
      const usesExternalTrafficChain = hasEndpoints && externallyAccessible;
      // The Service's own chains; a partial sync writes them only when the Service changed.
      const own: PortChains = { chainLines: [], rules: [] };
      const ownChain = (chain: string) => {
        activeNatChains.add(chain);
        own.chainLines.push(chainLine(chain));
      };
      const ownRule = (...tokens: (string | readonly string[])[]) => own.rules.push(tokens.flat().join(" "));

      let externalFilterTarget = "";
      let externalFilterComment = "";
      if (!hasEndpoints) {
        externalFilterTarget = "REJECT";
        externalFilterComment = `"${name} has no endpoints"`;
      } else if (!hasExternalEndpoints) {
        externalFilterTarget = "DROP";
        externalFilterComment = `"${name} has no local endpoints"`;
      }

      const dport = ["--dport", String(port.port)];
      if (hasEndpoints) {
        natRules.write("-A", KUBE_SERVICES, "-m", "comment", "--comment", `"${name} cluster IP"`, "-m", protocol, "-p", protocol, "-d", p.clusterIP, dport, "-j", svcChain);
      } else {
        filterRules.write("-A", KUBE_SERVICES, "-m", "comment", "--comment", `"${name} has no endpoints"`, "-m", protocol, "-p", protocol, "-d", p.clusterIP, dport, "-j", "REJECT");
      }

      if (externallyAccessible) {
        if (hasEndpoints) {
          if (localhostNodePorts && nfacct) {
            natRules.write(
              "-A", KUBE_NODEPORTS, "-m", "comment", "--comment", name, "-m", protocol, "-p", protocol, "-d", "127.0.0.0/8",
              "--dport", String(nodePort), "-m", "nfacct", "--nfacct-name", NFACCT_LOCALHOST_NODEPORTS, "-j", extChain,
            );
          }
          natRules.write("-A", KUBE_NODEPORTS, "-m", "comment", "--comment", name, "-m", protocol, "-p", protocol, "--dport", String(nodePort), "-j", extChain);
        }
        if (!hasExternalEndpoints) {
          filterRules.write(
            "-A", KUBE_EXTERNAL_SERVICES, "-m", "comment", "--comment", externalFilterComment, "-m", "addrtype", "--dst-type", "LOCAL",
            "-m", protocol, "-p", protocol, "--dport", String(nodePort), "-j", externalFilterTarget,
          );
        }
      }

      if (hasEndpoints) {
        const args = ["-m", "comment", "--comment", `"${name} cluster IP"`, "-m", protocol, "-p", protocol, "-d", p.clusterIP, ...dport];
        if (node.masqueradeAll) ownRule("-A", svcChain, args, "-j", KUBE_MARK_MASQ);
        else if (detector) ownRule("-A", svcChain, args, "!", "-s", detector, "-j", KUBE_MARK_MASQ);
      }

      if (usesExternalTrafficChain) {
        ownChain(extChain);
        if (!externalPolicyLocal) {
          ownRule("-A", extChain, "-m", "comment", "--comment", `"masquerade traffic for ${name} external destinations"`, "-j", KUBE_MARK_MASQ);
        } else {
          if (detector) {
            ownRule("-A", extChain, "-m", "comment", "--comment", `"pod traffic for ${name} external destinations"`, "-s", detector, "-j", svcChain);
          }
          ownRule("-A", extChain, "-m", "comment", "--comment", `"masquerade LOCAL traffic for ${name} external destinations"`, "-m", "addrtype", "--src-type", "LOCAL", "-j", KUBE_MARK_MASQ);
          ownRule("-A", extChain, "-m", "comment", "--comment", `"route LOCAL traffic for ${name} external destinations"`, "-m", "addrtype", "--src-type", "LOCAL", "-j", svcChain);
        }
        if (hasExternalEndpoints) ownRule("-A", extChain, "-j", externalPolicyChain);
      }

      const toEndpoints = (chain: string, eps: typeof p.eps) => {
        eps.forEach((ep, i) => {
          const stat = i < eps.length - 1 ? ["-m", "statistic", "--mode", "random", "--probability", probability(eps.length - i)] : [];
          ownRule("-A", chain, comment(`"${name} -> ${ep.str}"`), stat, "-j", ep.chain);
        });
      };
      if (clusterEndpoints.length > 0) {
        ownChain(svcChain);
        toEndpoints(svcChain, clusterEndpoints);
      }
      if (localEndpoints.length > 0) {
        ownChain(svlChain);
        toEndpoints(svlChain, localEndpoints);
      }
      for (const ep of clusterEndpoints) {
        ownChain(ep.chain);
        ownRule("-A", ep.chain, comment(name), "-s", ep.ip, "-j", KUBE_MARK_MASQ);
        ownRule("-A", ep.chain, comment(name), "-m", protocol, "-p", protocol, "-j", "DNAT", "--to-destination", ep.str);
      }
      // skipServiceUpdate: a partial sync leaves the chains of unchanged Services as they are.
      if (full || updated.has(namespacedName(p.service))) {
        for (const l of own.chainLines) natChains.write(l);
        for (const r of own.rules) natRules.write(r);
      }
    }

    // Chains no Service uses any more: a chain line flushes each, then it is deleted. In large
    // clusters `iptables-save` takes seconds, so this runs at most once per sync period there.
    const deletedChains: string[] = [];
    if (!largeClusterMode || now - this.lastCleanup > (this.options.syncPeriodS ?? IPTABLES_SYNC_PERIOD_S)) {
      const existing = options.natChains ? options.natChains() : [...this.natChains];
      for (const chain of existing) {
        if (!isServiceChainName(chain) || activeNatChains.has(chain)) continue;
        natChains.write(chainLine(chain));
        natRules.write("-X", chain);
        deletedChains.push(chain);
      }
      this.lastCleanup = now;
      this.staleLeft = false;
    } else {
      this.staleLeft = [...this.natChains].some((chain) => isServiceChainName(chain) && !activeNatChains.has(chain));
    }

    // The tail call into KUBE-NODEPORTS: after every other KUBE-SERVICES rule.
    const lastRuleComment = '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"';
    if (npa.matchAll) {
      const dst = ["-m", "addrtype", "--dst-type", "LOCAL"];
      if (isIPv6) dst.push("!", "-d", "::1/128");
      else if (!localhostNodePorts) dst.push("!", "-d", "127.0.0.0/8");
      natRules.write("-A", KUBE_SERVICES, "-m", "comment", "--comment", lastRuleComment, dst, "-j", KUBE_NODEPORTS);
    } else {
      const seen = new Set<string>();
      for (const a of node.addresses ?? []) {
        if (ipFamilyOf(a) !== family) continue;
        const ip = canonicalIp(a);
        if (seen.has(ip) || !npa.cidrs.some((c) => cidrContains(parseCidr(c)!, ip))) continue;
        seen.add(ip);
        const loopback = ipaddr.parse(ip).range() === "loopback";
        if (loopback && (isIPv6 || !localhostNodePorts)) continue;
        natRules.write("-A", KUBE_SERVICES, "-m", "comment", "--comment", lastRuleComment, "-d", ip, "-j", KUBE_NODEPORTS);
      }
    }

    if (!node.conntrackTcpBeLiberal) {
      filterRules.write("-A", KUBE_FORWARD, "-m", "conntrack", "--ctstate", "INVALID", nfacct ? ["-m", "nfacct", "--nfacct-name", NFACCT_INVALID_DROPPED] : [], "-j", "DROP");
    }
    filterRules.write("-A", KUBE_FORWARD, "-m", "comment", "--comment", '"kubernetes forwarding rules"', "-m", "mark", "--mark", `${mark}/${mark}`, "-j", "ACCEPT");
    filterRules.write("-A", KUBE_FORWARD, "-m", "comment", "--comment", '"kubernetes forwarding conntrack rule"', "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT");

    const restore = ["*filter", ...filterChains.lines, ...filterRules.lines, "COMMIT", "*nat", ...natChains.lines, ...natRules.lines, "COMMIT", ""].join("\n");

    this.pending = { declared: natChains.lines.map((l) => l.slice(1, l.indexOf(" "))), deleted: deletedChains };
    this.previous = signatures;
    this.needFullSync = false;
    if (full) this.lastFullSync = now;
    return {
      family,
      restore,
      jumps: full ? KUBE_PROXY_JUMPS : [],
      nfacctCounters: full && nfacct ? [NFACCT_INVALID_DROPPED, NFACCT_LOCALHOST_NODEPORTS] : [],
      ruleCounts: { filter: filterRules.lines.length, nat: natRules.lines.filter((l) => l.startsWith("-A ")).length },
      largeClusterMode,
      full,
      deletedChains,
    };
  }
}

/** Whether kube-proxy runs in large-cluster mode for these Services: more than 1000 endpoints of the family. */
export function largeClusterModeOf(services: readonly ServiceEndpoints[], family: Family): boolean {
  return servicePortsOf(services, family).reduce((n, p) => n + p.endpoints.length, 0) > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;
}

/** The rule set kube-proxy (iptables mode) writes on its first sync of one family: a full sync. */
export function kubeProxyRules(services: readonly ServiceEndpoints[], node: KubeProxyNode): KubeProxyRules {
  return new KubeProxyIptables(node).sync(services);
}

// ---------------------------------------------------------------------------------------------
// The order kube-proxy's tests compare dumps in (sortIPTablesRules in proxier_test.go).

interface ParsedChain {
  name: string;
  rules: string[];
  /** A `-X` line deletes it at the end of the restore. */
  deleted: boolean;
}

interface ParsedTable {
  name: string;
  chains: ParsedChain[];
}

/** Parses restore input into tables, chains and rules (rules grouped under their chain, in order). */
export function parseRestore(text: string): ParsedTable[] {
  const tables: ParsedTable[] = [];
  let current: ParsedTable | undefined;
  let byName = new Map<string, ParsedChain>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("*")) {
      current = { name: line.slice(1), chains: [] };
      byName = new Map();
      tables.push(current);
    } else if (line === "COMMIT") {
      current = undefined;
    } else if (!current) {
      throw new Error(`restore input: ${JSON.stringify(line)} is outside a table; accepted: lines between *TABLE and COMMIT`);
    } else if (line.startsWith(":")) {
      const chain = { name: line.slice(1).split(" ")[0]!, rules: [], deleted: false };
      current.chains.push(chain);
      byName.set(chain.name, chain);
    } else if (line.startsWith("-A ")) {
      const chainName = line.split(" ")[1]!;
      const chain = byName.get(chainName);
      if (!chain) throw new Error(`restore input: rule for undeclared chain ${chainName}: ${line}`);
      chain.rules.push(line);
    } else if (line.startsWith("-X ")) {
      const chainName = line.slice(3).trim();
      const chain = byName.get(chainName);
      if (!chain) throw new Error(`restore input: deletion of undeclared chain ${chainName}: ${line}`);
      chain.deleted = true;
    } else {
      throw new Error(`restore input: ${JSON.stringify(line)} is not accepted; accepted: *TABLE, :CHAIN, -A CHAIN ..., -X CHAIN, COMMIT`);
    }
  }
  return tables;
}

function commentOf(rule: string): string | undefined {
  const m = / --comment (?:"([^"]*)"|(\S+))/.exec(rule);
  return m ? (m[1] ?? m[2]) : undefined;
}

/** orderByCommentServiceName: the comment up to its first space or colon; undefined without a comment. */
function commentServiceName(rule: string): string | undefined {
  const c = commentOf(rule);
  if (c === undefined) return undefined;
  const i = c.search(/[ :]/);
  return i === -1 ? c : c.slice(0, i);
}

function byServiceName(a: string, b: string): number {
  const x = commentServiceName(a);
  const y = commentServiceName(b);
  if (x === undefined || y === undefined) return 0;
  return x < y ? -1 : x > y ? 1 : 0;
}

function chainOrder(a: string, b: string): number {
  const rank = (n: string) => (n === KUBE_NODEPORTS ? 0 : n === KUBE_SERVICES ? 1 : n.startsWith("KUBE-") ? 2 : 3);
  const d = rank(a) - rank(b);
  if (d !== 0) return d;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Restore input sorted as kube-proxy's tests sort it before comparing with their golden dumps:
 * tables by name; chains KUBE-NODEPORTS, KUBE-SERVICES, then the other KUBE-* chains alphabetically;
 * rules grouped by chain; KUBE-NODEPORTS and KUBE-SERVICES rules by the Service name in their
 * comment (stable), with nat KUBE-SERVICES' "must be the last rule" rule kept last; then the chains a
 * `-X` deletes, in chain order (IPTablesDump.String()).
 */
export function sortLikeKubeProxyTests(text: string): string {
  const tables = parseRestore(text).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  for (const t of tables) {
    t.chains.sort((a, b) => chainOrder(a.name, b.name));
    for (const c of t.chains) {
      if (c.name === KUBE_NODEPORTS || (c.name === KUBE_SERVICES && t.name === "filter")) {
        c.rules.sort(byServiceName);
      } else if (c.name === KUBE_SERVICES) {
        const isLast = (r: string) => (commentOf(r) ?? "").includes("must be the last rule");
        c.rules.sort((a, b) => (isLast(a) === isLast(b) ? byServiceName(a, b) : isLast(a) ? 1 : -1));
      }
    }
    out.push(
      `*${t.name}`,
      ...t.chains.map((c) => `:${c.name} - [0:0]`),
      ...t.chains.flatMap((c) => c.rules),
      ...t.chains.filter((c) => c.deleted).map((c) => `-X ${c.name}`),
      "COMMIT",
    );
  }
  return out.join("\n") + "\n";
}

/** Number of "-A" rules per table in restore input. */
export function countRestoreRules(text: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const t of parseRestore(text)) counts[t.name] = t.chains.reduce((n, c) => n + c.rules.length, 0);
  return counts;
}
