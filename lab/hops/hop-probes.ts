// The hop probes in the lab: hops/hop-probe.c compiled for the receiver pod's data ports, loaded once
// with bpftool (every program and map pinned in a private bpffs of the run), each program attached by
// tc to its point of the topology, and hops/hop-reader.c draining their records for the length of a
// run. The records leave through a ring buffer where the kernel has one (5.8+), else through a perf
// event array (hops/build.ts).
//
// One set of probes per Service path (scenario/paths.ts): compiled for that path's data port, with its
// own maps and reader, attached where that path's packets pass (hopAttachments). The paper's path
// (nodeport-local) has the twelve programs it always had. The paths share hooks (worker 1's uplink,
// the router, the client's veth) at the same priorities: the backend attaches one path's probes at a
// time, those of the run's path.
//
// Points and priorities. Ingress probes run first on their hook (pref 1), egress probes last (pref
// 65000): on the worker's uplink, which the eBPF dataplane shares (lab/dataplanes/ebpf, pref 49152),
// the forward stamp is taken before the dataplane's DNAT and the return stamp after its reverse NAT.
// Netfilter (the kube-proxy dataplanes) runs between tc ingress and tc egress, so the same two stamps
// enclose it too; on the paths to worker 2 the uplink's two probes stamp both directions (forward:
// in before the DNAT, out after the DNAT and SNAT; return: in before the reverse translation, out
// after it), still first at ingress and last at egress.
//
// Probes are attached for latency and setup runs and detached for throughput runs (enable/disable):
// detached, they cost nothing; a clsact qdisc left empty is removed as well.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { machine, release, tmpdir } from "node:os";
import { join } from "node:path";
import {
  CONNECT_HOOKS,
  CONNECT_MAP,
  connectCompileArgs,
  HOPS_SOURCE_DIR,
  hopMapNames,
  outputForKernel,
  probeCompileArgs,
  readerArgs,
  readerCompileArgs,
  connectOrderProblem,
  type ConnectHook,
  type ShownHook,
  type HopOutput,
  type ProbeBuild,
} from "../../hops/build.js";
import { HOP_KEYING, HOP_POINTS, parseReaderSummary, pathHops, type HopCapture, type HopKeying } from "../../measure/hops.js";
import type { RunProfile } from "../../measure/types.js";
import { exec, run } from "../netns.js";
import type { LabTopology, Role, TopologyPlan } from "../topology.js";
import { DEFAULT_PATH, PATHS, type ServicePath } from "../../scenario/paths.js";

/** tc priorities of the probes: ingress before any other filter, egress after. */
export const HOP_PREF = { ingress: 1, egress: 65000 } as const;
/** Only a guard against a reader that hangs: far above its start-up on a loaded 2-core host. */
const READER_START_TIMEOUT_MS = 120_000;
const READER_STOP_TIMEOUT_MS = 30_000;

export interface HopAttachment {
  /** Numbers of the points its program stamps (hop-maps.h enum hop_point): one, or a forward and a return point on a hook a path crosses both ways. */
  readonly points: readonly number[];
  readonly names: readonly (typeof HOP_POINTS)[number][];
  /** Function name of its program in hops/hop-probe.c (the pin's name). */
  readonly program: string;
  /** A namespace of the plan (TopologyPlan.allNamespaces). */
  readonly role: Role | (string & {});
  readonly ifname: string;
  readonly direction: "ingress" | "egress";
}

/** The other end of the veth pair one end of which is `ifname` (a segment of the plan). */
function peerOf(plan: Pick<TopologyPlan, "segments">, ifname: string): string {
  const segment = plan.segments.find((s) => s.members.length === 2 && !s.bridge && s.members.some((m) => m.ifname === ifname));
  const peer = segment?.members.find((m) => m.ifname !== ifname);
  if (!peer) throw new Error(`hop probes: no veth pair with ${ifname} in the lab's plan`);
  return peer.ifname;
}

type Place = readonly [role: string, ifname: string, direction: "ingress" | "egress", program: string, points: readonly number[]];

/** Pure: where each of a path's points sits in a topology, in the path's order (a program on a hook crossed both ways, once). */
export function hopAttachments(plan: Pick<TopologyPlan, "links" | "worker" | "workers" | "clientPod" | "segments">, path: ServicePath = DEFAULT_PATH): HopAttachment[] {
  const { access, datacenter, pod } = plan.links;
  const client: Place[] = [
    ["client", access.host.ifname, "egress", "hf_client_out", [0]],
    ["router", access.gateway.ifname, "ingress", "hf_router_in", [1]],
    ["router", datacenter.gateway.ifname, "egress", "hf_router_out", [2]],
  ];
  const clientBack: Place[] = [
    ["router", datacenter.gateway.ifname, "ingress", "hr_router_in", [9]],
    ["router", access.gateway.ifname, "egress", "hr_router_out", [10]],
    ["client", access.host.ifname, "ingress", "hr_client_in", [11]],
  ];
  const places = (): Place[] => {
    if (path === DEFAULT_PATH) {
      return [
        ...client,
        ["worker", plan.worker.uplink, "ingress", "hf_uplink_in", [3]],
        ["worker", plan.worker.podVeth, "egress", "hf_pod_veth", [4]],
        ["pod", pod.host.ifname, "ingress", "hf_pod_in", [5]],
        ["pod", pod.host.ifname, "egress", "hr_pod_out", [6]],
        ["worker", plan.worker.podVeth, "ingress", "hr_pod_veth", [7]],
        ["worker", plan.worker.uplink, "egress", "hr_uplink_out", [8]],
        ...clientBack,
      ];
    }
    const remote = plan.workers?.find((w) => w.index === PATHS[path].endpointWorker);
    if (!remote) throw new Error(`hop probes for ${path}: the lab has no worker ${PATHS[path].endpointWorker}; accepted: a topology built with the path's workers`);
    const podIfname = peerOf(plan, remote.podVeth);
    const endpoint: Place[] = [
      [remote.role, remote.uplink, "ingress", "hf_node2_in", [13]],
      [remote.role, remote.podVeth, "egress", "hf_pod2_veth", [14]],
      [remote.podRole, podIfname, "ingress", "hf_pod2_in", [15]],
      [remote.podRole, podIfname, "egress", "hr_pod2_out", [16]],
      [remote.role, remote.podVeth, "ingress", "hr_pod2_veth", [17]],
      [remote.role, remote.uplink, "egress", "hr_node2_out", [18]],
    ];
    const uplinkIn: Place = ["worker", plan.worker.uplink, "ingress", "hb_uplink_in", [3, 19]];
    const uplinkOut: Place = ["worker", plan.worker.uplink, "egress", "hb_uplink_out", [12, 8]];
    if (path === "nodeport-remote") return [...client, uplinkIn, uplinkOut, ...endpoint, ...clientBack];
    const clientPod = plan.clientPod;
    if (!clientPod) throw new Error(`hop probes for ${path}: the lab has no client pod; accepted: a topology built with one (TopologyOptions.clientPod)`);
    const podSide = peerOf(plan, clientPod.hostVeth);
    return [
      [clientPod.role, podSide, "egress", "hf_cpod_out", [20]],
      ["worker", clientPod.hostVeth, "ingress", "hf_cpod_veth", [21]],
      uplinkOut,
      ...endpoint,
      uplinkIn,
      ["worker", clientPod.hostVeth, "egress", "hr_cpod_veth", [22]],
      [clientPod.role, podSide, "ingress", "hr_cpod_in", [23]],
    ];
  };
  return places().map(([role, ifname, direction, program, points]) => ({ points, names: points.map((p) => HOP_POINTS[p]!), program, role, ifname, direction }));
}

function multiarchInclude(): string | undefined {
  // clang -target bpf does not search the multiarch directory that holds <asm/types.h>.
  const multiarch = `/usr/include/${machine()}-linux-gnu`;
  return existsSync(multiarch) ? multiarch : undefined;
}

/**
 * Pure: the priorities of the filters on each hook, from `tc -j -batch` of `filter show dev X
 * DIRECTION` lines (one JSON array per line, in the batch's order; a hook without a qdisc shows []).
 */
export function shownPrefs(output: string, hooks: number): number[][] {
  const lines = output.split("\n").filter((l) => l.trim() !== "");
  if (lines.length !== hooks) throw new Error(`tc showed ${lines.length} filter lists for ${hooks} hooks: ${JSON.stringify(output.slice(0, 300))}`);
  return lines.map((line) => [...new Set((JSON.parse(line) as { pref?: number }[]).flatMap((f) => (typeof f.pref === "number" ? [f.pref] : [])))]);
}

/** Pure: the clang command that builds the probes for the receiver's data ports (BTF maps, loaded by bpftool). */
export function probeCompileCommand(output: string, ports: Pick<ProbeBuild, "dataPort" | "alternateDataPort">, recordsOutput: HopOutput = outputForKernel(release())): string[] {
  const include = multiarchInclude();
  return ["clang", ...probeCompileArgs({ output: recordsOutput, maps: "btf", ...ports }, { sourceDir: HOPS_SOURCE_DIR, output, ...(include ? { multiarchInclude: include } : {}) })];
}

/** Pure: the clang command that builds the connect call's hooks (hops/hop-connect.c) for the path's data ports. */
export function connectCompileCommand(output: string, ports: Pick<ProbeBuild, "dataPort" | "alternateDataPort">): string[] {
  const include = multiarchInclude();
  return ["clang", ...connectCompileArgs(ports, { sourceDir: HOPS_SOURCE_DIR, output, ...(include ? { multiarchInclude: include } : {}) })];
}

/** Pure: the clang command that builds the reader (a host program on the C library alone). */
export function readerCompileCommand(output: string): string[] {
  return ["clang", ...readerCompileArgs({ sourceDir: HOPS_SOURCE_DIR, output })];
}

/** Why this host cannot run the hop probes, or undefined (beyond the eBPF dataplane's tools: libc headers for the reader). */
export function hopProbeHostProblem(): string | undefined {
  if (!existsSync("/usr/include/stdio.h")) return "the hop probes' reader needs the C library headers (Debian: libc6-dev)";
  return undefined;
}

/** One run's reader: started before the run's traffic, stopped after it. */
export class HopReader {
  private output = "";
  private errors = "";
  private readonly exited: Promise<number | null>;

  constructor(
    private readonly child: ChildProcess,
    readonly recordsFile: string,
    /** The path of the run it records. */
    readonly path: ServicePath = DEFAULT_PATH,
  ) {
    child.stdout!.on("data", (d: Buffer) => (this.output += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (this.errors = (this.errors + d.toString()).slice(-2000)));
    this.exited = new Promise((resolve) => {
      child.once("error", (e) => {
        this.errors += e.message;
        resolve(null);
      });
      child.once("exit", (code) => resolve(code));
    });
  }

  /** Resolves once the reader has emptied the ring of earlier stamps and is reading. */
  async ready(): Promise<void> {
    const deadline = Date.now() + READER_START_TIMEOUT_MS;
    let done = false;
    void this.exited.then(() => (done = true));
    while (!this.output.includes("ready\n")) {
      if (done) throw new Error(`hop reader exited at start: ${this.errors.trim() || "no output"}`);
      if (Date.now() > deadline) {
        this.child.kill("SIGKILL");
        throw new Error(`hop reader not ready after ${READER_START_TIMEOUT_MS} ms`);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Stops the reader and returns the run's capture (its file, the kernel's counts, the clock offset). */
  async stop(keying: HopKeying): Promise<HopCapture> {
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), READER_STOP_TIMEOUT_MS);
    const code = await this.exited;
    clearTimeout(timer);
    const summary = this.output.split("\n").find((l) => l.startsWith("{"));
    if (code !== 0 || summary === undefined) {
      throw new Error(`hop reader ended with ${code}${this.errors.trim() ? `: ${this.errors.trim()}` : ""}; printed ${JSON.stringify(this.output.slice(-300))}`);
    }
    return { recordsFile: this.recordsFile, keying, ...(this.path !== DEFAULT_PATH ? { path: this.path } : {}), ...parseReaderSummary(summary) };
  }

  /** Ends the reader without a capture (the run failed). */
  abandon(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }
}

/** The probes of one path of a lab: loaded once, attached while enabled, removed on teardown. */
export class HopProbes {
  private attachedNow = false;
  private connectAttached = false;
  private mounted = false;
  private tornDown = false;
  private readonly plan: readonly HopAttachment[];

  private constructor(
    private readonly topology: LabTopology,
    private readonly workDir: string,
    /** Private bpffs: progs/ and maps/ hold the pins. */
    readonly bpffs: string,
    /** Where the records leave the kernel: the ring buffer, or the perf event array. */
    readonly output: HopOutput,
    /** The path whose packets they stamp. */
    readonly path: ServicePath,
  ) {
    this.plan = hopAttachments(topology.plan, path);
  }

  /**
   * Compiles probes and reader and loads the probes (not yet attached). Undoes everything on failure.
   * `output`: the ring buffer where the kernel has one, else the perf event array (a test forces either).
   * `dataPort`: the path's (pathDataPort), `alternateDataPort` that of the receiver pod's second
   * ITGRecv, whose flows are stamped as well; `path`: default the paper's.
   */
  static load(topology: LabTopology, options: { dataPort: number; alternateDataPort?: number; output?: HopOutput; path?: ServicePath }): HopProbes {
    const problem = hopProbeHostProblem();
    if (problem) throw new Error(problem);
    const output = options.output ?? outputForKernel(release());
    const path = options.path ?? DEFAULT_PATH;
    // One bpffs per output path and Service path: a test loads the perf probes beside the ring buffer's.
    const bpffs = join(topology.runDir, `hops-bpffs-${output}${path === DEFAULT_PATH ? "" : `-${path}`}`);
    const probes = new HopProbes(topology, mkdtempSync(join(tmpdir(), `${topology.prefix}-hops-`)), bpffs, output, path);
    topology.onTeardown(() => probes.teardown());
    try {
      run(probeCompileCommand(probes.object, { dataPort: options.dataPort, ...(options.alternateDataPort !== undefined ? { alternateDataPort: options.alternateDataPort } : {}) }, output));
      run(readerCompileCommand(probes.reader));
      mkdirSync(probes.bpffs, { recursive: true });
      run(["mount", "-t", "bpf", "bpf", probes.bpffs]);
      probes.mounted = true;
      run(["bpftool", "prog", "loadall", probes.object, join(probes.bpffs, "progs"), "type", "tc", "pinmaps", join(probes.bpffs, "maps")]);
      if (probes.connectCgroups) {
        run(connectCompileCommand(probes.connectObject, { dataPort: options.dataPort, ...(options.alternateDataPort !== undefined ? { alternateDataPort: options.alternateDataPort } : {}) }));
        // The attach types come from the sections' names; hop_connects is the probes' own pin.
        run(["bpftool", "prog", "loadall", probes.connectObject, join(probes.bpffs, "connect"), "map", "name", CONNECT_MAP, "pinned", probes.mapPath(CONNECT_MAP)]);
      }
    } catch (error) {
      try {
        probes.teardown();
      } catch (cleanup) {
        (error as Error).message += `\nwhile undoing: ${(cleanup as Error).message}`;
      }
      throw error;
    }
    return probes;
  }

  private get object(): string {
    return join(this.workDir, "hop-probe.o");
  }

  private get connectObject(): string {
    return join(this.workDir, "hop-connect.o");
  }

  /**
   * Where the connect call's hooks go, on a path whose handshakes are timed from it (clusterip):
   * the call's stamp on the client container's cgroup, the done stamp on the pod's, where the eBPF
   * model's socket load balancer sits (attached after it), or undefined.
   */
  get connectCgroups(): { call: string; done: string } | undefined {
    const pod = this.topology.plan.clientPod;
    if (!pathHops(this.path).handshakeLead || !pod) return undefined;
    return { call: pod.containerCgroup, done: pod.cgroup };
  }

  private get reader(): string {
    return join(this.workDir, "hop-reader");
  }

  mapPath(name: "hop_ring" | "hop_events" | "hop_counts" | typeof CONNECT_MAP): string {
    return join(this.bpffs, "maps", name);
  }

  get attached(): boolean {
    return this.attachedNow;
  }

  /**
   * Attaches every probe (one `tc -batch` per namespace), and the connect call's hooks where the
   * path has them, after whatever the Service dataplane attached; on failure none stays attached.
   * A dataplane that attaches its socket hooks again must find the probes disabled (prepare()).
   */
  enable(): void {
    if (this.attachedNow) return;
    this.attachedNow = true;
    try {
      for (const role of this.roles()) {
        this.tcBatch(role, "attach", [
          ...this.devices(role).map((ifname) => `qdisc replace dev ${ifname} clsact`),
          ...this.plan.filter((a) => a.role === role).map((a) => `filter add dev ${a.ifname} ${a.direction} pref ${HOP_PREF[a.direction]} bpf da object-pinned ${join(this.bpffs, "progs", a.program)}`),
        ]);
      }
      this.attachConnectHooks();
    } catch (error) {
      this.disable();
      throw error;
    }
  }

  private attachConnectHooks(): void {
    const cgroups = this.connectCgroups;
    if (!cgroups) return;
    this.connectAttached = true;
    for (const [name, hook] of Object.entries(CONNECT_HOOKS)) {
      run(["bpftool", "cgroup", "attach", cgroups[hook.point], hook.attachType, "pinned", join(this.bpffs, "connect", name), "multi"]);
    }
    const problem = connectOrderProblem(this.connectHooksShown(cgroups.call, true));
    if (problem) throw new Error(`hop probes on ${cgroups.call}: ${problem}`);
  }

  /** The connect hooks a cgroup has (its own, or every one its sockets run: effective), in run order. */
  private connectHooksShown(cgroup: string, effective = false): ShownHook[] {
    if (!existsSync(cgroup)) return [];
    const shown = run(["bpftool", "-j", "cgroup", "show", cgroup, ...(effective ? ["effective"] : [])]).trim();
    return (JSON.parse(shown || "[]") as ShownHook[]).filter((h) => /^cgroup_inet[46]_connect$/.test(h.attach_type));
  }

  private detachConnectHooks(): void {
    const cgroups = this.connectCgroups;
    if (!cgroups || !this.connectAttached) return;
    this.connectAttached = false;
    for (const [name, hook] of Object.entries(CONNECT_HOOKS)) {
      // A hook a failed enable never attached: the listing below tells.
      exec(["bpftool", "cgroup", "detach", cgroups[hook.point], hook.attachType, "pinned", join(this.bpffs, "connect", name)]);
    }
    const left = [cgroups.call, cgroups.done].flatMap((cg) => this.connectHooksShown(cg).filter((h) => h.name in CONNECT_HOOKS).map((h) => `${h.name} on ${cg}`));
    if (left.length > 0) throw new Error(`hop probes' connect hooks still attached after removal: ${left.join(", ")}`);
  }

  /**
   * Detaches every probe, and every clsact qdisc left without a filter; throws if a probe stays
   * attached. Per namespace: one `tc -batch` removes the probes and reads every hook back, one
   * removes the qdiscs left empty.
   */
  disable(): void {
    if (!this.attachedNow) return;
    this.attachedNow = false;
    this.detachConnectHooks();
    const left: HopAttachment[] = [];
    for (const role of this.roles()) {
      const devices = this.devices(role);
      const hooks = devices.flatMap((ifname) => (["ingress", "egress"] as const).map((direction) => ({ ifname, direction })));
      // -force: a probe that was never attached (a failed enable) does not stop the others' removal,
      // nor the read-back after them (only the `filter show` lines print, one JSON list each).
      const output = this.tcBatch(
        role,
        "detach",
        [
          ...this.plan.filter((a) => a.role === role).map((a) => `filter del dev ${a.ifname} ${a.direction} pref ${HOP_PREF[a.direction]}`),
          ...hooks.map((h) => `filter show dev ${h.ifname} ${h.direction}`),
        ],
        { force: true, json: true },
      );
      const shown = shownPrefs(output, hooks.length);
      const prefs = (ifname: string, direction: "ingress" | "egress") => shown[hooks.findIndex((h) => h.ifname === ifname && h.direction === direction)]!;
      left.push(...this.plan.filter((a) => a.role === role && prefs(a.ifname, a.direction).includes(HOP_PREF[a.direction])));
      const empty = devices.filter((ifname) => prefs(ifname, "ingress").length === 0 && prefs(ifname, "egress").length === 0);
      if (empty.length > 0) this.tcBatch(role, "qdiscs", empty.map((ifname) => `qdisc del dev ${ifname} clsact`));
    }
    if (left.length > 0) throw new Error(`hop probes still attached after removal: ${left.map((a) => `${a.ifname} ${a.direction}`).join(", ")}`);
  }

  /** The namespaces the probes sit in. */
  private roles(): string[] {
    return [...new Set(this.plan.map((a) => a.role))];
  }

  /** The devices the probes sit on in one namespace. */
  private devices(role: string): string[] {
    return [...new Set(this.plan.filter((a) => a.role === role).map((a) => a.ifname))];
  }

  /**
   * Runs one `tc -batch` in a namespace (`tc -n`, which enters only its network namespace: cheaper
   * than `ip netns exec`, and tc needs no more); returns what it printed. With `force`, a failing line
   * does not stop the rest, nor throw.
   */
  private tcBatch(role: string, name: string, lines: readonly string[], options: { force?: boolean; json?: boolean } = {}): string {
    const file = join(this.workDir, `${role}.${name}.tc`);
    writeFileSync(file, `${lines.join("\n")}\n`);
    const argv = ["tc", "-n", this.topology.namespace(role), ...(options.json ? ["-j"] : []), ...(options.force ? ["-force"] : []), "-batch", file];
    return options.force ? exec(argv).stdout : run(argv);
  }

  /**
   * Before a run: attaches the probes and starts a reader for a latency or setup run, detaches them
   * for a throughput run (undefined: nothing to stop after it).
   */
  async beginRun(profile: RunProfile, recordsFile: string): Promise<{ reader: HopReader; keying: HopKeying } | undefined> {
    const keying = HOP_KEYING[profile];
    if (keying === undefined) {
      this.disable();
      return undefined;
    }
    this.enable();
    return { reader: await this.startReader(recordsFile), keying };
  }

  /** Starts a reader for one run; its records go to `recordsFile`. */
  async startReader(recordsFile: string): Promise<HopReader> {
    const child = spawn(this.reader, readerArgs(this.output, { pins: join(this.bpffs, "maps"), recordsFile }), { stdio: ["ignore", "pipe", "pipe"] });
    const reader = new HopReader(child, recordsFile, this.path);
    await reader.ready();
    return reader;
  }

  /** Ids of the loaded programs and maps: what must be gone after teardown. */
  objectIds(): { programs: number[]; maps: number[] } {
    const idOf = (kind: "prog" | "map", path: string) => (JSON.parse(run(["bpftool", "-j", kind, "show", "pinned", path])) as { id: number }).id;
    const connect = this.connectCgroups ? (Object.keys(CONNECT_HOOKS) as ConnectHook[]) : [];
    return {
      programs: [...this.plan.map((a) => idOf("prog", join(this.bpffs, "progs", a.program))), ...connect.map((h) => idOf("prog", join(this.bpffs, "connect", h)))],
      maps: [...Object.values(hopMapNames(this.output)), CONNECT_MAP].map((m) => idOf("map", this.mapPath(m))),
    };
  }

  /** Detaches, unpins, unmounts and removes the build directory. Safe to call twice. */
  teardown(): void {
    if (this.tornDown) return;
    this.tornDown = true;
    const failures: string[] = [];
    try {
      this.disable();
    } catch (error) {
      if (!/Cannot find device|Cannot open network namespace|No such file/i.test((error as Error).message)) failures.push((error as Error).message);
    }
    let unmounted = true;
    if (this.mounted) {
      rmSync(join(this.bpffs, "progs"), { recursive: true, force: true });
      rmSync(join(this.bpffs, "connect"), { recursive: true, force: true });
      rmSync(join(this.bpffs, "maps"), { recursive: true, force: true });
      const result = exec(["umount", this.bpffs]);
      unmounted = result.status === 0;
      if (!unmounted) failures.push(`umount ${this.bpffs}: ${result.stderr.trim()}`);
    }
    if (unmounted) rmSync(this.bpffs, { recursive: true, force: true });
    rmSync(this.workDir, { recursive: true, force: true });
    if (failures.length > 0) throw new Error(`hop probes teardown: ${failures.join("; ")}`);
  }
}
