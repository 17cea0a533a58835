// kube-proxy's nftables dataplane inside a network namespace: the rulesets of
// kube-proxy-nftables-rules.ts applied with ONE `nft -f` per family (one atomic kernel transaction
// each), a count of what the kernel then holds, and a teardown that deletes kube-proxy's tables.
//
// Each application replaces the family's kube-proxy table inside the same transaction (an "add table"
// and a "delete table" ahead of kube-proxy's first full sync), so a step starts from the table a
// freshly started kube-proxy writes, with no moment without rules. The tables live beside any
// iptables (legacy or nft) rules of the namespace; netfilter runs both, which is why the lab checks
// at every step that no other Service dataplane is on the packet path (lab/dataplanes/).
import { existsSync } from "node:fs";
import type { Family } from "../../../scenario/cidr.js";
import { podClusterCidr, type TopologyPlan } from "../../topology.js";
import type { ServiceEndpoints } from "../kube-proxy-inputs.js";
import {
  KUBE_PROXY_TABLE,
  NFT_FAMILY,
  kubeProxyNftablesRules,
  type KubeProxyNftablesNode,
  type KubeProxyNftablesRules,
  type NftablesCounts,
  type NftablesKernel,
} from "./rules.js";
import { exec, inNetns } from "../../netns.js";

const FAMILIES: readonly Family[] = ["ipv4", "ipv6"];
/** A transaction of 10000 Services is about 13 MB of nft input per family. */
const NFT_TIMEOUT_MS = 600_000;

/** Why this host cannot run the nftables dataplane (no nft binary), or undefined. */
export function nftablesHostProblem(): string | undefined {
  try {
    return exec(["nft", "--version"]).status === 0 ? undefined : "the nftables dataplane needs nft (Debian: nftables)";
  } catch {
    return "the nftables dataplane needs nft (Debian: nftables)";
  }
}

/**
 * Pure: the node settings of the lab's worker for kube-proxy in nftables mode. The pod link is the
 * cluster CIDR; NodePorts are served on the node's uplink address only, which is kube-proxy's
 * nftables-mode default (--nodeport-addresses primary).
 */
export function labNftablesNode(plan: Pick<TopologyPlan, "addresses" | "links" | "clientPod">, family: Family, serviceCIDRs: readonly string[]): KubeProxyNftablesNode {
  const node = plan.addresses.node[family];
  return {
    family,
    clusterCIDR: podClusterCidr(plan, family),
    nodePortAddresses: [`${node}/${family === "ipv4" ? 32 : 128}`],
    addresses: [node, plan.links.pod.gateway.addresses[family]],
    serviceCIDRs,
  };
}

/** Pure: the rulesets kube-proxy's nftables mode writes for the Services on the lab's worker, one per family. */
export function labKubeProxyNftablesRules(
  services: readonly ServiceEndpoints[],
  plan: Pick<TopologyPlan, "addresses" | "links" | "clientPod">,
  serviceCIDRs: readonly string[],
): KubeProxyNftablesRules[] {
  return FAMILIES.map((family) => kubeProxyNftablesRules(labNftablesNode(plan, family, serviceCIDRs), services));
}

function checkNetns(netns: string): void {
  if (!/^[A-Za-z0-9_.-]+$/.test(netns) || !existsSync(`/run/netns/${netns}`)) {
    throw new Error(`nftables dataplane: netns ${JSON.stringify(netns)} does not exist; accepted: a namespace made with \`ip netns add NAME\``);
  }
}

function nft(netns: string, args: readonly string[], input?: string): string {
  const argv = inNetns(netns, ["nft", ...args]);
  const r = exec(argv, { ...(input !== undefined ? { input } : {}), timeoutMs: NFT_TIMEOUT_MS });
  if (r.status !== 0) {
    const why = r.signal ? `killed by ${r.signal}` : `exit ${r.status}`;
    const detail = (r.stderr.trim() || r.stdout.trim()).split("\n").slice(0, 6).join("\n");
    throw new Error(`nftables dataplane: \`nft ${args.join(" ")}\` in netns ${netns} failed (${why}): ${detail}`);
  }
  return r.stdout;
}

// A table's flags over netlink (NFNL_SUBSYS_NFTABLES 10, NFT_MSG_GETTABLE 1, reply NFT_MSG_NEWTABLE
// 0 with NFTA_TABLE_FLAGS 2, NFT_TABLE_F_DORMANT 1), as the nfacct counters of iptables-dataplane.ts:
// nft 1.0.6 prints a dormant flag only when it lists the whole table, which takes seconds at 10000
// Services. Prints "NFPROTO STATE" lines, STATE one of absent, active, dormant, errnoN.
const TABLE_STATE_SCRIPT = String.raw`
my ($name, @families) = @ARGV;
socket(my $s, 16, 3, 12) or die "netlink socket: $!\n";
my $seq = 0;
for my $family (@families) {
  my $n = "$name\0";
  my $alen = 4 + length $n;
  my $payload = pack("CCn", $family, 0, 0) . pack("SS", $alen, 1) . $n . ("\0" x ((4 - $alen % 4) % 4));
  send($s, pack("LSSLL", 16 + length $payload, (10 << 8) | 1, 0x1, ++$seq, 0) . $payload, 0) or die "send: $!\n";
  my $state;
  while (!defined $state) {
    defined(recv($s, my $buf, 65536, 0)) or die "recv: $!\n";
    for (my $o = 0; $o + 16 <= length $buf; ) {
      my ($len, $t) = unpack("LS", substr($buf, $o, 6));
      last if $len < 16;
      if ($t == 2) { my $err = unpack("l", substr($buf, $o + 16, 4)); $state = $err == -2 ? "absent" : "errno" . -$err; last }
      if ($t == (10 << 8)) {
        my $flags = 0;
        for (my $a = $o + 20; $a + 4 <= $o + $len; ) {
          my ($l, $type) = unpack("SS", substr($buf, $a, 4));
          last if $l < 4;
          $flags = unpack("N", substr($buf, $a + 4, 4)) if ($type & 0x3fff) == 2;
          $a += ($l + 3) & ~3;
        }
        $state = ($flags & 1) ? "dormant" : "active";
        last;
      }
      $o += ($len + 3) & ~3;
    }
  }
  print "$family $state\n";
}
`;

/** NFPROTO_IPV4 and NFPROTO_IPV6: the nfgenmsg family of each nft family. */
const NFPROTO: Readonly<Record<Family, number>> = { ipv4: 2, ipv6: 10 };

/** Whether each family's kube-proxy table is absent, on the packet path (active), or parked (dormant: its hooks unregistered). */
export type NftablesTableState = "absent" | "active" | "dormant";

/** The state of each family's kube-proxy table, read from the kernel's table flags. */
export async function kubeProxyNftablesStates(netns: string): Promise<Record<Family, NftablesTableState>> {
  checkNetns(netns);
  const r = exec(inNetns(netns, ["perl", "-e", TABLE_STATE_SCRIPT, KUBE_PROXY_TABLE, ...FAMILIES.map((f) => String(NFPROTO[f]))]));
  const states = new Map(r.stdout.trim().split("\n").map((line) => line.split(" ") as [string, string]));
  const of = (f: Family): NftablesTableState => {
    const state = states.get(String(NFPROTO[f]));
    if (state === "absent" || state === "active" || state === "dormant") return state;
    throw new Error(`nftables dataplane: cannot read the ${f} kube-proxy table's flags in netns ${netns}: ${state ?? (r.stderr.trim() || `exit ${r.status}`)}`);
  };
  return { ipv4: of("ipv4"), ipv6: of("ipv6") };
}

// The tables' flags set over netlink in one batch (NFNL_MSG_BATCH_BEGIN 0x10, NFT_MSG_NEWTABLE 0 with
// NFTA_TABLE_NAME 1 and NFTA_TABLE_FLAGS 2, NFNL_MSG_BATCH_END 0x11), as `nft -f` sends
// `add table ... { flags dormant; }`: for a table that exists the kernel only updates its flags
// (nf_tables_updtable). nft 1.0.6 reads the table's objects before it sends that, 40 ms per 1000
// Services (bench/step-change.ts). Prints nothing; dies with the errno of a refused message.
const TABLE_FLAGS_SCRIPT = String.raw`
my ($name, $flags, @families) = @ARGV;
socket(my $s, 16, 3, 12) or die "netlink socket: $!\n";
my $seq = 0;
sub message {
  my ($type, $msgflags, $family, $resid, $attrs) = @_;
  my $payload = pack("CCn", $family, 0, $resid) . $attrs;
  return pack("LSSLL", 16 + length $payload, $type, $msgflags, ++$seq, 0) . $payload;
}
sub attribute {
  my ($type, $data) = @_;
  my $len = 4 + length $data;
  return pack("SS", $len, $type) . $data . ("\0" x ((4 - $len % 4) % 4));
}
my $batch = message(0x10, 0x1, 0, 10, "");
my %waiting;
for my $family (@families) {
  $batch .= message((10 << 8) | 0, 0x1 | 0x4, $family, 0, attribute(1, "$name\0") . attribute(2, pack("N", $flags)));
  $waiting{$seq} = $family;
}
$batch .= message(0x11, 0x1, 0, 10, "");
send($s, $batch, 0) or die "send: $!\n";
while (%waiting) {
  defined(recv($s, my $buf, 65536, 0)) or die "recv: $!\n";
  for (my $o = 0; $o + 16 <= length $buf; ) {
    my ($len, $t, $f, $sq) = unpack("LSSL", substr($buf, $o, 12));
    last if $len < 16;
    if ($t == 2) {
      my $err = unpack("l", substr($buf, $o + 16, 4));
      die(($waiting{$sq} ? "nfproto $waiting{$sq}" : "the batch") . ": errno " . -$err . "\n") if $err != 0;
      delete $waiting{$sq};
    }
    $o += ($len + 3) & ~3;
  }
}
`;

/** NFT_TABLE_F_DORMANT: the table's base chains are not hooked. */
const TABLE_DORMANT = 1;

function setKubeProxyTableFlags(netns: string, families: readonly Family[], flags: number): void {
  checkNetns(netns);
  const r = exec(inNetns(netns, ["perl", "-e", TABLE_FLAGS_SCRIPT, KUBE_PROXY_TABLE, String(flags), ...families.map((f) => String(NFPROTO[f]))]));
  if (r.status !== 0) throw new Error(`nftables dataplane: setting the flags of the kube-proxy tables (${families.join(", ")}) in netns ${netns} to ${flags} failed: ${r.stderr.trim() || `exit ${r.status}`}`);
}

/**
 * Takes kube-proxy's tables off the packet path and keeps them: each becomes dormant (the kernel
 * unregisters its base chains' hooks; chains, rules, sets and maps stay), in one transaction.
 * resumeKubeProxyNftables wakes them. A full sync at 10000 Services takes the kernel a minute
 * (bench/lab-install.ts); waking a table takes milliseconds.
 */
export async function parkKubeProxyNftables(netns: string, families: readonly Family[] = FAMILIES): Promise<void> {
  setKubeProxyTableFlags(netns, families, TABLE_DORMANT);
}

/** Puts parked tables back on the packet path: their flags cleared, as kube-proxy's own sync declares its table (no flags). */
export async function resumeKubeProxyNftables(netns: string, families: readonly Family[] = FAMILIES): Promise<void> {
  setKubeProxyTableFlags(netns, families, 0);
}

/** The families whose kube-proxy table exists in the namespace. */
export async function kubeProxyNftablesTables(netns: string): Promise<Family[]> {
  checkNetns(netns);
  // "list flowtables" prints every table (with its flowtables: none here) without reading the
  // tables' chains and rules; nft 1.0.6 reads all of them for "list tables", 1.6 s at 2000 Services.
  const listed = nft(netns, ["list", "flowtables"]).split("\n").map((l) => l.trim());
  return FAMILIES.filter((f) => listed.includes(`table ${NFT_FAMILY[f]} ${KUBE_PROXY_TABLE} {`));
}

/**
 * Applies one ruleset per family inside `netns`, each with one `nft -f`, replacing the family's
 * kube-proxy table if there is one. On any failure every kube-proxy table of the namespace is
 * removed before the error is thrown.
 */
export async function applyKubeProxyNftables(netns: string, rulesets: readonly KubeProxyNftablesRules[]): Promise<void> {
  checkNetns(netns);
  const families = rulesets.map((r) => r.family);
  if (new Set(families).size !== families.length) {
    throw new Error(`nftables dataplane: two rulesets for one family (${families.join(", ")}); accepted: at most one per family`);
  }
  try {
    for (const r of rulesets) {
      const table = `${NFT_FAMILY[r.family]} ${KUBE_PROXY_TABLE}`;
      nft(netns, ["-f", "-"], `add table ${table}\ndelete table ${table}\n${r.ruleset}`);
    }
  } catch (error) {
    await removeKubeProxyNftables(netns).catch(() => undefined);
    throw error;
  }
}

interface NftJsonObject {
  table?: { family: string; name: string };
  chain?: { name: string; hook?: string };
  rule?: unknown;
  set?: { name: string; elem?: unknown[] };
  map?: { name: string; elem?: unknown[] };
}

/** Pure: the counts of one table from `nft -j list table` output. */
export function countNftablesJson(json: string): NftablesCounts {
  const objects = (JSON.parse(json) as { nftables: NftJsonObject[] }).nftables;
  const chains = objects.flatMap((o) => (o.chain ? [o.chain] : []));
  const containers = objects.flatMap((o) => (o.set ? [o.set] : o.map ? [o.map] : [])).filter((c) => !c.name.startsWith("__"));
  return {
    chains: chains.length,
    baseChains: chains.filter((c) => c.hook !== undefined).length,
    rules: objects.filter((o) => o.rule !== undefined).length,
    sets: objects.filter((o) => o.set && !o.set.name.startsWith("__")).length,
    maps: objects.filter((o) => o.map && !o.map.name.startsWith("__")).length,
    elements: Object.fromEntries(containers.map((c) => [c.name, c.elem?.length ?? 0]).sort(([a], [b]) => (a! < b! ? -1 : 1))),
  };
}

/** What the family's kube-proxy table in the namespace holds now, as the kernel lists it; undefined without a table. */
export async function countKubeProxyNftables(netns: string, family: Family): Promise<NftablesCounts | undefined> {
  if (!(await kubeProxyNftablesTables(netns)).includes(family)) return undefined;
  return countNftablesJson(nft(netns, ["-j", "list", "table", NFT_FAMILY[family], KUBE_PROXY_TABLE]));
}

/**
 * Pure: the addresses of the `service-ips` verdict map's elements (`address . protocol . port : goto
 * service-...`), from `nft -j list map` output. kube-proxy puts a Service there only with a ready
 * endpoint (one without goes to no-endpoint-services): the ClusterIPs it forwards, as the cloud's
 * readiness check reads them (infra/cluster/dataplanes/nftables.ts).
 */
export function forwardedClusterIpsOfMap(json: string): string[] {
  const objects = (JSON.parse(json) as { nftables: { map?: { elem?: unknown[] } }[] }).nftables;
  const elements = objects.flatMap((o) => o.map?.elem ?? []);
  // An element is [ {concat: [address, protocol, port]}, verdict ].
  return elements.flatMap((e) => {
    const key = Array.isArray(e) ? (e[0] as { concat?: unknown[] }) : undefined;
    const address = key?.concat?.[0];
    return typeof address === "string" ? [address] : [];
  });
}

/** The ClusterIPs kube-proxy's nftables table of the family forwards to an endpoint; none without a table. */
export async function forwardedClusterIps(netns: string, family: Family): Promise<string[]> {
  if (!(await kubeProxyNftablesTables(netns)).includes(family)) return [];
  return forwardedClusterIpsOfMap(nft(netns, ["-j", "list", "map", NFT_FAMILY[family], KUBE_PROXY_TABLE, "service-ips"]));
}

/** Deletes kube-proxy's table of each family that has one (kube-proxy's CleanupLeftovers), in one transaction. */
export async function removeKubeProxyNftables(netns: string, families: readonly Family[] = FAMILIES): Promise<void> {
  const present = (await kubeProxyNftablesTables(netns)).filter((f) => families.includes(f));
  if (present.length === 0) return;
  nft(netns, ["-f", "-"], present.map((f) => `delete table ${NFT_FAMILY[f]} ${KUBE_PROXY_TABLE}\n`).join(""));
  const left = (await kubeProxyNftablesTables(netns)).filter((f) => families.includes(f));
  if (left.length > 0) throw new Error(`nftables dataplane: kube-proxy tables still present after deletion in netns ${netns}: ${left.join(", ")}`);
}

// ---------------------------------------------------------------------------------------------
// What kube-proxy reads and writes through nft: KubeProxyNftables's kernel.

type NftJsonValue = string | number | { concat?: NftJsonValue[]; elem?: { val: NftJsonValue }; [verdict: string]: unknown };

/** Pure: an element's key or value as kube-proxy's nftElementStorage joins it ("198.19.128.3 . tcp . 80", "goto CHAIN"). */
export function nftJsonElementText(value: NftJsonValue): string {
  if (typeof value === "string" || typeof value === "number") return String(value);
  if (value.elem) return nftJsonElementText(value.elem.val);
  if (value.concat) return value.concat.map(nftJsonElementText).join(" . ");
  const [verdict, argument] = Object.entries(value)[0] ?? [];
  if (verdict === undefined) throw new Error(`nft JSON: an empty element value`);
  const target = (argument as { target?: string } | null)?.target;
  return target === undefined ? verdict : `${verdict} ${target}`;
}

/** Pure: the elements of a set or map from `nft -j list set|map`: key -> value ("" for a set). */
export function nftJsonElements(json: string): Map<string, string> {
  const objects = (JSON.parse(json) as { nftables: { set?: { elem?: NftJsonValue[] }; map?: { elem?: [NftJsonValue, NftJsonValue][] } }[] }).nftables;
  const out = new Map<string, string>();
  for (const o of objects) {
    for (const e of o.set?.elem ?? []) out.set(nftJsonElementText(e), "");
    for (const [k, v] of o.map?.elem ?? []) out.set(nftJsonElementText(k), nftJsonElementText(v));
  }
  return out;
}

/** Pure: the chains of kube-proxy's table from `nft -j list chains FAMILY` (every table of the family). */
export function nftJsonChains(json: string): string[] {
  const objects = (JSON.parse(json) as { nftables: { chain?: { table: string; name: string } }[] }).nftables;
  return objects.flatMap((o) => (o.chain && o.chain.table === KUBE_PROXY_TABLE ? [o.chain.name] : []));
}

/**
 * One family's kube-proxy table in a namespace, as knftables reaches it: `nft -j list chains`,
 * `nft -j list set|map`, and one `nft -f` per transaction, whose time is added to `commitMs`.
 */
export class NftablesNetns implements NftablesKernel {
  /** Time spent in `nft -f`, ms, and the transactions run, since the last reset(). */
  commitMs = 0;
  transactions = 0;

  constructor(
    readonly netns: string,
    readonly family: Family,
  ) {
    checkNetns(netns);
  }

  reset(): void {
    this.commitMs = 0;
    this.transactions = 0;
  }

  chains(): readonly string[] | undefined {
    return nftJsonChains(nft(this.netns, ["-j", "list", "chains", NFT_FAMILY[this.family]]));
  }

  elements(container: string): ReadonlyMap<string, string> | undefined {
    const kind = container === "cluster-ips" || container === "nodeport-ips" ? "set" : "map";
    const r = exec(inNetns(this.netns, ["nft", "-j", "list", kind, NFT_FAMILY[this.family], KUBE_PROXY_TABLE, container]), { timeoutMs: NFT_TIMEOUT_MS });
    return r.status === 0 ? nftJsonElements(r.stdout) : undefined;
  }

  run(transaction: string): void {
    const start = performance.now();
    try {
      nft(this.netns, ["-f", "-"], transaction);
    } finally {
      this.commitMs += performance.now() - start;
      this.transactions++;
    }
  }
}
