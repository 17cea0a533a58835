// The worker's hop probes without a worker: where they go and in which order (points.ts), the
// scripts they send (shellcheck, quoting), and the module's sequencing and refusals over a fake
// shell that answers as a worker would. Real probes on a lab worker: test/lab/worker-hops.test.ts.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { hopSources } from "../../hops/build.js";
import type { CommandResult } from "../../backends/cloud.js";
import { WorkerHops, WorkerHopsError, type WorkerShell } from "../../backends/worker-hops/module.js";
import { CILIUM_FILTER_PRIORITY_KEY, hookProblem, isWorkerProbe, parseFilters, WORKER_PLACES, WORKER_PROBE_OBJECT, WORKER_ROLES, workerPlaces } from "../../backends/worker-hops/points.js";
import { workerPoints } from "../../measure/hops.js";
import { attachScript, connectScript, endScript, factsScript, forgetRunScript, installScript, locateScript, parseLines, q, removeScript } from "../../backends/worker-hops/scripts.js";

/** What `tc filter show dev tb-dc ingress` prints on a Cilium 1.17 worker (legacy tc, default priority). */
const CILIUM_INGRESS = [
  "filter protocol all pref 1 bpf chain 0 ",
  "filter protocol all pref 1 bpf chain 0 handle 0x1 cil_from_netdev-tb-dc direct-action not_in_hw id 1804 tag 4a1e8a5d3e9d4c8b jited ",
].join("\n");
const PROBE_LINE = (prog: string) => `filter protocol all pref 1 bpf chain 0 handle 0x1 ${WORKER_PROBE_OBJECT}:[tc/${prog}] direct-action not_in_hw id 91 name ${prog} tag 97455df168ec1616 jited `;

describe("the probes' places and the filter order", () => {
  it("parses tc's listing in the order the kernel runs the filters", () => {
    const shown = [
      "filter protocol all pref 2 bpf chain 0 ",
      "filter protocol all pref 2 bpf chain 0 handle 0x1 cil_from_netdev-tb-dc direct-action not_in_hw id 1804 tag 4a1e jited ",
      "filter protocol all pref 1 bpf chain 0 ",
      PROBE_LINE("hf_uplink_in"),
    ].join("\n");
    const filters = parseFilters(shown);
    expect(filters).toEqual([
      { pref: 1, name: `${WORKER_PROBE_OBJECT}:[tc/hf_uplink_in]` },
      { pref: 2, name: "cil_from_netdev-tb-dc" },
    ]);
    expect(filters.map(isWorkerProbe)).toEqual([true, false]);
  });

  it("refuses a hook whose first priority Cilium holds, naming the Helm value that makes room", () => {
    const problem = hookProblem({ device: "tb-dc", direction: "ingress" }, parseFilters(CILIUM_INGRESS));
    expect(problem).toContain("tb-dc ingress: cil_from_netdev-tb-dc holds tc priority 1");
    expect(problem).toContain(`extraConfig: {${CILIUM_FILTER_PRIORITY_KEY}: "2"}`);
    expect(hookProblem({ device: "x", direction: "egress" }, [{ pref: 1, name: "other.o:[sec]" }])).toMatch(/move it to a priority above 1/);
    // Cilium after the probe's priority, or a probe of ours, leaves room.
    expect(hookProblem({ device: "tb-dc", direction: "ingress" }, [{ pref: 2, name: "cil_from_netdev-tb-dc" }])).toBeUndefined();
    expect(hookProblem({ device: "tb-dc", direction: "ingress" }, parseFilters(PROBE_LINE("hf_uplink_in")))).toBeUndefined();
  });

  it("covers the worker's six points: the data NIC and the pod's veth both ways, and the pod's own interface", () => {
    expect(WORKER_PLACES.map((p) => `${p.point} ${p.iface} ${p.direction}`)).toEqual([
      "3 nic ingress", "4 pod-veth egress", "5 pod ingress", "6 pod egress", "7 pod-veth ingress", "8 nic egress",
    ]);
    const source = hopSources()["hop-probe.c"];
    for (const p of WORKER_PLACES) expect(source).toContain(`HOP_PROGRAM(${p.program}, `);
  });
});

describe("the probes of the paths across two workers", () => {
  it("give each role the points its host holds on the path, in path order, the node-to-node points on the tunnel device too", () => {
    const list = (role: (typeof WORKER_ROLES)[number], tunnel: boolean) => workerPlaces(role, tunnel).map((p) => `${p.point} ${p.program} ${p.iface} ${p.direction}`);
    expect(list("nodeport-entry", false)).toEqual(["3 hb_uplink_in nic ingress", "12 hb_uplink_out nic egress"]);
    expect(list("nodeport-entry", true)).toEqual(["3 hb_uplink_in nic ingress", "3 hb_uplink_in tunnel ingress", "12 hb_uplink_out nic egress", "12 hb_uplink_out tunnel egress"]);
    expect(list("client-node", false)).toEqual([
      "20 hf_cpod_out pod egress", "21 hf_cpod_veth pod-veth ingress", "12 hb_uplink_out nic egress", "19 hb_uplink_in nic ingress", "22 hr_cpod_veth pod-veth egress", "23 hr_cpod_in pod ingress",
    ]);
    expect(list("endpoint-node", true)).toEqual([
      "13 hf_node2_in nic ingress", "13 hf_node2_in tunnel ingress", "14 hf_pod2_veth pod-veth egress", "15 hf_pod2_in pod ingress",
      "16 hr_pod2_out pod egress", "17 hr_pod2_veth pod-veth ingress", "18 hr_node2_out nic egress", "18 hr_node2_out tunnel egress",
    ]);
    expect(list("receiver-node", true)).toEqual(list("receiver-node", false));
  });

  it("stamp, between them, every point the decomposition reads on each host", () => {
    const source = hopSources()["hop-probe.c"];
    // The programs that stamp each point, read from hop-probe.c's definitions (both-ways programs stamp two).
    const stampedBy = new Map<string, number[]>();
    const enumNames = [...source.matchAll(/HOP_PROGRAM(?:_AT)?\((\w+), (HOP_\w+)(?:, (HOP_\w+))?/g)];
    const header = hopSources()["hop-maps.h"];
    const order = [...header.matchAll(/^\s+(HOP_[FR]_\w+)(?: = 0)?,/gm)].map((m) => m[1]!);
    for (const m of enumNames) stampedBy.set(m[1]!, [m[2]!, m[3]].filter((x): x is string => x !== undefined && x !== "HOP_NO_POINT").map((n) => order.indexOf(n)));
    // A program written out that also writes its SYN's connect call (stamp(..., connect = 1)): the call's two points as well.
    for (const m of source.matchAll(/SEC\("tc\/(\w+)"\)\s*int \w+\(struct __sk_buff \*skb\)\s*\{\s*return stamp\(skb, (HOP_\w+), (HOP_\w+), [01], ([01])\);/g)) {
      const points = [m[2]!, m[3]!, ...(m[4] === "1" ? ["HOP_F_CONNECT_CALL", "HOP_F_CONNECT_DONE"] : [])];
      stampedBy.set(m[1]!, points.filter((n) => n !== "HOP_NO_POINT").map((n) => order.indexOf(n)));
    }
    const covered = (roles: (typeof WORKER_ROLES)[number][]) => new Set(roles.flatMap((r) => workerPlaces(r, false).flatMap((p) => stampedBy.get(p.program) ?? [])));
    expect([...covered(["nodeport-entry"])].sort((a, b) => a - b)).toEqual([...workerPoints("nodeport-remote", 1)].sort((a, b) => a - b));
    expect([...covered(["client-node"])].filter((p) => workerPoints("clusterip", 1).includes(p)).sort((a, b) => a - b)).toEqual([...workerPoints("clusterip", 1)].sort((a, b) => a - b));
    expect([...covered(["endpoint-node"])].sort((a, b) => a - b)).toEqual(workerPoints("nodeport-remote", 2));
    expect(workerPoints("clusterip", 2)).toEqual(workerPoints("nodeport-remote", 2));
  });

  it("finds a Deployment's pod by its process and hostname, or no pod at all, in POSIX sh", () => {
    const byDeployment = locateScript("tb-dc", { deployment: "ditg-client", process: "sleep" }, workerPlaces("client-node", true));
    expect(byDeployment).toContain("pgrep -x sleep");
    expect(byDeployment).toContain('= ditg-client ]');
    const noPod = locateScript("tb-dc", undefined, workerPlaces("nodeport-entry", true));
    expect(noPod).not.toContain("pgrep");
    expect(noPod).toContain("show_hook tunnel ingress");
    const attachNoPod = attachScript("/var/tmp/testbed-hops-nodeport-remote", { devices: { nic: "tb-dc", tunnel: "cilium_vxlan" }, runName: "r", reader: ["x"], places: workerPlaces("nodeport-entry", true) });
    expect(attachNoPod).not.toContain("mount --bind");
    expect(attachNoPod).toContain("attach host cilium_vxlan egress hb_uplink_out");
    for (const script of [byDeployment, noPod, attachNoPod]) expect(() => execFileSync("shellcheck", ["-s", "sh", "-"], { input: script, encoding: "utf8" })).not.toThrow();
    expect(() => attachScript("/w", { devices: { nic: "tb-dc" }, runName: "r", reader: [], places: workerPlaces("client-node", false) })).toThrow(/needs a process of the pod/);
    expect(() => locateScript("tb-dc", { deployment: "Bad Name", process: "sleep" })).toThrow(/is not a Deployment's name/);
  });
});

describe("the scripts", () => {
  const work = "/var/tmp/testbed-hops";
  const scripts = {
    facts: factsScript(work),
    install: installScript(work, hopSources(), { probe: ["-O2", "-c", `${work}/src/hop-probe.c`], reader: ["-O2", "-o", `${work}/hop-reader`] }),
    locateByAddress: locateScript("tb-dc", { address: "10.244.1.23" }),
    locateByPid: locateScript("tb-dc", { pid: 4242 }),
    locateOnly: locateScript("tb-dc", {}),
    attach: attachScript(work, { pid: 4242, devices: { nic: "tb-dc", "pod-veth": "lxc12ab", pod: "eth0" }, runName: "run-1", reader: ["perf", "a", "b", "c"] }),
    end: endScript(work, "run-1"),
    forget: forgetRunScript(work, "run-1"),
    remove: removeScript(work),
    connect: connectScript(work, 4242),
  };

  it.each(Object.keys(scripts))("%s passes shellcheck as POSIX sh", (name) => {
    const script = scripts[name as keyof typeof scripts];
    expect(() => execFileSync("shellcheck", ["-s", "sh", "-"], { input: script, encoding: "utf8" })).not.toThrow();
  });

  it("copies every source whole, and refuses one that would end its own copy", () => {
    const sources = hopSources();
    for (const text of Object.values(sources)) expect(scripts.install).toContain(text.trimEnd());
    expect(() => installScript(work, { "x.c": "int a;\nTESTBED_HOPS_EOF\n" }, { probe: [], reader: [] })).toThrow(/holds the line TESTBED_HOPS_EOF/);
  });

  it("quotes values and refuses names that are not plain", () => {
    expect(q("tb-dc")).toBe("tb-dc");
    expect(q("a b'c")).toBe(`'a b'\\''c'`);
    expect(() => locateScript("tb-dc", { address: "10.0.0.1; reboot" })).toThrow(/is not an IP address/);
    expect(() => locateScript("tb-dc", { pid: -3 })).toThrow(/is not a process id/);
    expect(() => endScript(work, "../x y")).toThrow(/run name "..\/x y" is not accepted/);
  });

  it("reads key=value lines back", () => {
    expect(parseLines("pid=12\nnoise\nfilter=nic ingress filter protocol all pref 1\n")).toEqual([
      { key: "pid", value: "12" },
      { key: "filter", value: "nic ingress filter protocol all pref 1" },
    ]);
  });
});

/** A worker as the scripts see it: answers each script by what it does, and records them. */
class FakeWorker implements WorkerShell {
  readonly scripts: string[] = [];
  facts = "kernel=5.4.0-216-generic\ntc=tc utility, iproute2-ss200127\nmultiarch=/usr/include/x86_64-linux-gnu\n";
  hooks: Record<string, string> = {};
  endOutput = `summary={"records":0,"offsetStartNs":"1","offsetEndNs":"1","offsetUncertaintyNs":20,"stamped":[0,0,0,0,0,0,0,0,0,0,0,0],"dropped":[0,0,0,0,0,0,0,0,0,0,0,0],"lost":0,"output":"perf","expired":false}\n`;
  fetched: string[] = [];

  async run(script: string): Promise<CommandResult> {
    this.scripts.push(script);
    const ok = (stdout: string): CommandResult => ({ code: 0, stdout, stderr: "" });
    if (script.includes('echo "kernel=')) return ok(this.facts);
    if (script.includes("installed=")) return ok("installed=/var/tmp/testbed-hops\n");
    if (script.includes("show_hook()")) {
      const lines = WORKER_PLACES.flatMap((p) => (this.hooks[`${p.iface} ${p.direction}`] ?? "").split("\n").filter(Boolean).map((l) => `filter=${p.iface} ${p.direction} ${l}`));
      return ok(["pid=4242", "pod-if=eth0", "veth=lxc12ab", ...lines, ""].join("\n"));
    }
    if (script.includes("attach host")) {
      const hooks = WORKER_PLACES.map((p) => `hook=${p.iface === "pod" ? "pod" : "host"} ${p.iface === "nic" ? "tb-dc" : p.iface === "pod" ? "eth0" : "lxc12ab"} ${p.direction} ${PROBE_LINE(p.program)}`);
      return ok([...hooks, "reader=ready", ""].join("\n"));
    }
    if (script.includes('kill -TERM "$(cat "$RUN/pid")"')) return ok(this.endOutput);
    return ok("");
  }

  async fetch(remotePath: string): Promise<void> {
    this.fetched.push(remotePath);
  }
}

describe("WorkerHops over a fake worker", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "worker-hops-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("builds for the paper's worker (5.4, Ubuntu 20.04's tc without libbpf): perf event array, tc's own map definitions, no BTF", async () => {
    const worker = new FakeWorker();
    const hops = await WorkerHops.install(worker, { dataPort: 31000, receiver: { address: "10.244.1.23" } });
    expect(hops.build).toMatchObject({ output: "perf", maps: "legacy" });
    const install = worker.scripts.find((s) => s.includes("installed="))!;
    expect(install).toContain("-DHOP_OUTPUT_PERF");
    expect(install).toContain("-DHOP_MAPS_LEGACY");
    expect(install).toContain("-DHOP_DATA_PORT=31000");
    expect(install).not.toMatch(/clang -O2 -g /);
  });

  it("builds for a newer worker (5.15, tc with libbpf): ring buffer, pinned BTF maps; a test forces the perf path", async () => {
    const worker = new FakeWorker();
    worker.facts = "kernel=5.15.0-100-generic\ntc=tc utility, iproute2-5.15.0, libbpf 0.5.0\n";
    expect((await WorkerHops.install(worker, { dataPort: 31000, receiver: { pid: 1 } })).build).toMatchObject({ output: "ringbuf", maps: "btf-pinned" });
    expect((await WorkerHops.install(worker, { dataPort: 31000, receiver: { pid: 1 }, output: "perf" })).build.output).toBe("perf");
    worker.facts = "kernel=5.4.0-216-generic\ntc=tc utility, iproute2-ss200127\n";
    await expect(WorkerHops.install(worker, { dataPort: 31000, receiver: { pid: 1 }, output: "ringbuf" })).rejects.toThrow("output: ringbuf needs kernel 5.8 or later; the worker runs 5.4.0-216-generic; accepted: perf");
  });

  it("says which packages a worker lacks, and installs nothing", async () => {
    const worker = new FakeWorker();
    worker.facts += "missing=clang\nmissing=/usr/include/linux/bpf.h\n";
    await expect(WorkerHops.install(worker, { dataPort: 31000, receiver: { pid: 1 } })).rejects.toThrow(
      "the worker lacks clang, /usr/include/linux/bpf.h, which the hop probes need (Ubuntu packages: clang, linux-libc-dev",
    );
    expect(worker.scripts).toHaveLength(1);
  });

  it("removes what an earlier session left before it installs", async () => {
    const worker = new FakeWorker();
    worker.facts += "leftover=/var/tmp/testbed-hops\n";
    await WorkerHops.install(worker, { dataPort: 31000, receiver: { pid: 1 } });
    expect(worker.scripts.findIndex((s) => s.includes('[ -e "$WORK" ] || exit 0'))).toBe(1);
    expect(worker.scripts.findIndex((s) => s.includes("installed="))).toBe(2);
  });

  it("refuses to probe where Cilium holds the first priority, before attaching anything", async () => {
    const worker = new FakeWorker();
    worker.hooks["nic ingress"] = CILIUM_INGRESS;
    const hops = await WorkerHops.install(worker, { dataPort: 31000, receiver: { address: "10.244.1.23" } });
    const error = await hops.begin("latency", "run-1", { maxSeconds: 30 }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(WorkerHopsError);
    expect((error as Error).message).toContain(`tb-dc ingress: cil_from_netdev-tb-dc holds tc priority 1`);
    expect(worker.scripts.some((s) => s.includes("attach host"))).toBe(false);
  });

  it("probes latency and setup runs only; a run's capture is the worker's scope", async () => {
    const worker = new FakeWorker();
    worker.hooks["nic ingress"] = "filter protocol all pref 2 bpf chain 0 handle 0x1 cil_from_netdev-tb-dc direct-action not_in_hw id 7 tag 1 jited";
    const hops = await WorkerHops.install(worker, { dataPort: 31000, receiver: { address: "10.244.1.23" } });
    const sent = worker.scripts.length;
    expect(await hops.begin("throughput", "run-0", { maxSeconds: 30 })).toBeUndefined();
    expect(worker.scripts).toHaveLength(sent);
    const run = (await hops.begin("setup", "run-1", { maxSeconds: 30 }))!;
    expect(run).toMatchObject({ keying: "handshake", devices: { nic: "tb-dc", "pod-veth": "lxc12ab", pod: "eth0" } });
    expect(run.hooks.every((h) => isWorkerProbe(h.filters[0]!))).toBe(true);
    const capture = await hops.end(run, dir);
    expect(capture).toMatchObject({ scope: "worker", keying: "handshake", recordsFile: path.join(dir, "run-1.hops"), lost: 0 });
    expect(worker.fetched).toEqual(["/var/tmp/testbed-hops/runs/run-1.hops"]);
    expect(worker.scripts.at(-1)).toContain('rm -rf "$WORK/runs/run-1" "$WORK/runs/run-1.hops"');
  });

  it("fails a run whose probe was taken off during it, and still deletes its files", async () => {
    const worker = new FakeWorker();
    const hops = await WorkerHops.install(worker, { dataPort: 31000, receiver: { address: "10.244.1.23" } });
    const run = (await hops.begin("latency", "run-2", { maxSeconds: 30 }))!;
    worker.endOutput = "missing=host lxc12ab egress\n" + worker.endOutput;
    await expect(hops.end(run, dir)).rejects.toThrow("hop probes were taken off the worker during run run-2: host lxc12ab egress");
    expect(worker.scripts.at(-1)).toContain("rm -rf");
    expect(worker.fetched).toEqual([]);
  });
});
