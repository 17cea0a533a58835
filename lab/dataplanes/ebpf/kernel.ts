// The lab's eBPF Service dataplane: Cilium's kube-proxy replacement reduced to its tc NodePort path.
// Compiles lab/dataplanes/ebpf/service-lb.c for this kernel, mounts a private bpffs for its pinned maps,
// attaches it with tc (clsact) to the worker's uplink, and fills the maps for a ServiceSet in one
// `bpftool batch` run. No iptables rule is involved. With a client pod (the clusterip path), the
// socket load balancer (sock-lb.c, sock-lb.ts) is attached to its cgroup, on the same maps.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { machine, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Family } from "../../../scenario/cidr.js";
import type { ServiceSet, ServiceSpec } from "../../../workloads/service-model.js";
import { exec, run } from "../../netns.js";
import { decodeServiceEntry, DEFAULT_LB_MAP_MAX, LB_MAPS, planServiceMaps, type LbEndpoints, type ServiceEntry, type ServiceMapPlan } from "./service-maps.js";
import { bpftoolBatch, LbMapAgent, writerBatch, type MapOperation } from "./lb-agent.js";
import type { LabTopology } from "../../topology.js";
import { attachToolCompileCommand, SOCK_LB_MAPS, SOCK_LB_SOURCE, SocketLoadBalancer } from "./sock-lb.js";

const SOURCE_DIR = fileURLToPath(new URL("./", import.meta.url));
const SOURCE = "service-lb.c";
const WRITER_SOURCE = "lb-map-writer.c";
/** Program sections of service-lb.c and where they are attached. */
const PROGRAMS = [
  { direction: "ingress", section: "tc/nodeport" },
  { direction: "egress", section: "tc/revnat" },
] as const;
/**
 * The filters' priority in each direction (tc's own default for a first filter). The uplink's clsact
 * may be shared: the hop probes (lab/hops/) stamp packets before this filter at ingress and after it
 * at egress, so only this dataplane's filters are removed on teardown, and the qdisc only when no
 * other filter is left on it.
 */
export const EBPF_DATAPLANE_PREF = 49152;

export interface EbpfDataplaneOptions {
  readonly services: ServiceSet;
  /** Services beyond the set, planned after it (the receivers of the paths beyond the paper's). */
  readonly pathServices?: readonly ServiceSpec[];
  /** A Service's backend where it is not the lab's pod (service-maps.ts LbEndpoints.backendOf). */
  readonly backendOf?: LbEndpoints["backendOf"];
  /** Size of the service, backend and reverse-NAT maps (Cilium's bpf.lbMapMax). Default 65536. */
  readonly lbMapMax?: number;
  /** Size of each conntrack map. Default 65536. */
  readonly ctMapMax?: number;
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
/** Pure: the clang command that builds a BPF object of this folder (service-lb.c by default, or sock-lb.c). */
export function compileCommand(output: string, lbMapMax: number, ctMapMax: number, source = SOURCE): string[] {
  // clang -target bpf does not search the multiarch directory that holds <asm/types.h>.
  const multiarch = `/usr/include/${machine()}-linux-gnu`;
  return [
    "clang", "-O2", "-g", "-target", "bpf", "-Wall",
    ...(existsSync(multiarch) ? ["-I", multiarch] : []),
    "-I", SOURCE_DIR,
    `-DLB_MAP_MAX=${lbMapMax}`, `-DCT_MAP_MAX=${ctMapMax}`,
    "-c", join(SOURCE_DIR, source), "-o", output,
  ];
}

export class EbpfDataplane {
  readonly kind = "ebpf";
  private tornDown = false;
  private attached = false;
  private detached = false;
  private mounted = false;

  private constructor(
    private readonly topology: LabTopology,
    /** What the maps hold. */
    readonly plan: ServiceMapPlan,
    private readonly workDir: string,
    /** Private bpffs; tc pins the maps under tc/globals/. */
    readonly bpffs: string,
    private readonly times: { compileMs: number; attachMs: number; fillMs: number },
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
    const plan = planServiceMaps(
      options.services,
      { node: topology.addresses.node, pod: topology.addresses.pod, ...(options.backendOf ? { backendOf: options.backendOf } : {}) },
      lbMapMax,
      options.pathServices,
    );
    const problem = ebpfHostProblem();
    if (problem) throw new Error(problem);

    const workDir = mkdtempSync(join(tmpdir(), `${topology.prefix}-ebpf-`));
    const dataplane = new EbpfDataplane(topology, plan, workDir, join(topology.runDir, "bpffs"), { compileMs: 0, attachMs: 0, fillMs: 0 });
    const pod = topology.plan.clientPod;
    if (pod) {
      dataplane.sockets = new SocketLoadBalancer(pod.cgroup, join(workDir, "sock-lb.o"), join(workDir, "sock-lb-attach"), join(dataplane.bpffs, "tc", "globals"), join(dataplane.bpffs, "sock"));
    }
    topology.onTeardown(() => dataplane.teardown());
    try {
      dataplane.times.compileMs = timed(() => {
        run(compileCommand(dataplane.object, lbMapMax, ctMapMax));
        run(writerCompileCommand(dataplane.writerBinary));
        if (pod) {
          run(compileCommand(join(workDir, "sock-lb.o"), lbMapMax, ctMapMax, SOCK_LB_SOURCE));
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

  /** Pinned path of one of the load balancer's maps. */
  mapPath(name: string): string {
    return join(this.bpffs, "tc", "globals", name);
  }

  private attach(): void {
    mkdirSync(this.bpffs, { recursive: true });
    run(["mount", "-t", "bpf", "bpf", this.bpffs]);
    this.mounted = true;
    this.attached = true;
    this.attachPrograms();
  }

  /** Loads both programs onto the uplink from the compiled object (the maps are the ones pinned under the bpffs), then the socket hooks. */
  private attachPrograms(): void {
    // tc's loader pins maps by name below TC_BPF_MNT, and reuses what is pinned there: both programs
    // share one set of maps, and programs attached again find the maps as they were filled.
    const env = { TC_BPF_MNT: this.bpffs };
    // replace: creates the clsact qdisc, or keeps the one the hop probes attached to. The probes remove
    // it when they detach from an uplink without filters, as they find it while this dataplane is parked.
    this.topology.run("worker", ["tc", "qdisc", "replace", "dev", this.uplink, "clsact"]);
    for (const p of PROGRAMS) {
      this.topology.run(
        "worker",
        ["tc", "filter", "add", "dev", this.uplink, p.direction, "pref", String(EBPF_DATAPLANE_PREF), "bpf", "da", "obj", this.object, "sec", p.section],
        { env },
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
    for (const p of PROGRAMS) this.topology.run("worker", ["tc", "filter", "del", "dev", this.uplink, p.direction, "pref", String(EBPF_DATAPLANE_PREF)]);
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

  /** Ids of the attached programs and of the pinned maps. */
  objectIds(): BpfObjectIds {
    const programs: number[] = [];
    for (const p of PROGRAMS) {
      const filters = JSON.parse(
        this.topology.run("worker", ["tc", "-j", "filter", "show", "dev", this.uplink, p.direction, "pref", String(EBPF_DATAPLANE_PREF)]),
      ) as {
        options?: { prog?: { id: number } };
      }[];
      for (const f of filters) if (f.options?.prog) programs.push(f.options.prog.id);
    }
    for (const hook of this.sockets?.attached() ?? []) programs.push(hook.id);
    const maps = [...Object.values(LB_MAPS), ...(this.sockets ? Object.values(SOCK_LB_MAPS) : [])].flatMap((byFamily) =>
      Object.values(byFamily).map((name) => (JSON.parse(run(["bpftool", "-j", "map", "show", "pinned", this.mapPath(name)])) as { id: number }).id),
    );
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
      for (const p of this.detached ? [] : PROGRAMS) {
        const result = this.topology.exec("worker", ["tc", "filter", "del", "dev", this.uplink, p.direction, "pref", String(EBPF_DATAPLANE_PREF)]);
        if (result.status !== 0 && !gone.test(result.stderr)) failures.push(`tc filter del dev ${this.uplink} ${p.direction}: ${result.stderr.trim()}`);
      }
      const others = PROGRAMS.some((p) => this.topology.exec("worker", ["tc", "filter", "show", "dev", this.uplink, p.direction]).stdout.trim() !== "");
      // The hop probes may have removed the qdisc already, while this dataplane was parked.
      const qdisc = /\bqdisc clsact\b/.test(this.topology.exec("worker", ["tc", "qdisc", "show", "dev", this.uplink]).stdout);
      if (!others && qdisc) {
        const result = this.topology.exec("worker", ["tc", "qdisc", "del", "dev", this.uplink, "clsact"]);
        if (result.status !== 0 && !gone.test(result.stderr)) failures.push(`tc qdisc del dev ${this.uplink} clsact: ${result.stderr.trim()}`);
      }
    }
    let unmounted = true;
    if (this.mounted) {
      rmSync(join(this.bpffs, "tc"), { recursive: true, force: true });
      const result = exec(["umount", this.bpffs]);
      unmounted = result.status === 0;
      if (!unmounted) failures.push(`umount ${this.bpffs}: ${result.stderr.trim()}`);
    }
    if (unmounted) rmSync(this.bpffs, { recursive: true, force: true });
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
