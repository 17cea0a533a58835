// The step gate (infra/step-gate.ts) and the dataplanes' snippets it reads (infra/cluster/dataplanes):
// each snippet against its tool's real output format, with the cluster's own Services and the
// receiver's in the same tables; the gate with real bash against a kubectl stand-in whose worker
// drops a larger step's Services late, or never; the connection flushes, kube-proxy's with the real
// conntrack in a private network namespace.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DATAPLANES, type Dataplane } from "../../scenario/schema.js";
import { clusterDataplane } from "../../infra/cluster/dataplanes/index.js";
import { parseStepReadiness, stepGateCommand, stepGateScript } from "../../infra/step-gate.js";
import { scriptOfRootCommand } from "../../infra/cluster/shell.js";
import { testScenario } from "../fixtures/scenario.js";

const work = fs.mkdtempSync(path.join(os.tmpdir(), "step-gate-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** One frontend as a dataplane holds it: ClusterIP, namespace/name, protocol, port, port name. */
type Frontend = readonly [ip: string, service: string, protocol: "tcp" | "udp", port: number, portName: string];

const family = (ip: string) => (ip.includes(":") ? "ipv6" : "ipv4");

/** The cluster's own Services: in every table, never counted. */
const SYSTEM: Frontend[] = [
  ["10.96.0.1", "default/kubernetes", "tcp", 443, "https"],
  ["10.96.0.10", "kube-system/kube-dns", "udp", 53, "dns"],
  ["10.96.0.10", "kube-system/kube-dns", "tcp", 53, "dns-tcp"],
  ["fd00:10:96::a", "kube-system/kube-dns", "udp", 53, "dns"],
];
/** The receiver's Service, in the scaled Services' namespace here: it has a name the gate must not count. */
const RECEIVER: Frontend[] = [
  ["10.96.0.2", "scale/ditg-receiver", "tcp", 30900, "signaling"],
  ["10.96.0.2", "scale/ditg-receiver", "udp", 31000, "data-udp"],
  ["fd00:10:96::2", "scale/ditg-receiver", "tcp", 30900, "signaling"],
];
const scaledService = (i: number) => `svc-${String(i).padStart(5, "0")}`;
/** Scaled Services 1..n, dual-stack, one port each. */
function scaled(n: number, from = 1): Frontend[] {
  const out: Frontend[] = [];
  for (let i = from; i <= n; i++) {
    out.push([`10.96.${Math.floor(i / 250) + 10}.${(i % 250) + 1}`, `scale/${scaledService(i)}`, "tcp", 80, "http"]);
    out.push([`fd00:10:96::1:${i.toString(16)}`, `scale/${scaledService(i)}`, "tcp", 80, "http"]);
  }
  return out;
}

/** `iptables-save -t nat` / `ip6tables-save -t nat` of kube-proxy (iptables mode), one family. */
function iptablesSave(frontends: readonly Frontend[], f: "ipv4" | "ipv6"): string {
  const prefix = f === "ipv4" ? 32 : 128;
  const lines = ["*nat", ":PREROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]"];
  frontends.filter(([ip]) => family(ip) === f).forEach(([ip, svc, proto, port, name], i) => {
    const chain = `KUBE-SVC-${String(i).padStart(16, "Q")}`;
    // kube-proxy's masquerade rule for traffic from outside the pod network: a -d, but no KUBE-SVC jump.
    lines.push(`-A KUBE-SERVICES ! -s 10.244.0.0/16 -d ${ip}/${prefix} -p ${proto} -m comment --comment "${svc}:${name} cluster IP" -m ${proto} --dport ${port} -j KUBE-MARK-MASQ`);
    lines.push(`-A KUBE-SERVICES -d ${ip}/${prefix} -p ${proto} -m comment --comment "${svc}:${name} cluster IP" -m ${proto} --dport ${port} -j ${chain}`);
    lines.push(`-A ${chain} -m comment --comment "${svc}:${name} -> 10.244.1.5:${port}" -j KUBE-SEP-${String(i).padStart(16, "R")}`);
  });
  lines.push('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS');
  lines.push("COMMIT", "");
  return lines.join("\n");
}

/** `nft list map ip|ip6 kube-proxy service-ips` of kube-proxy (nftables mode). */
function nftMap(frontends: readonly Frontend[], f: "ipv4" | "ipv6"): string {
  const table = f === "ipv4" ? "ip" : "ip6";
  const elements = frontends
    .filter(([ip]) => family(ip) === f)
    .map(([ip, svc, proto, port, name], i) => `${ip} . ${proto} . ${port} : goto service-${String(i).padStart(8, "X")}-${svc}/${proto}/${name}`);
  return `table ${table} kube-proxy {
\tcomment "rules for kube-proxy"
\tmap service-ips {
\t\ttype ${f === "ipv4" ? "ipv4_addr" : "ipv6_addr"} . inet_proto . inet_service : verdict
\t\tcomment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
\t\telements = { ${elements.join(",\n\t\t\t     ")} }
\t}
}
`;
}

/** `cilium-dbg service list -o json`: frontends with their Service in flags; NodePort frontends too. */
function ciliumServices(frontends: readonly Frontend[]): string {
  const list = frontends.flatMap(([ip, svc, proto, port], i) => {
    const [namespace, name] = svc.split("/");
    const flags = { type: "ClusterIP", trafficPolicy: "Cluster", natPolicy: "None", name, namespace };
    const backend = [{ ip: family(ip) === "ipv4" ? "10.244.1.5" : "fd00:10:244:1::5", port, nodeName: "testbed-worker", state: "active" }];
    return [
      { spec: { id: 2 * i + 1, "frontend-address": { ip, port, protocol: proto.toUpperCase(), scope: "external" }, "backend-addresses": backend, flags }, status: { realized: {} } },
      // The node's own NodePort frontend of the same Service: not a ClusterIP.
      { spec: { id: 2 * i + 2, "frontend-address": { ip: "198.18.1.11", port: 30000 + i, protocol: proto.toUpperCase(), scope: "external" }, "backend-addresses": backend, flags: { ...flags, type: "NodePort" } }, status: {} },
    ];
  });
  // A ClusterIP whose endpoints are not ready yet: no backends, so not forwarded.
  list.push({ spec: { id: 9999, "frontend-address": { ip: "10.96.99.99", port: 80, protocol: "TCP", scope: "external" }, "backend-addresses": [], flags: { type: "ClusterIP", trafficPolicy: "Cluster", natPolicy: "None", name: "not-ready", namespace: "scale" } }, status: {} });
  return JSON.stringify(list, null, 2);
}

/**
 * The worker's dataplane as the stand-in kubectl answers it in read round `round` (files under dir):
 * what each exec of the dataplane's snippet prints.
 */
function writeRound(dir: string, round: number, frontends: readonly Frontend[]): void {
  const d = path.join(dir, `round-${round}`);
  fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(d, "iptables-save"), iptablesSave(frontends, "ipv4"));
  fs.writeFileSync(path.join(d, "ip6tables-save"), iptablesSave(frontends, "ipv6"));
  fs.writeFileSync(path.join(d, "nft-ip"), nftMap(frontends, "ipv4"));
  fs.writeFileSync(path.join(d, "nft-ip6"), nftMap(frontends, "ipv6"));
  fs.writeFileSync(path.join(d, "cilium"), ciliumServices(frontends));
}

/**
 * A kubectl stand-in for the gate: the API's Services and EndpointSlices from files, the worker's
 * dataplane from the round files (a round is one read: one `get pods` of the snippet; the last
 * round repeats). Every call is logged.
 */
function kubectlStandIn(dir: string): string {
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin, { recursive: true });
  fs.writeFileSync(
    path.join(bin, "kubectl"),
    `#!/usr/bin/env bash
state=${JSON.stringify(dir)}
echo "$*" >>"$state/calls"
round="$(cat "$state/round" 2>/dev/null || echo 0)"
last="$(ls -d "$state"/round-* | sed 's/.*round-//' | sort -n | tail -n 1)"
if [ "$round" -gt "$last" ]; then round="$last"; fi
at="$state/round-$round"
case "$*" in
  *"get pods -l"*) echo $(( $(cat "$state/round" 2>/dev/null || echo 0) + 1 )) >"$state/round.next"; echo "pod/dataplane-worker" ;;
  *"get endpointslices"*) cat "$state/endpointslices" ;;
  *"get services -o jsonpath"*) cat "$state/services" ;;
  *"-- iptables-save -t nat"*) cat "$at/iptables-save" ;;
  *"-- ip6tables-save -t nat"*) cat "$at/ip6tables-save" ;;
  *"-- nft list map ip kube-proxy service-ips"*) cat "$at/nft-ip" ;;
  *"-- nft list map ip6 kube-proxy service-ips"*) cat "$at/nft-ip6" ;;
  *"-- cilium-dbg service list -o json"*) cat "$at/cilium" ;;
  *) echo "unexpected kubectl $*" >&2; exit 99 ;;
esac
status=$?
# A read ends with its last exec: the next read sees the next round.
case "$*" in
  *"-- ip6tables-save"*|*"nft list map ip6 "*|*"cilium-dbg service list"*) mv "$state/round.next" "$state/round" ;;
esac
exit "$status"
`,
    { mode: 0o755 },
  );
  return bin;
}

/** The API's side of a step: Services (name and ClusterIPs per line) and their EndpointSlices, all ready. */
function writeApi(dir: string, frontends: readonly Frontend[]): void {
  const byName = new Map<string, string[]>();
  for (const [ip, svc] of frontends) byName.set(svc, [...new Set([...(byName.get(svc) ?? []), ip])]);
  const services = [...byName].filter(([svc]) => svc.startsWith("scale/")).map(([svc, ips]) => [svc.split("/")[1], ...ips].join(" "));
  fs.writeFileSync(path.join(dir, "services"), services.map((l) => `${l}\n`).join(""));
  const slices = [...byName].filter(([svc]) => svc.startsWith("scale/")).flatMap(([svc, ips]) => ips.map((ip) => `${svc.split("/")[1]} ${family(ip) === "ipv4" ? "IPv4" : "IPv6"} true`));
  fs.writeFileSync(path.join(dir, "endpointslices"), slices.map((l) => `${l}\n`).join(""));
}

const s = testScenario({ services: 3, workloads: { namespace: "scale" }, receiver: { namespace: "scale" } });

function runGate(dataplane: Dataplane, dir: string, opts: { waitS: number; services?: number }) {
  const bin = kubectlStandIn(dir);
  const script = stepGateScript({ ...s, dataplane }, { workerNode: "testbed-worker", services: opts.services, waitS: opts.waitS, pollS: 1 });
  return spawnSync("bash", ["-c", script], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }, timeout: 60_000 });
}

let cases = 0;
function caseDir(name: string): string {
  const dir = path.join(work, `${name}-${cases++}`);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

describe.each(DATAPLANES)("the %s dataplane's own view of the worker's Services", (dataplane) => {
  it("lists each forwarded ClusterIP with its Service, the cluster's own and the receiver's included", () => {
    const dir = caseDir(`view-${dataplane}`);
    const table = [...SYSTEM, ...RECEIVER, ...scaled(3)];
    writeRound(dir, 0, table);
    const bin = kubectlStandIn(dir);
    const script = `set -euo pipefail\nWORKER_NODE=testbed-worker\nSERVICE_FAMILIES="ipv4 ipv6"\n${clusterDataplane(dataplane).programmedClusterIps}`;
    const r = spawnSync("bash", ["-c", script], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const got = [...new Set(r.stdout.trim().split("\n"))].sort();
    const want = [...new Set(table.map(([ip, svc]) => `${ip} ${svc}`))].sort();
    expect(got).toEqual(want);
  });

  it("fails, saying so, when the dataplane's pod cannot be read", () => {
    const dir = caseDir(`unreadable-${dataplane}`);
    writeRound(dir, 0, SYSTEM);
    fs.rmSync(path.join(dir, "round-0", dataplane === "ebpf" ? "cilium" : dataplane === "iptables" ? "ip6tables-save" : "nft-ip6"));
    const bin = kubectlStandIn(dir);
    const script = `set -euo pipefail\nWORKER_NODE=testbed-worker\nSERVICE_FAMILIES="ipv4 ipv6"\n${clusterDataplane(dataplane).programmedClusterIps}`;
    const r = spawnSync("bash", ["-c", script], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    expect(r.status).not.toBe(0);
  });
});

describe.each(DATAPLANES)("the step gate on the %s dataplane", (dataplane) => {
  it("passes at once when the worker holds exactly the step's Services; the other Services do not count", () => {
    const dir = caseDir(`exact-${dataplane}`);
    writeApi(dir, [...RECEIVER, ...scaled(3)]);
    writeRound(dir, 0, [...SYSTEM, ...RECEIVER, ...scaled(3)]);
    const r = runGate(dataplane, dir, { waitS: 30 });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(parseStepReadiness(r.stdout)).toMatchObject({ services: 3, programmedServices: 3 });
  });

  it("after a step down, waits while the worker still holds the larger step, and passes once it dropped it", () => {
    const dir = caseDir(`down-${dataplane}`);
    writeApi(dir, scaled(3));
    // Two reads still show the 5 Services of the step before; the third shows the 3 of this one.
    writeRound(dir, 0, [...SYSTEM, ...scaled(5)]);
    writeRound(dir, 1, [...SYSTEM, ...scaled(5)]);
    writeRound(dir, 2, [...SYSTEM, ...scaled(3)]);
    const r = runGate(dataplane, dir, { waitS: 30 });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const step = parseStepReadiness(r.stdout);
    expect(step).toMatchObject({ services: 3, programmedServices: 3 });
    // Two polls of a second each before the third read.
    expect(step.programmedAfterS).toBeGreaterThanOrEqual(2);
    expect(Number(fs.readFileSync(path.join(dir, "round"), "utf8"))).toBe(3);
  });

  it("refuses a worker that keeps a larger step's Services, saying how many extra and which", () => {
    const dir = caseDir(`stale-${dataplane}`);
    writeApi(dir, scaled(3));
    writeRound(dir, 0, [...SYSTEM, ...RECEIVER, ...scaled(5)]);
    const r = runGate(dataplane, dir, { waitS: 2 });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(
      `after 2 s the ${dataplane} dataplane on testbed-worker holds 5 scaled Services: 4 ClusterIPs more than the step's (e.g. scale/svc-00004 10.96.10.5, scale/svc-00005 10.96.10.6, scale/svc-00004 fd00:10:96::1:4), 0 of its ClusterIPs missing; the step asks for exactly 3 scaled Services (6 ClusterIPs)\n`,
    );
    expect(r.stdout).toBe("");
  });

  it("refuses a worker that misses some of the step's Services", () => {
    const dir = caseDir(`missing-${dataplane}`);
    writeApi(dir, scaled(3));
    writeRound(dir, 0, [...SYSTEM, ...scaled(2)]);
    const r = runGate(dataplane, dir, { waitS: 2 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/holds 2 scaled Services: 0 ClusterIPs more than the step's, 2 of its ClusterIPs missing \(e\.g\. scale\/svc-00003 10\.96\.10\.4, scale\/svc-00003 fd00:10:96::1:3\)/);
  });
});

describe("the step gate's other refusals", () => {
  it("refuses when a Service of the step has no ready endpoint in time", () => {
    const dir = caseDir("endpoints");
    writeApi(dir, scaled(3));
    fs.writeFileSync(path.join(dir, "endpointslices"), "svc-00001 IPv4 true\nsvc-00001 IPv6 true\nsvc-00002 IPv4 true\nsvc-00002 IPv6 false\nsvc-00003 IPv4 true\n");
    writeRound(dir, 0, scaled(3));
    const r = runGate("iptables", dir, { waitS: 2 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^after 2 s only 4 of 6 \(Service, family\) pairs have a ready endpoint/);
  });

  it("refuses when the API holds another number of scaled Services than the step", () => {
    const dir = caseDir("api-count");
    writeApi(dir, scaled(4));
    writeRound(dir, 0, scaled(4));
    const r = runGate("ebpf", dir, { waitS: 2, services: 3 });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe("namespace scale holds 4 scaled Services, the step asks for 3\n");
  });

  it("counts a dataplane it could not read as not ready, and says what the read said", () => {
    const dir = caseDir("unreadable");
    writeApi(dir, scaled(3));
    writeRound(dir, 0, scaled(3));
    fs.rmSync(path.join(dir, "round-0", "cilium"));
    const r = runGate("ebpf", dir, { waitS: 2 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^after 2 s the ebpf dataplane on testbed-worker could not be read: .*round-0\/cilium: No such file or directory/);
  });

  it("is one remote command line for the master, bounded above its own wait, and its step line parses", () => {
    const line = stepGateCommand({ ...s, dataplane: "nftables" }, { workerNode: "testbed-worker", waitS: 100 });
    expect(line).toMatch(/^sudo timeout --kill-after=30 400 bash -c '/);
    expect(scriptOfRootCommand(line)).toBe(stepGateScript({ ...s, dataplane: "nftables" }, { workerNode: "testbed-worker", waitS: 100 }));
    expect(parseStepReadiness("x\nstep services=10 endpointsReadyAfterS=1.5 programmedAfterS=2.0 programmedServices=10\n")).toEqual({
      services: 10,
      endpointsReadyAfterS: 1.5,
      programmedAfterS: 2,
      programmedServices: 10,
    });
    // The line of a gate that did not count what the worker held is not a measurable step.
    expect(() => parseStepReadiness("step services=10 endpointsReadyAfterS=1.5 programmedAfterS=2.0\n")).toThrow(/programmedServices=/);
    expect(() => stepGateScript(s, { workerNode: "w", waitS: 0 })).toThrow(/step gate waitS 0: accepted: a whole number >= 1/);
  });

  it.each(DATAPLANES)("passes shellcheck (%s)", (dataplane) => {
    const file = path.join(work, `gate-${dataplane}.sh`);
    fs.writeFileSync(file, `#!/usr/bin/env bash\n${stepGateScript({ ...s, dataplane }, { workerNode: "testbed-worker" })}`);
    const r = spawnSync("shellcheck", ["--shell=bash", "--severity=style", file], { encoding: "utf8" });
    expect(r.stdout).toBe("");
    expect(r.status).toBe(0);
  });
});

const canNetns = process.platform === "linux" && process.getuid?.() === 0 && spawnSync("unshare", ["--version"]).status === 0 && spawnSync("conntrack", ["--version"]).status === 0;

describe("forgetting the worker's tracked connections", () => {
  it.skipIf(!canNetns)("kube-proxy's dataplanes: the real conntrack empties both families' tables of the node", () => {
    // In a private network namespace: connection tracking on (an nft rule that matches ct state), one
    // UDP exchange per family on loopback, the flush, and the table read again.
    const script = `set -eu
ip link set lo up
nft add table inet track
nft add chain inet track out '{ type filter hook output priority 0; }'
nft add rule inet track out ct state new counter
echo x >/dev/udp/127.0.0.1/9 || true
echo x >/dev/udp/::1/9 || true
echo "before $(conntrack -L -f ipv4 2>/dev/null | grep -c udp) $(conntrack -L -f ipv6 2>/dev/null | grep -c udp)"
${clusterDataplane("iptables").forgetConnections}
echo "after $(conntrack -L -f ipv4 2>/dev/null | grep -c udp || true) $(conntrack -L -f ipv6 2>/dev/null | grep -c udp || true)"`;
    const r = spawnSync("unshare", ["--net", "bash", "-c", script], { encoding: "utf8", timeout: 60_000 });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^before [1-9]\d* [1-9]\d*\nafter 0 0\n$/);
    expect(clusterDataplane("nftables").forgetConnections).toBe(clusterDataplane("iptables").forgetConnections);
  });

  /** A crictl stand-in: one running cilium-agent container (or none), exec logged. */
  function crictl(dir: string, running: boolean): string {
    const bin = path.join(dir, "bin");
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(
      path.join(bin, "crictl"),
      `#!/usr/bin/env bash
echo "$*" >>${JSON.stringify(path.join(dir, "calls"))}
case "$*" in
  *" ps --name ^cilium-agent$ --state running -q") ${running ? "echo 4f1c2d" : "true"} ;;
  *" exec 4f1c2d cilium-dbg bpf ct flush global") echo "Flushed 12 entries from /sys/fs/bpf/tc/globals/cilium_ct4_global" ;;
  *) echo "unexpected crictl $*" >&2; exit 99 ;;
esac
`,
      { mode: 0o755 },
    );
    return bin;
  }

  it("Cilium: the agent's own flush of its CT maps, in the running agent container", () => {
    const dir = caseDir("ct-flush");
    const bin = crictl(dir, true);
    const r = spawnSync("bash", ["-c", `set -euo pipefail\n${clusterDataplane("ebpf").forgetConnections}`], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(fs.readFileSync(path.join(dir, "calls"), "utf8").trim().split("\n").map((c) => c.replace(/^--runtime-endpoint \S+ /, ""))).toEqual([
      "ps --name ^cilium-agent$ --state running -q",
      "exec 4f1c2d cilium-dbg bpf ct flush global",
    ]);
  });

  it("Cilium: fails, saying why, on a node without a running agent", () => {
    const dir = caseDir("ct-flush-none");
    const bin = crictl(dir, false);
    const r = spawnSync("bash", ["-c", `set -euo pipefail\n${clusterDataplane("ebpf").forgetConnections}`], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^no running cilium-agent container on /);
  });

  it.each(DATAPLANES)("passes shellcheck (%s)", (dataplane) => {
    const file = path.join(work, `forget-${dataplane}.sh`);
    fs.writeFileSync(file, `#!/usr/bin/env bash\nset -euo pipefail\n${clusterDataplane(dataplane).forgetConnections}\n`);
    const r = spawnSync("shellcheck", ["--shell=bash", "--severity=style", file], { encoding: "utf8" });
    expect(r.stdout).toBe("");
    expect(r.status).toBe(0);
  });
});
