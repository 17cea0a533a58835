// kube-proxy's iptables dataplane inside a network namespace: the rules of kube-proxy-rules.ts applied
// the way kube-proxy applies them (its jump rules with `iptables -I`, then ONE `iptables-restore
// --noflush --counters` per family), a count of what the kernel then holds, and a teardown.
//
// Backend: iptables-legacy by default. The paper's nodes ran Ubuntu 20.04, whose iptables 1.8.4
// defaults to the legacy (x_tables) backend, and kube-proxy's image follows the host's mode; with
// x_tables the first packet of a connection walks KUBE-SERVICES and KUBE-NODEPORTS rule by rule in
// ipt_do_table, which is the per-Service cost the paper measures. This kernel still offers x_tables
// (CONFIG_IP_NF_IPTABLES_LEGACY); "nft" runs the same rules through iptables-nft (nf_tables with
// x_tables compatibility matches) for kernels built without it. Legacy and nft tables coexist in one
// namespace and both are traversed, so the lab should not mix them for the same hook.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { exec } from "../../netns.js";
import type { Family } from "../../../scenario/cidr.js";
import type { ServiceEndpoints } from "../kube-proxy-inputs.js";
import { KUBE_PROXY_JUMPS, kubeProxyRules, NFACCT_INVALID_DROPPED, NFACCT_LOCALHOST_NODEPORTS, type KubeProxyNode, type KubeProxyRules } from "./rules.js";
import { podClusterCidr, type TopologyPlan } from "../../topology.js";

export type IptablesBackend = "legacy" | "nft";
export const DEFAULT_IPTABLES_BACKEND: IptablesBackend = "legacy";
export const IPTABLES_BACKENDS: readonly IptablesBackend[] = ["legacy", "nft"];

/** Seconds to wait for the xtables lock (shared by every namespace of the host). */
const LOCK_WAIT_S = "60";

/** Pure: kube-proxy's settings on the lab's worker for one family (the pod link is the cluster CIDR). */
export function labIptablesNode(plan: Pick<TopologyPlan, "links" | "clientPod">, family: Family): KubeProxyNode {
  return { family, clusterCIDR: podClusterCidr(plan, family) };
}

/** Pure: the rule sets kube-proxy writes for the Services on the lab's worker, one per family. */
export function labKubeProxyRules(services: readonly ServiceEndpoints[], plan: Pick<TopologyPlan, "links" | "clientPod">, families: readonly Family[] = ["ipv4", "ipv6"]): KubeProxyRules[] {
  return families.map((family) => kubeProxyRules(services, labIptablesNode(plan, family)));
}

interface Tools {
  readonly iptables: string;
  readonly restore: string;
  readonly save: string;
}

export function iptablesTools(family: Family, backend: IptablesBackend): Tools {
  const base = family === "ipv4" ? "iptables" : "ip6tables";
  return { iptables: `${base}-${backend}`, restore: `${base}-${backend}-restore`, save: `${base}-${backend}-save` };
}

interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(argv: readonly string[], input?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code) =>
      resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") }),
    );
    child.stdin.on("error", () => undefined);
    child.stdin.end(input ?? "");
  });
}

function inNetns(netns: string, argv: readonly string[]): string[] {
  return ["ip", "netns", "exec", netns, ...argv];
}

async function mustRun(netns: string, argv: readonly string[], input?: string): Promise<string> {
  const r = await run(inNetns(netns, argv), input);
  if (r.code !== 0) {
    throw new Error(`iptables dataplane: \`${argv.join(" ")}\` in netns ${netns} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r.stdout;
}

// nfacct counters live in the namespace and are made over netlink (NFNL_SUBSYS_ACCT), as kube-proxy
// does; perl (always on Debian, perl-base is essential) sends the messages (NFNL_MSG_ACCT_NEW 0,
// _GET 1, _DEL 3). Prints "NAME ERRNO" lines.
const NFACCT_SCRIPT = String.raw`
my ($op, @names) = @ARGV;
my %type = (new => 0, get => 1, del => 3);
socket(my $s, 16, 3, 12) or die "netlink socket: $!\n";
my $seq = 0;
for my $name (@names) {
  my $n = "$name\0";
  my $alen = 4 + length $n;
  my $payload = pack("CCn", 0, 0, 0) . pack("SS", $alen, 1) . $n . ("\0" x ((4 - $alen % 4) % 4));
  my $flags = 0x1 | 0x4 | ($op eq "new" ? 0x400 : 0);
  send($s, pack("LSSLL", 16 + length $payload, (7 << 8) | $type{$op}, $flags, ++$seq, 0) . $payload, 0) or die "send: $!\n";
  my $err;
  while (!defined $err) {
    defined(recv($s, my $buf, 65536, 0)) or die "recv: $!\n";
    for (my $o = 0; $o + 16 <= length $buf; ) {
      my ($len, $t) = unpack("LS", substr($buf, $o, 6));
      last if $len < 16;
      if ($t == 2) { $err = unpack("l", substr($buf, $o + 16, 4)); last }
      $o += ($len + 3) & ~3;
    }
  }
  print "$name $err\n";
}
`;

const ENOENT = -2;
const EBUSY = -16;

/** Runs one nfacct operation per name; returns each name's netlink errno (0 = success). */
async function nfacct(netns: string, op: "new" | "get" | "del", names: readonly string[]): Promise<Map<string, number>> {
  const result = new Map<string, number>();
  if (names.length === 0) return result;
  const out = await mustRun(netns, ["perl", "-e", NFACCT_SCRIPT, op, ...names]);
  for (const line of out.trim().split("\n")) {
    const [name, errno] = line.split(" ");
    result.set(name!, Number(errno));
  }
  return result;
}

/** Which of kube-proxy's nfacct counters exist in the namespace. */
export async function nfacctCountersPresent(netns: string): Promise<string[]> {
  const got = await nfacct(netns, "get", [NFACCT_INVALID_DROPPED, NFACCT_LOCALHOST_NODEPORTS]);
  return [...got].filter(([, errno]) => errno === 0).map(([name]) => name);
}

async function checkNetns(netns: string): Promise<void> {
  if (!/^[A-Za-z0-9_.-]+$/.test(netns) || !existsSync(`/run/netns/${netns}`)) {
    throw new Error(`iptables dataplane: netns ${JSON.stringify(netns)} does not exist; accepted: a namespace made with \`ip netns add NAME\``);
  }
}

function checkBackend(backend: string): asserts backend is IptablesBackend {
  if (!IPTABLES_BACKENDS.includes(backend as IptablesBackend)) {
    throw new Error(`iptables dataplane: backend ${JSON.stringify(backend)} is not accepted; accepted: ${IPTABLES_BACKENDS.map((b) => `"${b}"`).join(" or ")}`);
  }
}

/**
 * Applies one rule set per family inside `netns`, in kube-proxy's order: nfacct counters, then each
 * jump's target chain and the jump itself (`-I`, only if missing), then one iptables-restore. Running
 * it again is a full resync: the restore replaces the KUBE-* chains, the jumps are not duplicated.
 * On any failure everything kube-proxy-shaped is removed again before the error is thrown.
 */
export async function applyKubeProxyRules(
  netns: string,
  ruleSets: readonly KubeProxyRules[],
  backend: IptablesBackend = DEFAULT_IPTABLES_BACKEND,
): Promise<void> {
  checkBackend(backend);
  await checkNetns(netns);
  const families = ruleSets.map((r) => r.family);
  if (new Set(families).size !== families.length) {
    throw new Error(`iptables dataplane: two rule sets for one family (${families.join(", ")}); accepted: at most one per family`);
  }
  try {
    for (const rules of ruleSets) await writeKubeProxyRules(netns, rules, backend);
  } catch (e) {
    await removeKubeProxyRules(netns, families.length ? families : ["ipv4", "ipv6"], backend).catch(() => undefined);
    throw e;
  }
}

/**
 * One sync's writes for one family, as kube-proxy makes them: on a full sync its nfacct counters and
 * its jumps (each target chain and jump only if missing), then one `iptables-restore --noflush
 * --counters` of the sync's input. Returns the time of the restore, ms.
 */
export async function writeKubeProxyRules(netns: string, rules: KubeProxyRules, backend: IptablesBackend = DEFAULT_IPTABLES_BACKEND): Promise<number> {
  const t = iptablesTools(rules.family, backend);
  for (const [name, errno] of await nfacct(netns, "new", rules.nfacctCounters)) {
    if (errno !== 0 && errno !== EBUSY) throw new Error(`iptables dataplane: creating nfacct counter ${name} failed (errno ${-errno})`);
  }
  for (const j of rules.jumps) {
    const exists = await run(inNetns(netns, [t.iptables, "-w", LOCK_WAIT_S, "-t", j.table, "-S", j.target]));
    if (exists.code !== 0) await mustRun(netns, [t.iptables, "-w", LOCK_WAIT_S, "-t", j.table, "-N", j.target]);
    const present = await run(inNetns(netns, [t.iptables, "-w", LOCK_WAIT_S, "-t", j.table, "-C", j.chain, ...j.args]));
    if (present.code !== 0) await mustRun(netns, [t.iptables, "-w", LOCK_WAIT_S, "-t", j.table, "-I", j.chain, ...j.args]);
  }
  const start = performance.now();
  await mustRun(netns, [t.restore, "-w", LOCK_WAIT_S, "--noflush", "--counters"], rules.restore);
  return performance.now() - start;
}

/** The KUBE-* chains of the namespace's nat table (kube-proxy's `iptables-save -t nat`), read synchronously. */
export function kubeNatChainNames(netns: string, family: Family, backend: IptablesBackend = DEFAULT_IPTABLES_BACKEND): string[] {
  checkBackend(backend);
  const r = exec(inNetns(netns, [iptablesTools(family, backend).save, "-t", "nat"]), { timeoutMs: 120_000 });
  if (r.status !== 0) throw new Error(`iptables dataplane: \`${iptablesTools(family, backend).save} -t nat\` in netns ${netns} failed (exit ${r.status}): ${r.stderr.trim()}`);
  return (parseSave(r.stdout).find((t) => t.name === "nat")?.chains ?? []).filter(isKubeChain);
}

export interface NatRuleCount {
  /** Every rule of the nat table. */
  readonly total: number;
  /** Rules inside KUBE-* chains (kube-proxy's sync_proxy_rules_iptables_total{table="nat"}). */
  readonly kube: number;
  /** Rules of built-in chains that jump into KUBE-* chains. */
  readonly jumps: number;
  readonly kubeChains: number;
}

interface SavedTable {
  readonly name: string;
  readonly chains: string[];
  readonly rules: string[];
}

function parseSave(text: string): SavedTable[] {
  const tables: SavedTable[] = [];
  let current: SavedTable | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) {
      current = { name: line.slice(1).trim(), chains: [], rules: [] };
      tables.push(current);
    } else if (current && line.startsWith(":")) {
      current.chains.push(line.slice(1).split(" ")[0]!);
    } else if (current && line.startsWith("-A ")) {
      current.rules.push(line);
    }
  }
  return tables;
}

const isKubeChain = (name: string) => name.startsWith("KUBE-");
const chainOfRule = (rule: string) => rule.split(" ")[1]!;
const jumpsToKube = (rule: string) => / -j KUBE-\S+/.test(rule);

async function save(netns: string, family: Family, backend: IptablesBackend, table?: string): Promise<SavedTable[]> {
  const t = iptablesTools(family, backend);
  return parseSave(await mustRun(netns, [t.save, ...(table ? ["-t", table] : [])]));
}

/** The rules in the namespace's nat table now, as the kernel reports them (iptables-save). */
export async function countNatRules(netns: string, family: Family, backend: IptablesBackend = DEFAULT_IPTABLES_BACKEND): Promise<NatRuleCount> {
  checkBackend(backend);
  await checkNetns(netns);
  const nat = (await save(netns, family, backend, "nat")).find((t) => t.name === "nat");
  const rules = nat?.rules ?? [];
  return {
    total: rules.length,
    kube: rules.filter((r) => isKubeChain(chainOfRule(r))).length,
    jumps: rules.filter((r) => !isKubeChain(chainOfRule(r)) && jumpsToKube(r)).length,
    kubeChains: (nat?.chains ?? []).filter(isKubeChain).length,
  };
}

/**
 * Pure: the destinations KUBE-SERVICES sends to a Service chain (`-d IP/len ... -j KUBE-SVC-...`), from
 * iptables-save output. kube-proxy writes that jump only for a Service with a ready endpoint (one
 * without gets a REJECT in the filter table instead), so these are the ClusterIPs it forwards: what
 * the cloud's readiness check reads on a node (infra/cluster/dataplanes/iptables.ts).
 */
export function forwardedClusterIpsOfSave(saved: string): string[] {
  const ips: string[] = [];
  for (const line of saved.split("\n")) {
    if (!line.startsWith("-A KUBE-SERVICES ") || !/ -j KUBE-SVC-/.test(line)) continue;
    const m = / -d (\S+?)(?:\/\d+)? /.exec(line);
    if (m) ips.push(m[1]!);
  }
  return ips;
}

/** The ClusterIPs kube-proxy's rules in the namespace forward to an endpoint, as the kernel holds them. */
export async function forwardedClusterIps(netns: string, family: Family, backend: IptablesBackend = DEFAULT_IPTABLES_BACKEND): Promise<string[]> {
  checkBackend(backend);
  await checkNetns(netns);
  return forwardedClusterIpsOfSave(await mustRun(netns, [iptablesTools(family, backend).save, "-t", "nat"]));
}

/** What is left of kube-proxy in the namespace: KUBE-* chains and jumps into them, per table. */
export async function kubeProxyLeftovers(
  netns: string,
  family: Family,
  backend: IptablesBackend = DEFAULT_IPTABLES_BACKEND,
): Promise<{ table: string; chains: string[]; jumps: string[] }[]> {
  return (await save(netns, family, backend))
    .map((t) => ({
      table: t.name,
      chains: t.chains.filter(isKubeChain),
      jumps: t.rules.filter((r) => !isKubeChain(chainOfRule(r)) && jumpsToKube(r)),
    }))
    .filter((t) => t.chains.length > 0 || t.jumps.length > 0);
}

/** One argument of an iptables-restore line: quoted when it holds a space (a comment). */
const restoreWord = (arg: string) => (/\s/.test(arg) ? `"${arg}"` : arg);

/** iptables-restore --noflush input that inserts (-I) or deletes (-D) kube-proxy's jumps, in apply order. */
function jumpLines(op: "-I" | "-D"): string {
  const tables = [...new Set(KUBE_PROXY_JUMPS.map((j) => j.table))];
  return tables
    .flatMap((table) => [`*${table}`, ...KUBE_PROXY_JUMPS.filter((j) => j.table === table).map((j) => [op, j.chain, ...j.args].map(restoreWord).join(" ")), "COMMIT"])
    .join("\n")
    .concat("\n");
}

/**
 * Takes kube-proxy's rules off the packet path and keeps them: the jumps from the built-in chains
 * into KUBE-* go (one iptables-restore per family), the KUBE-* chains stay, unreachable, for
 * resumeKubeProxyRules. Cheaper than a removal and a full restore at thousands of Services.
 */
export async function parkKubeProxyRules(netns: string, families: readonly Family[], backend: IptablesBackend = DEFAULT_IPTABLES_BACKEND): Promise<void> {
  checkBackend(backend);
  await checkNetns(netns);
  for (const family of families) await mustRun(netns, [iptablesTools(family, backend).restore, "-w", LOCK_WAIT_S, "--noflush"], jumpLines("-D"));
}

/** Puts parked rules back on the packet path: kube-proxy's jumps inserted as applyKubeProxyRules inserts them. */
export async function resumeKubeProxyRules(netns: string, families: readonly Family[], backend: IptablesBackend = DEFAULT_IPTABLES_BACKEND): Promise<void> {
  checkBackend(backend);
  await checkNetns(netns);
  for (const family of families) await mustRun(netns, [iptablesTools(family, backend).restore, "-w", LOCK_WAIT_S, "--noflush"], jumpLines("-I"));
}

// The names of a family's nf_tables tables, over netlink (NFNL_SUBSYS_NFTABLES 10, NFT_MSG_GETTABLE 1
// with NLM_F_DUMP, replies NFT_MSG_NEWTABLE 0 with NFTA_TABLE_NAME 1, then NLMSG_DONE 3). iptables-nft
// keeps its tables there under the x_tables names; iptables-nft-save reads every chain of the family
// first, kube-proxy's nftables table's 25000 at 10000 Services among them. Prints one name a line.
const TABLE_NAMES_SCRIPT = String.raw`
my ($family) = @ARGV;
socket(my $s, 16, 3, 12) or die "netlink socket: $!\n";
my $payload = pack("CCn", $family, 0, 0);
send($s, pack("LSSLL", 16 + length $payload, (10 << 8) | 1, 0x1 | 0x300, 1, 0) . $payload, 0) or die "send: $!\n";
for (;;) {
  defined(recv($s, my $buf, 65536, 0)) or die "recv: $!\n";
  for (my $o = 0; $o + 16 <= length $buf; ) {
    my ($len, $t) = unpack("LS", substr($buf, $o, 6));
    last if $len < 16;
    exit 0 if $t == 3;
    if ($t == 2) { my $err = unpack("l", substr($buf, $o + 16, 4)); die "errno " . -$err . "\n" if $err != 0; }
    if ($t == (10 << 8)) {
      for (my $a = $o + 20; $a + 4 <= $o + $len; ) {
        my ($l, $type) = unpack("SS", substr($buf, $a, 4));
        last if $l < 4;
        if (($type & 0x3fff) == 1) { my $name = substr($buf, $a + 4, $l - 4); $name =~ s/\0.*//s; print "$name\n"; }
        $a += ($l + 3) & ~3;
      }
    }
    $o += ($len + 3) & ~3;
  }
}
`;

/** The x_tables names iptables-nft gives its nf_tables tables. */
const XTABLES_NAMES = ["filter", "nat", "mangle", "raw", "security"];
/** NFPROTO_IPV4 and NFPROTO_IPV6. */
const NFPROTO: Readonly<Record<Family, number>> = { ipv4: 2, ipv6: 10 };

/** Whether the namespace holds any iptables-nft table of the family (an nf_tables table with an x_tables name). */
export function nftXtablesPresent(netns: string, family: Family): boolean {
  const r = exec(inNetns(netns, ["perl", "-e", TABLE_NAMES_SCRIPT, String(NFPROTO[family])]));
  if (r.status !== 0) throw new Error(`iptables dataplane: listing the ${family} nf_tables tables of netns ${netns} failed: ${r.stderr.trim() || `exit ${r.status}`}`);
  return r.stdout.split("\n").some((name) => XTABLES_NAMES.includes(name));
}

/** The rules of built-in chains that jump into KUBE-* chains, per table: what puts kube-proxy's rules on the packet path. */
export async function kubeProxyJumps(netns: string, family: Family, backend: IptablesBackend = DEFAULT_IPTABLES_BACKEND): Promise<{ table: string; jumps: string[] }[]> {
  return (await kubeProxyLeftovers(netns, family, backend)).map((t) => ({ table: t.table, jumps: t.jumps })).filter((t) => t.jumps.length > 0);
}

/**
 * Removes every KUBE-* chain and every jump into one, in every table of each family, with one
 * iptables-restore per family; then deletes kube-proxy's nfacct counters.
 */
export async function removeKubeProxyRules(
  netns: string,
  families: readonly Family[] = ["ipv4", "ipv6"],
  backend: IptablesBackend = DEFAULT_IPTABLES_BACKEND,
): Promise<void> {
  checkBackend(backend);
  await checkNetns(netns);
  for (const family of families) {
    const left = await kubeProxyLeftovers(netns, family, backend);
    if (left.length === 0) continue;
    // In --noflush mode a chain line flushes that chain; then the jumps go, then the chains.
    const lines = left.flatMap((t) => [
      `*${t.table}`,
      ...t.chains.map((c) => `:${c} - [0:0]`),
      ...t.jumps.map((r) => r.replace(/^-A /, "-D ")),
      ...t.chains.map((c) => `-X ${c}`),
      "COMMIT",
    ]);
    await mustRun(netns, [iptablesTools(family, backend).restore, "-w", LOCK_WAIT_S, "--noflush"], lines.join("\n") + "\n");
  }
  for (const [name, errno] of await nfacct(netns, "del", [NFACCT_INVALID_DROPPED, NFACCT_LOCALHOST_NODEPORTS])) {
    if (errno !== 0 && errno !== ENOENT) throw new Error(`iptables dataplane: deleting nfacct counter ${name} failed (errno ${-errno})`);
  }
}
