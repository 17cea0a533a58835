// kube-proxy's rules in a real kernel: a network namespace this test creates and deletes, addresses
// from the benchmarking ranges only, N = 2000 Services.
import { testScenario } from "../fixtures/scenario.js";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  applyKubeProxyRules,
  countNatRules,
  kubeProxyLeftovers,
  nfacctCountersPresent,
  removeKubeProxyRules,
  type IptablesBackend,
} from "../../lab/dataplanes/iptables/kernel.js";
import { kubeProxyRules, type KubeProxyRules, type ServiceEndpoints } from "../../lab/dataplanes/iptables/rules.js";
import { buildServiceSet } from "../../workloads/service-set.js";

const isRoot = process.platform === "linux" && process.getuid?.() === 0;
const tools = ["iptables-legacy-restore", "ip6tables-legacy-restore", "iptables-nft-restore", "perl"];
const haveTools = spawnSync("sh", ["-c", tools.map((t) => `command -v ${t} >/dev/null`).join(" && ")]).status === 0;
const skip = !isRoot || !haveTools;
const skipped = skip ? ` (skipped: ${!isRoot ? "needs root on Linux" : `needs ${tools.join(", ")}`})` : "";

const scenario = testScenario({
  kubernetes: {
    serviceSubnets: { ipv4: "198.19.128.0/17", ipv6: "2001:2:0:96::/112" },
    podSubnets: { ipv4: "198.19.64.0/18", ipv6: "2001:2:0:2400::/56" },
  },
});

const NODE = { ipv4: "198.18.1.2", ipv6: "2001:2:0:20::2" };
const BACKEND = { ipv4: "198.19.64.20", ipv6: "2001:2:0:2400::20" };
const RECEIVER = { ipv4: "198.19.64.10", ipv6: "2001:2:0:2400::10" };

function servicesWithEndpoints(n: number): ServiceEndpoints[] {
  const set = buildServiceSet(scenario, n);
  const backend = [{ ip: BACKEND.ipv4, local: true }, { ip: BACKEND.ipv6, local: true }];
  const receiver = [{ ip: RECEIVER.ipv4, local: true }, { ip: RECEIVER.ipv6, local: true }];
  return [...set.scaled.map((service) => ({ service, endpoints: backend })), { service: set.receiver, endpoints: receiver }];
}

function ruleSets(n: number): [KubeProxyRules, KubeProxyRules] {
  const services = servicesWithEndpoints(n);
  return [
    kubeProxyRules(services, { family: "ipv4", clusterCIDR: scenario.kubernetes.podSubnets.ipv4, nfacct: true }),
    kubeProxyRules(services, { family: "ipv6", clusterCIDR: scenario.kubernetes.podSubnets.ipv6, nfacct: true }),
  ];
}

function sh(args: string[]): void {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
}

function makeNode(ns: string): void {
  sh(["ip", "netns", "add", ns]);
  sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
  // The node's and the pods' addresses, all local to this namespace.
  for (const a of [`${NODE.ipv4}/32`, `${BACKEND.ipv4}/32`, `${RECEIVER.ipv4}/32`]) sh(["ip", "-n", ns, "addr", "add", a, "dev", "lo"]);
  for (const a of [`${NODE.ipv6}/128`, `${BACKEND.ipv6}/128`, `${RECEIVER.ipv6}/128`]) sh(["ip", "-n", ns, "addr", "add", a, "dev", "lo"]);
  // A route to the service subnets, as a node has one (its default route), so ClusterIPs resolve.
  for (const f of ["ipv4", "ipv6"] as const) sh(["ip", "-n", ns, "route", "add", scenario.kubernetes.serviceSubnets[f], "dev", "lo"]);
}

// Listeners on the endpoint addresses answer with the address and port the connection reached.
const LISTEN = `
const net = require("net");
const binds = process.argv.slice(1);
let open = 0;
for (const b of binds) {
  const [addr, port] = b.split(",");
  net.createServer((s) => s.end(s.localAddress + "," + s.localPort + "\\n")).listen(Number(port), addr, () => {
    if (++open === binds.length) console.log("ready");
  });
}
// Gone with the test process: its stdin closes when the test ends, however it ends (no timer a slow run outlasts).
process.stdin.on("end", () => process.exit(0)).resume();
`;
const CONNECT = `
const s = require("net").connect(Number(process.argv[2]), process.argv[1]);
let got = "";
s.setTimeout(3000, () => { console.log("TIMEOUT"); process.exit(0); });
s.on("data", (d) => (got += d));
s.on("end", () => console.log(got.trim()));
s.on("error", (e) => console.log(e.code));
`;

async function startListener(ns: string): Promise<ChildProcess> {
  const child = spawn("ip", [
    "netns", "exec", ns, process.execPath, "-e", LISTEN,
    `${RECEIVER.ipv4},31000`, `${RECEIVER.ipv6},31000`, `${BACKEND.ipv4},80`, `${BACKEND.ipv6},80`,
  ], { stdio: ["pipe", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
    child.on("exit", (code) => reject(new Error(`listener exited ${code}`)));
  });
  return child;
}

function connect(ns: string, addr: string, port: number): string {
  return spawnSync("ip", ["netns", "exec", ns, process.execPath, "-e", CONNECT, addr, String(port)], { encoding: "utf8" }).stdout.trim();
}

describe.skipIf(skip)(`kube-proxy rules in a network namespace${skipped}`, () => {
  const N = 2000;
  const ns = `ipt-dp-${process.pid}`;
  const [v4, v6] = ruleSets(N);
  const set = buildServiceSet(scenario, N);
  const firstNodePort = set.scaled[0]!.ports[0]!.nodePort!;
  let listener: ChildProcess | undefined;

  beforeAll(async () => {
    makeNode(ns);
    listener = await startListener(ns);
  });

  afterAll(() => {
    listener?.kill("SIGKILL");
    spawnSync("ip", ["netns", "del", ns]);
  });

  it("reaches nothing on the NodePorts before the rules are applied", () => {
    expect(connect(ns, NODE.ipv4, 31000)).toBe("ECONNREFUSED");
  });

  it(`applies ${N} Services with one iptables-restore per family; the kernel holds exactly the generated rules`, async () => {
    await applyKubeProxyRules(ns, [v4, v6]);
    const c4 = await countNatRules(ns, "ipv4");
    const c6 = await countNatRules(ns, "ipv6");
    expect(c4.kube).toBe(v4.ruleCounts.nat);
    expect(c6.kube).toBe(v6.ruleCounts.nat);
    // kube-proxy's arithmetic: 5 static nat rules, 12 per NodePort Service port in IPv4 (11 in IPv6:
    // no localhost NodePort rule); all 2000 scaled Services are NodePorts, plus the receiver's 6 ports
    // (its two ITGRecv's signaling and data, TCP and UDP).
    const receiverPorts = set.receiver.ports.length;
    expect(receiverPorts).toBe(6);
    expect(c4.kube).toBe(5 + 12 * (N + receiverPorts));
    expect(c6.kube).toBe(5 + 11 * (N + receiverPorts));
    expect(c4.jumps).toBe(3);
    expect(c6.jumps).toBe(3);
    expect(c4.total).toBe(c4.kube + 3);
    // Chains: 4 static, then KUBE-EXT, -SVC, -SVL and one -SEP per NodePort Service port.
    expect(c4.kubeChains).toBe(4 + 4 * (N + receiverPorts));
    const filterJumps = (await kubeProxyLeftovers(ns, "ipv4")).find((t) => t.table === "filter")!.jumps;
    expect(filterJumps).toHaveLength(11);
    expect(await nfacctCountersPresent(ns)).toEqual(["ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts"]);
  });

  it("DNATs NodePort and ClusterIP connections to the node-local endpoint, in both families", () => {
    expect(connect(ns, NODE.ipv4, 31000)).toBe(`${RECEIVER.ipv4},31000`);
    expect(connect(ns, NODE.ipv6, 31000)).toBe(`${RECEIVER.ipv6},31000`);
    expect(connect(ns, NODE.ipv4, firstNodePort)).toBe(`${BACKEND.ipv4},80`);
    expect(connect(ns, NODE.ipv6, firstNodePort)).toBe(`${BACKEND.ipv6},80`);
    expect(connect(ns, set.scaled[0]!.clusterIPs.ipv4!, 80)).toBe(`${BACKEND.ipv4},80`);
    expect(connect(ns, set.scaled[0]!.clusterIPs.ipv6!, 80)).toBe(`${BACKEND.ipv6},80`);
  });

  it("resyncs like kube-proxy: applying again changes nothing and duplicates no jump", async () => {
    await applyKubeProxyRules(ns, [v4, v6]);
    expect((await countNatRules(ns, "ipv4")).total).toBe(v4.ruleCounts.nat + 3);
    expect((await countNatRules(ns, "ipv6")).total).toBe(v6.ruleCounts.nat + 3);
    const filterJumps = (await kubeProxyLeftovers(ns, "ipv4")).find((t) => t.table === "filter")!.jumps;
    expect(filterJumps).toHaveLength(11);
  });

  it("tears down every KUBE-* chain, jump and nfacct counter", async () => {
    await removeKubeProxyRules(ns);
    expect(await kubeProxyLeftovers(ns, "ipv4")).toEqual([]);
    expect(await kubeProxyLeftovers(ns, "ipv6")).toEqual([]);
    expect(await countNatRules(ns, "ipv4")).toEqual({ total: 0, kube: 0, jumps: 0, kubeChains: 0 });
    expect(await nfacctCountersPresent(ns)).toEqual([]);
    expect(connect(ns, NODE.ipv4, 31000)).toBe("ECONNREFUSED");
  });

  it("leaves nothing behind when a restore fails, and names what failed", async () => {
    const broken: KubeProxyRules = { ...v4, restore: v4.restore.replace("-j KUBE-MARK-MASQ\n", "-j KUBE-NO-SUCH-CHAIN\n") };
    await expect(applyKubeProxyRules(ns, [v6, broken])).rejects.toThrow(/iptables-legacy-restore -w 60 --noflush --counters` in netns .* failed/);
    expect(await kubeProxyLeftovers(ns, "ipv4")).toEqual([]);
    expect(await kubeProxyLeftovers(ns, "ipv6")).toEqual([]);
    expect(await nfacctCountersPresent(ns)).toEqual([]);
  });

  it("refuses a missing namespace, an unknown backend and two rule sets of one family", async () => {
    await expect(applyKubeProxyRules("no-such-netns-here", [v4])).rejects.toThrow(
      'netns "no-such-netns-here" does not exist; accepted: a namespace made with `ip netns add NAME`',
    );
    await expect(applyKubeProxyRules(ns, [v4], "ebpf" as IptablesBackend)).rejects.toThrow('backend "ebpf" is not accepted; accepted: "legacy" or "nft"');
    await expect(applyKubeProxyRules(ns, [v4, v4])).rejects.toThrow(/two rule sets for one family/);
  });
});

describe.skipIf(skip)(`the nft backend${skipped}`, () => {
  const ns = `ipt-nft-${process.pid}`;
  let listener: ChildProcess | undefined;

  beforeAll(async () => {
    makeNode(ns);
    listener = await startListener(ns);
  });
  afterAll(() => {
    listener?.kill("SIGKILL");
    spawnSync("ip", ["netns", "del", ns]);
  });

  it("holds the same rule counts through iptables-nft and tears down cleanly", async () => {
    const [v4, v6] = ruleSets(300);
    await applyKubeProxyRules(ns, [v4, v6], "nft");
    expect((await countNatRules(ns, "ipv4", "nft")).kube).toBe(v4.ruleCounts.nat);
    expect((await countNatRules(ns, "ipv6", "nft")).kube).toBe(v6.ruleCounts.nat);
    // Nothing went to the legacy tables.
    expect(await kubeProxyLeftovers(ns, "ipv4", "legacy")).toEqual([]);
    expect(connect(ns, NODE.ipv4, 31000)).toBe(`${RECEIVER.ipv4},31000`);
    await removeKubeProxyRules(ns, ["ipv4", "ipv6"], "nft");
    expect(await kubeProxyLeftovers(ns, "ipv4", "nft")).toEqual([]);
    expect(await kubeProxyLeftovers(ns, "ipv6", "nft")).toEqual([]);
  });
});
