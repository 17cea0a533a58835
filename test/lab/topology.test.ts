import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cidrContains, parseCidr } from "../../scenario/cidr.js";
import { echoProbe, startEchoListener } from "../../lab/echo-probe.js";
import { bpfObjectGone } from "./bpf-objects.js";
import {
  cleanupLeftovers,
  createTopology,
  findRunObjects,
  labHostProblem,
  planTopology,
  shapingCommands,
  type LabTopology,
  type TopologyOptions,
} from "../../lab/topology.js";

const V4 = parseCidr("198.18.0.0/15")!;
const V6 = parseCidr("2001:2::/48")!;

function planError(options: TopologyOptions, prefix = "dptbtest"): string {
  try {
    planTopology(prefix, options);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("options were accepted");
}

describe("topology plan", () => {
  const plan = planTopology("dptbab12");

  it("names every namespace and interface with the run prefix, within 15 characters", () => {
    expect(Object.values(plan.namespaces)).toEqual(["dptbab12-client", "dptbab12-router", "dptbab12-worker", "dptbab12-pod"]);
    const ifnames = Object.values(plan.links).flatMap((l) => [l.gateway.ifname, l.host.ifname]);
    expect(new Set(ifnames).size).toBe(6);
    for (const name of ifnames) {
      expect(name.startsWith("dptbab12-")).toBe(true);
      expect(name.length).toBeLessThanOrEqual(15);
    }
  });

  it("chains client -> router -> worker -> pod, the node address on the worker's uplink", () => {
    expect([plan.links.access.host.role, plan.links.access.gateway.role]).toEqual(["client", "router"]);
    expect([plan.links.datacenter.gateway.role, plan.links.datacenter.host.role]).toEqual(["router", "worker"]);
    expect([plan.links.pod.gateway.role, plan.links.pod.host.role]).toEqual(["worker", "pod"]);
    expect(plan.worker.uplink).toBe(plan.links.datacenter.host.ifname);
    expect(plan.addresses.node).toEqual(plan.links.datacenter.host.addresses);
    expect(plan.addresses.pod).toEqual({ ipv4: "198.18.2.2", ipv6: "2001:2:0:40::2" });
    expect(plan.addresses.client).toEqual({ ipv4: "198.18.0.2", ipv6: "2001:2:0:10::2" });
  });

  it("uses only the benchmarking ranges, one subnet per link", () => {
    for (const link of Object.values(plan.links)) {
      for (const end of [link.gateway, link.host]) {
        expect(cidrContains(V4, end.addresses.ipv4)).toBe(true);
        expect(cidrContains(V6, end.addresses.ipv6)).toBe(true);
        expect(cidrContains(link.subnets.ipv4, end.addresses.ipv4)).toBe(true);
        expect(cidrContains(link.subnets.ipv6, end.addresses.ipv6)).toBe(true);
      }
    }
  });

  it("routes both ways, only to the lab's subnets, and forwards on router and worker", () => {
    const routesOf = (role: string) => plan.routes.filter((r) => r.role === role).map((r) => `${r.destination} via ${r.via}`);
    expect(routesOf("client")).toEqual([
      "198.18.1.0/24 via 198.18.0.1", "2001:2:0:20::/64 via 2001:2:0:10::1",
      "198.18.2.0/24 via 198.18.0.1", "2001:2:0:40::/64 via 2001:2:0:10::1",
    ]);
    expect(routesOf("pod")).toEqual([
      "198.18.0.0/24 via 198.18.2.1", "2001:2:0:10::/64 via 2001:2:0:40::1",
      "198.18.1.0/24 via 198.18.2.1", "2001:2:0:20::/64 via 2001:2:0:40::1",
    ]);
    expect(routesOf("router")).toEqual(["198.18.2.0/24 via 198.18.1.2", "2001:2:0:40::/64 via 2001:2:0:20::2"]);
    expect(routesOf("worker")).toEqual(["198.18.0.0/24 via 198.18.1.1", "2001:2:0:10::/64 via 2001:2:0:20::1"]);
    expect(plan.forwarding).toEqual(["router", "worker"]);
  });

  it("caps the access and datacenter links at 500 Mbit/s with tbf by default, switchable", () => {
    expect(plan.shaping).toEqual({ shaper: "tbf", mbps: 500 });
    expect([plan.links.access.shaped, plan.links.datacenter.shaped, plan.links.pod.shaped]).toEqual([true, true, false]);
    expect(planTopology("dptbab12", { linkMbps: 0 }).shaping).toBeNull();
    expect(planTopology("dptbab12", { linkMbps: 0 }).links.access.shaped).toBe(false);
    expect(planTopology("dptbab12", { shaper: "htb", linkMbps: 100 }).shaping).toEqual({ shaper: "htb", mbps: 100 });
  });

  it("renders tbf and htb commands for the rate", () => {
    const [tbf] = shapingCommands("x", "tbf", 500);
    expect(tbf).toEqual(expect.arrayContaining(["tbf", "rate", "500000000bit"]));
    const htb = shapingCommands("x", "htb", 100);
    expect(htb).toHaveLength(2);
    expect(htb[0]).toEqual(expect.arrayContaining(["root", "htb", "default", "1"]));
    expect(htb[1]).toEqual(expect.arrayContaining(["rate", "100000000bit", "ceil", "100000000bit"]));
  });

  it("rejects bad options, naming the key, the value and what is accepted", () => {
    expect(planError({ subnets: { access: { ipv4: "10.0.0.0/24" } } })).toMatch(/^subnets\.access\.ipv4: "10\.0\.0\.0\/24" is outside 198\.18\.0\.0\/15; accepted/);
    expect(planError({ subnets: { pod: { ipv6: "2001:db8::/64" } } })).toMatch(/^subnets\.pod\.ipv6: .* is outside 2001:2::\/48/);
    expect(planError({ subnets: { pod: { ipv4: "2001:2::/64" } } })).toMatch(/^subnets\.pod\.ipv4: .* not an IPv4 CIDR/);
    expect(planError({ subnets: { pod: { ipv4: "198.18.0.128/25" } } })).toMatch(/^subnets\.pod\.ipv4: .* overlaps subnets\.access\.ipv4/);
    expect(planError({ subnets: { pod: { ipv4: "198.18.9.0/31" } } })).toMatch(/too small .* \/30/);
    expect(planError({ subnets: { uplink: {} } as never })).toMatch(/^subnets\.uplink: unknown link; accepted: access, datacenter, pod/);
    expect(planError({ linkMbps: -1 })).toMatch(/^linkMbps: -1 .* accepted: Mbit\/s from 0/);
    expect(planError({ linkMbps: Number.NaN })).toMatch(/^linkMbps: NaN/);
    expect(planError({ shaper: "netem" as never })).toMatch(/^shaper: "netem" is unknown; accepted: tbf, htb/);
    expect(planError({}, "lab1")).toMatch(/^prefix: "lab1" .* accepted: "dptb" \+ 4 characters/);
  });
});

const hostProblem = labHostProblem();
const CHILD = fileURLToPath(new URL("./topology-child.ts", import.meta.url));

interface ChildRun {
  readonly child: ChildProcess;
  readonly prefix: string;
  readonly sleeperPid: number;
  readonly bpf: { programs: number[]; maps: number[] } | null;
}

function startChild(...args: string[]): Promise<ChildRun> {
  const child = spawn(process.execPath, ["--import", "tsx", CHILD, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.once("exit", (code, signal) => reject(new Error(`child exited (${code ?? signal}) before reporting: ${err}`)));
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf("\n");
      if (nl >= 0) resolve({ child, ...(JSON.parse(out.slice(0, nl)) as Omit<ChildRun, "child">) });
    });
  });
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
}

/** True while pid runs; a zombie (dead, not yet reaped by an init that may never reap it) counts as gone. */
function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

describe.skipIf(hostProblem !== undefined)(`topology on this kernel${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  let topology: LabTopology;

  beforeAll(() => {
    topology = createTopology();
  });
  afterAll(() => topology?.destroy());

  it("creates the namespaces, veths, addresses and the 500 Mbit/s cap on the measured links", () => {
    const found = findRunObjects(topology.prefix);
    expect(found.namespaces.sort()).toEqual(Object.values(topology.plan.namespaces).sort());
    expect(found.links).toEqual([]);
    const qdiscs = (role: "client" | "router" | "worker" | "pod") =>
      JSON.parse(topology.run(role, ["tc", "-j", "qdisc", "show"])) as { kind: string; dev: string; options?: { rate?: number } }[];
    const capped = [...qdiscs("client"), ...qdiscs("router"), ...qdiscs("worker"), ...qdiscs("pod")].filter((q) => q.kind === "tbf");
    expect(capped.map((q) => q.dev).sort()).toEqual(
      [topology.plan.links.access.host.ifname, topology.plan.links.access.gateway.ifname,
        topology.plan.links.datacenter.gateway.ifname, topology.plan.links.datacenter.host.ifname].sort(),
    );
    // tc reports the rate in bytes per second.
    for (const q of capped) expect(q.options?.rate).toBe(500e6 / 8);
    const podAddrs = JSON.parse(topology.run("pod", ["ip", "-j", "addr", "show", "dev", topology.plan.links.pod.host.ifname])) as {
      addr_info: { local: string; tentative?: boolean }[];
    }[];
    const local = podAddrs[0]!.addr_info.filter((a) => !a.local.startsWith("fe80"));
    expect(local.map((a) => a.local).sort()).toEqual([topology.addresses.pod.ipv4, topology.addresses.pod.ipv6].sort());
    expect(local.some((a) => a.tentative)).toBe(false);
  });

  it.each(["ipv4", "ipv6"] as const)("routes TCP and UDP from client to pod and back over %s", async (family) => {
    for (const protocol of ["tcp", "udp"] as const) {
      const listener = await startEchoListener(topology, "pod", protocol, family === "ipv4" ? "0.0.0.0" : "::", 7000);
      try {
        const result = echoProbe(topology, "client", protocol, topology.addresses.pod[family], 7000);
        expect(result, `${protocol} ${family}`).toMatchObject({ ok: true, from: topology.addresses.pod[family], fromPort: 7000 });
        expect((await listener.seen(1)).map((p) => p.address)).toContain(topology.addresses.client[family]);
      } finally {
        await listener.stop();
      }
    }
  });

  it("has no route to any address outside the lab's subnets", () => {
    for (const role of ["client", "router", "worker", "pod"] as const) {
      for (const outside of ["192.0.2.1", "8.8.8.8", "2001:db8::1", "2001:4860:4860::8888"]) {
        const result = topology.exec(role, ["ip", "route", "get", outside]);
        expect(result.status, `${role} -> ${outside}: ${result.stdout}`).not.toBe(0);
        expect(result.stderr).toMatch(/unreachable/i);
      }
    }
  });

  it("switches to htb at another rate", () => {
    const other = createTopology({ shaper: "htb", linkMbps: 100 });
    try {
      // tc prints htb classes as text only.
      const classes = other.run("worker", ["tc", "class", "show", "dev", other.plan.worker.uplink]).trim().split("\n");
      expect(classes).toHaveLength(1);
      expect(classes[0]).toMatch(/^class htb 1:1 root .*rate 100Mbit ceil 100Mbit/);
      expect(other.run("worker", ["tc", "qdisc", "show", "dev", other.plan.worker.uplink])).toMatch(/^qdisc htb 1: root/);
    } finally {
      other.destroy();
    }
    expect(findRunObjects(other.prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
  });

  it("refuses a run id in use without touching that run", () => {
    const id = topology.prefix.slice(4);
    expect(() => createTopology({ runId: id })).toThrow(new RegExp(`^runId: "${id}" is in use by lab run ${topology.prefix}; accepted: an unused id`));
    expect(() => createTopology({ runId: "AB!" })).toThrow(/^runId: "AB!" is not accepted; accepted: 4 characters \[a-z0-9\]/);
    expect(findRunObjects(topology.prefix).namespaces).toHaveLength(4);
    // Still wired: the pod's own stack answers (a reset: nothing listens there).
    expect(echoProbe(topology, "client", "tcp", topology.addresses.pod.ipv4, 7001).error).toMatch(/ECONNREFUSED/);
  });

  it("leaves nothing behind after destroy", () => {
    const other = createTopology();
    const { prefix } = other;
    expect(findRunObjects(prefix).namespaces).toHaveLength(4);
    other.destroy();
    expect(findRunObjects(prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
    other.destroy();
  });

  it("removes everything when the process exits without destroying", async () => {
    const run = await startChild("--ebpf", "--exit");
    expect(await exited(run.child)).toEqual({ code: 0, signal: null });
    expect(findRunObjects(run.prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
    expect(processAlive(run.sleeperPid)).toBe(false);
  });

  it.each(["SIGTERM", "SIGINT"] as const)("removes everything when the process gets %s", async (signal) => {
    const run = await startChild("--ebpf");
    const before = findRunObjects(run.prefix);
    expect(before.namespaces).toHaveLength(4);
    expect(before.mounts).toHaveLength(1);
    run.child.kill(signal);
    expect(await exited(run.child)).toEqual({ code: null, signal });
    expect(findRunObjects(run.prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
    expect(processAlive(run.sleeperPid)).toBe(false);
  });

  it("cleanupLeftovers() spares live runs and removes a crashed run's namespaces, processes, mounts and pinned maps", async () => {
    const run = await startChild("--ebpf");
    try {
      const live = cleanupLeftovers();
      expect(live.live).toContain(run.prefix);
      expect(live.live).toContain(topology.prefix);
      expect(Object.keys(live.removed)).not.toContain(run.prefix);
      expect(findRunObjects(run.prefix).namespaces).toHaveLength(4);

      run.child.kill("SIGKILL");
      await exited(run.child);
      // A crash leaves everything in place...
      const left = findRunObjects(run.prefix);
      expect(left.namespaces).toHaveLength(4);
      expect(left.mounts).toHaveLength(1);
      expect(processAlive(run.sleeperPid)).toBe(true);

      // ...until cleanupLeftovers().
      const report = cleanupLeftovers();
      expect(report.removed[run.prefix]?.namespaces.sort()).toEqual(left.namespaces.sort());
      expect(report.live).toContain(topology.prefix);
      expect(findRunObjects(run.prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
      expect(processAlive(run.sleeperPid)).toBe(false);
      expect(run.bpf!.programs).toHaveLength(2);
      for (const id of run.bpf!.programs) expect(await bpfObjectGone("prog", id), `program ${id}`).toBe(true);
      for (const id of run.bpf!.maps) expect(await bpfObjectGone("map", id), `map ${id}`).toBe(true);
      // The live topology of this process is untouched.
      expect(findRunObjects(topology.prefix).namespaces).toHaveLength(4);
    } finally {
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill("SIGKILL");
    }
  });
});
