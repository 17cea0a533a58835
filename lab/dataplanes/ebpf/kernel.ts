// The lab's eBPF Service dataplane: Cilium's kube-proxy replacement reduced to its tc NodePort path.
// Compiles lab/dataplanes/ebpf/service-lb.c for this kernel with worker 1's settings compiled in
// (node-config.ts: its address, its pod block, loadBalancer.mode), mounts a private bpffs for its
// pinned maps, attaches it with tc (clsact) to the worker's uplink, and fills the maps for a
// ServiceSet in one `bpftool batch` run. No iptables rule is involved.
//
// With loadBalancer.mode dsr and more workers, every other worker's uplink gets the backend side of
// DSR (lb_dsr_ingress, lb_dsr_egress), each worker with its own bpffs, so that its NAT map is its
// own as on a separate node.
//
// With a client pod (the clusterip path), the socket load balancer (sock-lb.c, sock-lb.ts) is
// attached to its cgroup, on worker 1's maps.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { machine, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Family } from "../../../scenario/cidr.js";
import type { ServiceSet, ServiceSpec } from "../../../workloads/service-model.js";
import { exec, run } from "../../netns.js";
import { decodeServiceEntry, DEFAULT_LB_MAP_MAX, LB_MAPS, planServiceMapsFor, type LbEndpoints, type ServiceEntry, type ServiceMapPlan } from "./service-maps.js";
import { bpftoolBatch, LbMapAgent, writerBatch, type MapOperation } from "./lb-agent.js";
import { podClusterCidr, type LabTopology } from "../../topology.js";
import { DEFAULT_LOAD_BALANCER_MODE, nodeConfigDefines, type LoadBalancerMode } from "./node-config.js";
import { attachToolCompileCommand, SOCK_LB_MAPS, SOCK_LB_SOURCE, SocketLoadBalancer } from "./sock-lb.js";

const SOURCE_DIR = fileURLToPath(new URL("./", import.meta.url));
const SOURCE = "service-lb.c";
const WRITER_SOURCE = "lb-map-writer.c";
/** Program sections of service-lb.c on the entry node's uplink (worker 1). */
const PROGRAMS = [
  { direction: "ingress", section: "tc/nodeport" },
  { direction: "egress", section: "tc/revnat" },
] as const;
/** Program sections on the uplink of every other worker, with loadBalancer.mode dsr. */
const DSR_BACKEND_PROGRAMS = [
  { direction: "ingress", section: "tc/dsr-ingress" },
  { direction: "egress", section: "tc/dsr-egress" },
] as const;

/** One program on one uplink: where tc attaches it and which bpffs holds its maps. */
export interface ProgramAttachment {
  readonly role: string;
  readonly uplink: string;
  readonly direction: "ingress" | "egress";
  readonly section: string;
  readonly bpffs: string;
}
/**
 * The filters' priority in each direction (tc's own default for a first filter). Worker 1's uplink
 * clsact may be shared: the hop probes (lab/hops/) stamp packets before this filter at ingress (pref
 * 1) and after it at egress (pref 65000), so only this dataplane's filters are removed on teardown,
 * and the qdisc only when no other filter is left on it. A packet this dataplane redirects from the
 * uplink's ingress back out of it (a remote backend's request, its reply after reverse SNAT) passes
 * the uplink's egress filters again: this dataplane's reverse NAT (no entry matches it) and then the
 * egress probe.
 */
export const EBPF_DATAPLANE_PREF = 49152;

export interface EbpfDataplaneOptions {
  readonly services: ServiceSet;
  /** Services besides the set, after it: the receivers of the paths beyond the paper's (lab-scenario.ts pathServiceEndpoints). */
  readonly pathReceivers?: readonly ServiceSpec[];
  /** A Service's backend where it is not the lab's pod (service-maps.ts LbEndpoints.backendOf). */
  readonly backendOf?: LbEndpoints["backendOf"];
  /** Size of the service, backend and reverse-NAT maps (Cilium's bpf.lbMapMax). Default 65536. */
  readonly lbMapMax?: number;
  /** Size of each conntrack map (and NAT map). Default 65536. */
  readonly ctMapMax?: number;
  /** Cilium's loadBalancer.mode for remote backends: snat (default, as Cilium's) or dsr. */
  readonly loadBalancerMode?: LoadBalancerMode;
}

export interface EbpfTimings {
  readonly compileMs: number;
  readonly attachMs: number;
  readonly fillMs: number;
}

/** Kernel object ids of the run's programs and maps: what must be gone after teardown. */
export interface BpfObjectIds {
  readonly programs: readonly number[];
  readonly maps: readonly number[];
}

/** Why this host cannot run the eBPF dataplane, or undefined. */
export function ebpfHostProblem(): string | undefined {
  const missing = ["clang", "bpftool", "tc"].filter((tool) => {
    try {
      return exec([tool, tool === "tc" ? "-V" : "--version"]).status !== 0;
    } catch {
      return true;
    }
  });
  if (missing.length > 0) return `the eBPF dataplane needs ${missing.join(", ")} (Debian: clang, bpftool, iproute2, libbpf-dev)`;
  if (!existsSync("/usr/include/bpf/bpf_helpers.h")) return "the eBPF dataplane needs the libbpf headers (Debian: libbpf-dev)";
  return undefined;
}

/** Pure: the clang command that builds the map writer (a host program linked with libbpf). */
export function writerCompileCommand(output: string): string[] {
  return ["clang", "-O2", "-Wall", "-o", output, join(SOURCE_DIR, WRITER_SOURCE), "-lbpf"];
}

/** What one batch of map writes took: its bpf(2) calls, and their time on CLOCK_MONOTONIC. */
export interface MapWriteTiming {
  readonly operations: number;
  readonly kernelNs: number;
}

/** Pure: lb-map-writer.c's answer to a batch, or an error naming the failed operation. */
export function parseWriterReply(reply: string, ops: readonly MapOperation[]): MapWriteTiming {
  const ok = /^ok (\d+) (\d+)$/.exec(reply);
  if (ok) return { operations: Number(ok[1]), kernelNs: Number(ok[2]) };
  const error = /^error (\d+) (\d+) (.*)$/.exec(reply);
  if (error) {
    const op = ops[Number(error[1]) - 1];
    throw new Error(`eBPF map write ${error[1]} of ${ops.length} (${op ? `${op.op} ${op.map} key ${op.key.toString("hex")}` : "?"}) failed: errno ${error[2]} ${error[3]}`);
  }
  throw new Error(`eBPF map writer: unexpected answer ${JSON.stringify(reply)}`);
}
/** Pure: the clang command that builds a BPF object of this folder (service-lb.c by default, or sock-lb.c); `node` holds the node's settings as -D flags (node-config.ts). */
export function compileCommand(output: string, lbMapMax: number, ctMapMax: number, node: readonly string[], source = SOURCE): string[] {
  // clang -target bpf does not search the multiarch directory that holds <asm/types.h>.
  const multiarch = `/usr/include/${machine()}-linux-gnu`;
  return [
    "clang", "-O2", "-g", "-target", "bpf", "-Wall",
    ...(existsSync(multiarch) ? ["-I", multiarch] : []),
    "-I", SOURCE_DIR,
    `-DLB_MAP_MAX=${lbMapMax}`, `-DCT_MAP_MAX=${ctMapMax}`, ...node,
    "-c", join(SOURCE_DIR, source), "-o", output,
  ];
}

export class EbpfDataplane {
  readonly kind = "ebpf";
  private tornDown = false;
  private attached = false;
  private detached = false;

  private constructor(
    private readonly topology: LabTopology,
    /** What the maps hold. */
    readonly plan: ServiceMapPlan,
    private readonly workDir: string,
    /** Private bpffs; tc pins the maps under tc/globals/. */
    readonly bpffs: string,
    private readonly times: { compileMs: number; attachMs: number; fillMs: number },
    /** Cilium's loadBalancer.mode compiled into the programs. */
    readonly loadBalancerMode: LoadBalancerMode,
  ) {}

  /** What the maps hold, as the agent that filled them sees it; later changes go through it. */
  agent = new LbMapAgent();
  /** The socket load balancer on the client pod's cgroup, when the lab has a client pod. */
  sockets: SocketLoadBalancer | undefined;
  private writer: { child: ChildProcess; replies: AsyncIterator<string> } | undefined;

  get timings(): EbpfTimings {
    return { ...this.times };
  }

  /**
   * Compiles, attaches and fills. The map contents are planned first, so bad input fails before
   * anything is created; if a later step fails, everything done so far is undone.
   */
  static setup(topology: LabTopology, options: EbpfDataplaneOptions): EbpfDataplane {
    const lbMapMax = options.lbMapMax ?? DEFAULT_LB_MAP_MAX;
    const ctMapMax = options.ctMapMax ?? 65536;
    if (!Number.isInteger(ctMapMax) || ctMapMax < 1) {
      throw new Error(`ctMapMax: ${ctMapMax} is not accepted; accepted: a positive integer`);
    }
    const plan = planServiceMapsFor(
      [
        { spec: options.services.receiver, where: "receiver" },
        ...options.services.scaled.map((spec, i) => ({ spec, where: `scaled[${i}]` })),
        ...(options.pathReceivers ?? []).map((spec, i) => ({ spec, where: `pathReceivers[${i}]` })),
      ],
      { node: topology.addresses.node, pod: topology.addresses.pod, ...(options.backendOf ? { backendOf: options.backendOf } : {}) },
      lbMapMax,
    );
    const mode = options.loadBalancerMode ?? DEFAULT_LOAD_BALANCER_MODE;
    const node = nodeConfigDefines({
      node: topology.addresses.node,
      podCidr: { ipv4: podClusterCidr(topology.plan, "ipv4"), ipv6: podClusterCidr(topology.plan, "ipv6") },
      mode,
    });
    const problem = ebpfHostProblem();
    if (problem) throw new Error(problem);

    const workDir = mkdtempSync(join(tmpdir(), `${topology.prefix}-ebpf-`));
    const dataplane = new EbpfDataplane(topology, plan, workDir, join(topology.runDir, "bpffs"), { compileMs: 0, attachMs: 0, fillMs: 0 }, mode);
    const pod = topology.plan.clientPod;
    if (pod) {
      dataplane.sockets = new SocketLoadBalancer(pod.cgroup, join(workDir, "sock-lb.o"), join(workDir, "sock-lb-attach"), join(dataplane.bpffs, "tc", "globals"), join(dataplane.bpffs, "sock"));
    }
    topology.onTeardown(() => dataplane.teardown());
    try {
      dataplane.times.compileMs = timed(() => {
        run(compileCommand(dataplane.object, lbMapMax, ctMapMax, node));
        run(writerCompileCommand(dataplane.writerBinary));
        if (pod) {
          run(compileCommand(join(workDir, "sock-lb.o"), lbMapMax, ctMapMax, node, SOCK_LB_SOURCE));
          run(attachToolCompileCommand(join(workDir, "sock-lb-attach")));
        }
      });
      dataplane.times.attachMs = timed(() => dataplane.attach());
      dataplane.times.fillMs = timed(() => dataplane.fill());
    } catch (error) {
      try {
        dataplane.teardown();
      } catch (cleanup) {
        (error as Error).message += `\nwhile undoing: ${(cleanup as Error).message}`;
      }
      throw error;
    }
    return dataplane;
  }

  private get object(): string {
    return join(this.workDir, "service-lb.o");
  }

  private get writerBinary(): string {
    return join(this.workDir, "lb-map-writer");
  }

  /**
   * Writes the operations through the map writer (started on first use, kept running like the
   * agent), one bpf(2) call each, in order. Throws naming the operation the kernel refused.
   */
  async write(ops: readonly MapOperation[]): Promise<MapWriteTiming> {
    if (this.tornDown) throw new Error("eBPF dataplane: write() after teardown(); set it up again");
    if (!this.writer) {
      const child = spawn(this.writerBinary, [], { stdio: ["pipe", "pipe", "inherit"] });
      this.writer = { child, replies: createInterface({ input: child.stdout! })[Symbol.asyncIterator]() };
    }
    const { child, replies } = this.writer;
    child.stdin!.write(writerBatch(ops, (name) => this.mapPath(name)));
    const next = await replies.next();
    if (next.done) throw new Error(`eBPF map writer exited (${child.exitCode ?? child.signalCode}) before answering`);
    return parseWriterReply(next.value, ops);
  }

  private stopWriter(): void {
    const writer = this.writer;
    this.writer = undefined;
    if (!writer) return;
    writer.child.stdin!.end();
    if (writer.child.exitCode === null) writer.child.kill("SIGTERM");
  }

  private get uplink(): string {
    return this.topology.plan.worker.uplink;
  }

  /** Every program and where it goes: worker 1's load balancer, and with DSR every other worker's backend side. */
  get attachments(): ProgramAttachment[] {
    const entry = PROGRAMS.map((p) => ({ role: "worker", uplink: this.uplink, bpffs: this.bpffs, ...p }));
    if (this.loadBalancerMode !== "dsr") return entry;
    const others = (this.topology.plan.workers ?? []).filter((w) => w.index !== 1);
    return [...entry, ...others.flatMap((w) => DSR_BACKEND_PROGRAMS.map((p) => ({ role: w.role, uplink: w.uplink, bpffs: join(this.topology.runDir, `bpffs-${w.role}`), ...p })))];
  }

  /** The private bpffs mounts: one per worker the programs are on. */
  private get mounts(): string[] {
    return [...new Set(this.attachments.map((a) => a.bpffs))];
  }

  /** The uplinks the programs are on, each once. */
  private get uplinks(): { role: string; uplink: string }[] {
    const seen = new Map(this.attachments.map((a) => [`${a.role}|${a.uplink}`, { role: a.role, uplink: a.uplink }]));
    return [...seen.values()];
  }

  /** Pinned path of one of the load balancer's maps (worker 1's; another worker's with its bpffs). */
  mapPath(name: string, bpffs = this.bpffs): string {
    return join(bpffs, "tc", "globals", name);
  }

  private attach(): void {
    for (const mount of this.mounts) {
      mkdirSync(mount, { recursive: true });
      run(["mount", "-t", "bpf", "bpf", mount]);
      this.mountedAt.push(mount);
    }
    this.attached = true;
    this.attachPrograms();
  }

  /** Bpffs mounts made so far (teardown unmounts them). */
  private readonly mountedAt: string[] = [];

  /** Loads the programs onto the uplinks from the compiled object (the maps are the ones pinned under each worker's bpffs), then the socket hooks. */
  private attachPrograms(): void {
    // replace: creates the clsact qdisc, or keeps the one the hop probes attached to. The probes remove
    // it when they detach from an uplink without filters, as they find it while this dataplane is parked.
    for (const u of this.uplinks) this.topology.run(u.role, ["tc", "qdisc", "replace", "dev", u.uplink, "clsact"]);
    for (const a of this.attachments) {
      // tc's loader pins maps by name below TC_BPF_MNT, and reuses what is pinned there: a worker's
      // programs share one set of maps, and programs attached again find the maps as they were filled.
      this.topology.run(
        a.role,
        ["tc", "filter", "add", "dev", a.uplink, a.direction, "pref", String(EBPF_DATAPLANE_PREF), "bpf", "da", "obj", this.object, "sec", a.section],
        { env: { TC_BPF_MNT: a.bpffs } },
      );
    }
    // After tc: its loader creates the shared maps the socket program reuses.
    this.sockets?.attach();
    this.detached = false;
  }

  /**
   * Takes the load balancer off the packet path and keeps it: the programs are detached, the filled
   * maps and the compiled object stay for resume(). Cheaper than a new setup (compile, fill) at
   * thousands of Services.
   */
  detach(): void {
    if (this.tornDown || this.detached) return;
    this.sockets?.detach();
    for (const a of this.attachments) this.topology.run(a.role, ["tc", "filter", "del", "dev", a.uplink, a.direction, "pref", String(EBPF_DATAPLANE_PREF)]);
    this.detached = true;
  }

  /** Attaches the programs again after detach(), on the same maps. */
  resume(): void {
    if (this.tornDown) throw new Error("eBPF dataplane: resume() after teardown(); set it up again");
    if (this.detached) this.attachPrograms();
  }

  private fill(): void {
    const batch = join(this.workDir, "maps.batch");
    writeFileSync(batch, bpftoolBatch(this.agent.upsert(this.plan, this.plan.families), (name) => this.mapPath(name)));
    run(["bpftool", "batch", "file", batch], { timeoutMs: 600_000 });
  }

  /** Entries now in the service maps, per family, as bpftool reads them from the kernel. */
  serviceMapEntries(): Record<Family, number> {
    const count = (family: Family) =>
      (JSON.parse(run(["bpftool", "-j", "map", "dump", "pinned", this.mapPath(LB_MAPS.services[family])])) as unknown[]).length;
    return { ipv4: count("ipv4"), ipv6: count("ipv6") };
  }

  /** The service map's entries of one family, decoded, as the kernel holds them. */
  serviceEntries(family: Family): ServiceEntry[] {
    const dump = JSON.parse(run(["bpftool", "-j", "map", "dump", "pinned", this.mapPath(LB_MAPS.services[family])], { timeoutMs: 120_000 })) as {
      key: string[];
      value: string[];
    }[];
    return dump.map((e) => decodeServiceEntry(family, e.key.map((b) => Number.parseInt(b, 16)), e.value.map((b) => Number.parseInt(b, 16))));
  }

  /** Ids of the attached programs and of the pinned maps (every worker's). */
  objectIds(): BpfObjectIds {
    const programs: number[] = [];
    for (const a of this.attachments) {
      const filters = JSON.parse(
        this.topology.run(a.role, ["tc", "-j", "filter", "show", "dev", a.uplink, a.direction, "pref", String(EBPF_DATAPLANE_PREF)]),
      ) as {
        options?: { prog?: { id: number } };
      }[];
      for (const f of filters) if (f.options?.prog) programs.push(f.options.prog.id);
    }
    for (const hook of this.sockets?.attached() ?? []) programs.push(hook.id);
    const maps = this.mounts.flatMap((bpffs) =>
      Object.values(LB_MAPS).flatMap((byFamily) =>
        Object.values(byFamily).map((name) => (JSON.parse(run(["bpftool", "-j", "map", "show", "pinned", this.mapPath(name, bpffs)])) as { id: number }).id),
      ),
    );
    // The socket load balancer's own maps, beside worker 1's.
    for (const byFamily of this.sockets ? Object.values(SOCK_LB_MAPS) : []) {
      for (const name of Object.values(byFamily)) maps.push((JSON.parse(run(["bpftool", "-j", "map", "show", "pinned", this.mapPath(name)])) as { id: number }).id);
    }
    return { programs, maps };
  }

  /** Removes the filters and the clsact qdisc, the pinned maps, the bpffs mount and the build directory. Safe to call twice. */
  teardown(): void {
    if (this.tornDown) return;
    this.tornDown = true;
    this.stopWriter();
    const failures: string[] = [];
    // The hooks' pins go with the bpffs below too; removing them first detaches the hooks while the maps are still there.
    try {
      this.sockets?.detach();
    } catch (error) {
      failures.push(`socket load balancer: ${(error as Error).message}`);
    }
    if (this.attached) {
      const gone = /Cannot find device|No such file|Cannot open network namespace|Cannot find specified filter chain|Parent Qdisc doesn't exist/i;
      // Detached programs have no filter left to delete.
      for (const a of this.detached ? [] : this.attachments) {
        const result = this.topology.exec(a.role, ["tc", "filter", "del", "dev", a.uplink, a.direction, "pref", String(EBPF_DATAPLANE_PREF)]);
        if (result.status !== 0 && !gone.test(result.stderr)) failures.push(`tc filter del dev ${a.uplink} ${a.direction}: ${result.stderr.trim()}`);
      }
      for (const u of this.uplinks) {
        const others = ["ingress", "egress"].some((d) => this.topology.exec(u.role, ["tc", "filter", "show", "dev", u.uplink, d]).stdout.trim() !== "");
        // The hop probes may have removed the qdisc already, while this dataplane was parked.
        const qdisc = /\bqdisc clsact\b/.test(this.topology.exec(u.role, ["tc", "qdisc", "show", "dev", u.uplink]).stdout);
        if (!others && qdisc) {
          const result = this.topology.exec(u.role, ["tc", "qdisc", "del", "dev", u.uplink, "clsact"]);
          if (result.status !== 0 && !gone.test(result.stderr)) failures.push(`tc qdisc del dev ${u.uplink} clsact: ${result.stderr.trim()}`);
        }
      }
    }
    for (const mount of this.mounts) {
      if (this.mountedAt.includes(mount)) {
        rmSync(join(mount, "tc"), { recursive: true, force: true });
        const result = exec(["umount", mount]);
        if (result.status !== 0) {
          failures.push(`umount ${mount}: ${result.stderr.trim()}`);
          continue;
        }
      }
      rmSync(mount, { recursive: true, force: true });
    }
    rmSync(this.workDir, { recursive: true, force: true });
    if (failures.length > 0) throw new Error(`eBPF dataplane teardown: ${failures.join("; ")}`);
  }
}

function timed(fn: () => unknown): number {
  const start = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

export function setupEbpfDataplane(topology: LabTopology, options: EbpfDataplaneOptions): EbpfDataplane {
  return EbpfDataplane.setup(topology, options);
}
