// The hop probes on a worker of a deployed stack: what the cloud backend calls to time the worker's
// part of each latency and setup run (the Service dataplane, the pod's link, delivery and
// turnaround: measure/hops.ts, scope "worker"), with nothing left on the node afterwards.
//
//   const hops = await WorkerHops.install(sshWorkerShell(shell), { dataPort, receiver: {} });   // {}: the only ITGRecv pod
//   per run:   const run = await hops.begin(key.profile, flow.logName, { maxSeconds });   // undefined: not probed
//              ... the flow ...
//              outcome.hops = await hops.end(run, localDir);                               // a HopCapture
//              (on a failed flow: await hops.abandon(run))
//   at the end: await hops.remove();
//
// install() copies the C (hops/) over the shell, builds it on the worker against the worker's own
// headers (no BTF, no libbpf: hops/hop-bpf.h), picks the output path by the running kernel (perf
// event array before 5.8) and the map definitions by tc (its own ELF loader, or libbpf), and
// mounts a private bpffs. begin() finds the receiver pod (its ITGRecv process, by the pod's address
// or a process id), attaches the six probes as the first filter of their hooks (points.ts: the
// order with Cilium's programs, and the Helm value that makes room) and starts a detached reader;
// end() stops it, detaches every probe and copies the records. The probes sit on the node only
// during probed runs. remove() takes away readers, filters, the qdiscs the probes added, mounts and
// files; install() does the same first for what a crashed session left.
import path from "node:path";
import { connectCompileArgs, connectOrderProblem, effectiveConnectHooks, hopSources, outputForKernel, mapStyleForTc, probeCompileArgs, readerArgs, readerCompileArgs, type HopMapStyle, type HopOutput } from "../../hops/build.js";
import { shellCommand } from "../../measure/ditg-commands.js";
import { HOP_KEYING, parseReaderSummary, type HopCapture, type HopKeying } from "../../measure/hops.js";
import type { RunProfile } from "../../measure/types.js";
import type { CommandResult, RemoteHost, RemoteShell } from "../cloud.js";
import {
  CILIUM_TUNNEL_DEVICE,
  hookProblem,
  isWorkerProbe,
  parseFilters,
  roleHasPod,
  workerPlaces,
  WORKER_CONNECT_OBJECT,
  WORKER_PROBE_OBJECT,
  type ShownFilter,
  type WorkerInterface,
  type WorkerPoint,
  type WorkerRole,
} from "./points.js";
import {
  attachScript,
  CONNECT_TOOLS,
  connectScript,
  endScript,
  factsScript,
  forgetRunScript,
  installScript,
  locateScript,
  parseLines,
  removeScript,
  WORKER_HEADERS,
  WORKER_TOOLS,
  type ReceiverLocator,
} from "./scripts.js";

/** Where the probes live on the worker while installed. */
export const DEFAULT_WORKER_HOPS_DIR = "/var/tmp/testbed-hops";
/** The data NIC of a stack's worker (infra/openstack/address-plan.ts DATA_NIC_NAMES.datacenter). */
export const DEFAULT_DATA_NIC = "tb-dc";
/** A reader ends by itself this long after its run was due to end: a campaign that died leaves none running. */
const READER_GRACE_S = 600;
/** The largest script sent as one command: a single argument of the remote shell stays below the kernel's 128 KiB. */
const MAX_SCRIPT_BYTES = 100_000;

/** Shell access to the worker: scripts as root in its own network namespace, and file copies from it. */
export interface WorkerShell {
  /** Runs a POSIX shell script as root on the worker; rejects only when the transport fails. */
  run(script: string): Promise<CommandResult>;
  /** Copies a file of the worker to a local path. */
  fetch(remotePath: string, localPath: string): Promise<void>;
}

/** The worker through the cloud backend's SSH shell (the receiver's node), with sudo. */
export function sshWorkerShell(shell: RemoteShell, host: RemoteHost = "receiver"): WorkerShell {
  return {
    run: (script) => shell.run(host, `sudo -n sh -c ${shellCommand([script])}`),
    fetch: (remotePath, localPath) => shell.fetch(host, remotePath, localPath),
  };
}

export interface WorkerHopsOptions {
  /** The receiver's data port (NodePort = Service port = pod port), the same for both families. */
  readonly dataPort: number;
  /** The data port of the receiver pod's second ITGRecv, stamped as well. */
  readonly alternateDataPort?: number;
  /** How to find the pod the probes take (the receiver's; the client pod's on clusterip's worker 1): its address (the pod IP), a process id, its Deployment and process name, or {} for the only pod running ITGRecv. Not used by a nodeport-entry worker. */
  readonly receiver: ReceiverLocator;
  /** What the worker is on the path (points.ts); default the paper's worker, receiver-node. */
  readonly role?: WorkerRole;
  /** The tunnel device pod traffic between the nodes takes where the stack tunnels; default Cilium's cilium_vxlan. Probed when it exists. */
  readonly tunnelDevice?: string;
  /** The worker's data NIC, where NodePort traffic arrives. Default tb-dc. */
  readonly dataNic?: string;
  /** The work directory on the worker. Default /var/tmp/testbed-hops. */
  readonly workDir?: string;
  /** Force an output path (a test forces perf on a newer kernel); default: by the worker's kernel. */
  readonly output?: HopOutput;
  /** Perf ring data pages per CPU (a power of two); default the reader's 256. */
  readonly perfPages?: number;
}

/** What install() found on the worker and built. */
export interface WorkerHopsBuild {
  readonly kernel: string;
  readonly tc: string;
  readonly output: HopOutput;
  readonly maps: Extract<HopMapStyle, "btf-pinned" | "legacy">;
}

/** One probed run on the worker. */
export interface WorkerRun {
  readonly name: string;
  readonly keying: HopKeying;
  /** The interfaces the probes sit on: the data NIC, the tunnel device, the host side of the pod's veth, the pod's interface (those the worker's role takes). */
  readonly devices: Readonly<Partial<Record<WorkerInterface, string>>>;
  /** Whether pod traffic between the nodes took the tunnel device (it existed on the worker). */
  readonly tunnel: boolean;
  /** Every hook's filters after the attach, in the order the kernel runs them (the probe first). */
  readonly hooks: readonly { iface: WorkerInterface; direction: "ingress" | "egress"; filters: readonly ShownFilter[] }[];
  /** A setup run on the client node (clusterip): the cgroups of the connect call's two hooks (the client container's, and the socket load balancer's or the same). */
  readonly connectCgroups?: { readonly call: string; readonly done: string };
}

/** A setup problem on the worker: missing tools, a hook the probes cannot be first on, no receiver. */
export class WorkerHopsError extends Error {
  override name = "WorkerHopsError";
}

function lastLines(text: string, n = 5): string {
  return text.trim().split("\n").slice(-n).join(" / ");
}

export class WorkerHops {
  private removed = false;
  private readonly runs = new Set<string>();

  private constructor(
    private readonly shell: WorkerShell,
    readonly options: WorkerHopsOptions,
    readonly workDir: string,
    readonly build: WorkerHopsBuild,
  ) {}

  /** Reads the worker, removes what an earlier session left, copies the sources, builds and mounts. Undoes itself on failure. */
  static async install(shell: WorkerShell, options: WorkerHopsOptions): Promise<WorkerHops> {
    const workDir = options.workDir ?? DEFAULT_WORKER_HOPS_DIR;
    if (!path.posix.isAbsolute(workDir) || workDir === "/" || /\s/.test(workDir)) {
      throw new WorkerHopsError(`workDir: "${workDir}" is not accepted; accepted: an absolute path without spaces, not /`);
    }
    if (options.output !== undefined && options.output !== "perf" && options.output !== "ringbuf") {
      throw new WorkerHopsError(`output: "${String(options.output)}" is unknown; accepted: perf, ringbuf`);
    }
    // The client node of clusterip times each handshake from its connect call: cgroup hooks, which bpftool attaches.
    const connect = options.role === "client-node";
    const tools = [...WORKER_TOOLS, ...(connect ? CONNECT_TOOLS : [])];
    const facts = await runScript(shell, factsScript(workDir, tools), "reading the worker");
    const value = (key: string) => facts.find((l) => l.key === key)?.value;
    const missing = facts.filter((l) => l.key === "missing").map((l) => l.value);
    if (missing.length > 0) {
      const packages = [...new Set(missing.map((m) => tools.find((t) => t.tool === m)?.ubuntu ?? WORKER_HEADERS.find((h) => h.file === m)?.ubuntu ?? m))];
      throw new WorkerHopsError(`the worker lacks ${missing.join(", ")}, which the hop probes need (Ubuntu packages: ${packages.join(", ")}; the stack's cloud-init installs them)`);
    }
    const kernel = value("kernel") ?? "";
    const tc = value("tc") ?? "";
    const output = options.output ?? outputForKernel(kernel);
    if (output === "ringbuf" && outputForKernel(kernel) === "perf") {
      throw new WorkerHopsError(`output: ringbuf needs kernel 5.8 or later; the worker runs ${kernel}; accepted: perf`);
    }
    const build: WorkerHopsBuild = { kernel, tc, output, maps: mapStyleForTc(tc) };
    const hops = new WorkerHops(shell, options, workDir, build);
    if (value("leftover") !== undefined) await hops.removeAll("removing what an earlier session left");
    const multiarch = value("multiarch");
    const probe = probeCompileArgs(
      { output, maps: build.maps, dataPort: options.dataPort, ...(options.alternateDataPort !== undefined ? { alternateDataPort: options.alternateDataPort } : {}) },
      { sourceDir: `${workDir}/src`, output: `${workDir}/${WORKER_PROBE_OBJECT}`, ...(multiarch ? { multiarchInclude: multiarch } : {}) },
    );
    const reader = readerCompileArgs({ sourceDir: `${workDir}/src`, output: `${workDir}/hop-reader` });
    const connectBuild = connect
      ? {
          connect: connectCompileArgs(
            { dataPort: options.dataPort, ...(options.alternateDataPort !== undefined ? { alternateDataPort: options.alternateDataPort } : {}) },
            { sourceDir: `${workDir}/src`, output: `${workDir}/${WORKER_CONNECT_OBJECT}`, ...(multiarch ? { multiarchInclude: multiarch } : {}) },
          ),
        }
      : {};
    try {
      await runScript(shell, installScript(workDir, hopSources(), { probe, reader, ...connectBuild }), "building the hop probes on the worker");
    } catch (error) {
      await hops.remove().catch((cleanup: Error) => ((error as Error).message += `\nwhile undoing: ${cleanup.message}`));
      throw error;
    }
    return hops;
  }

  /**
   * Before a run: for a latency or setup run, attaches the probes and starts a reader (undefined for
   * a throughput run: not probed). Refuses, with nothing left attached, a hook where the probe could
   * not run first.
   */
  async begin(profile: RunProfile, runName: string, options: { maxSeconds: number }): Promise<WorkerRun | undefined> {
    if (this.removed) throw new Error("the worker's hop probes were removed");
    const keying = HOP_KEYING[profile];
    if (keying === undefined) return undefined;
    if (this.runs.size > 0) throw new Error(`hop run ${[...this.runs][0]} still open on the worker; end() it first`);
    if (!(options.maxSeconds > 0)) throw new Error(`maxSeconds: ${options.maxSeconds}; accepted: a positive number of seconds`);
    const nic = this.options.dataNic ?? DEFAULT_DATA_NIC;
    const role = this.options.role ?? "receiver-node";
    const pod = roleHasPod(role) ? this.options.receiver : undefined;
    const located = await runScript(
      this.shell,
      locateScript(nic, pod, workerPlaces(role, true), this.options.tunnelDevice ?? CILIUM_TUNNEL_DEVICE),
      "finding the probed pod on the worker",
    );
    const get = (key: string) => located.find((l) => l.key === key)?.value;
    const tunnelDevice = get("tunnel");
    const places = workerPlaces(role, tunnelDevice !== undefined);
    const devices: Partial<Record<WorkerInterface, string>> = {
      nic,
      ...(tunnelDevice !== undefined ? { tunnel: tunnelDevice } : {}),
      ...(pod !== undefined ? { "pod-veth": get("veth") ?? "", pod: get("pod-if") ?? "" } : {}),
    };
    const hookOf = (p: WorkerPoint) => ({ device: devices[p.iface] ?? p.iface, direction: p.direction });
    const problems = places.flatMap((p) => {
      const filters = parseFilters(located.filter((l) => l.key === "filter" && l.value.startsWith(`${p.iface} ${p.direction} `)).map((l) => l.value).join("\n"));
      return hookProblem(hookOf(p), filters) ?? [];
    });
    if (problems.length > 0) throw new WorkerHopsError(`the hop probes cannot run first on the worker: ${[...new Set(problems)].join("; ")}`);
    const { output } = this.build;
    const reader = readerArgs(
      output,
      { pins: `${this.workDir}/bpffs/tc/globals`, recordsFile: `${this.workDir}/runs/${runName}.hops` },
      { daemon: `${this.workDir}/runs/${runName}`, maxSeconds: options.maxSeconds + READER_GRACE_S, ...(this.options.perfPages !== undefined ? { pages: this.options.perfPages } : {}) },
    );
    this.runs.add(runName);
    const pid = pod !== undefined ? { pid: Number(get("pid")) } : {};
    const tunnel = tunnelDevice !== undefined;
    let attached: { key: string; value: string }[];
    try {
      attached = await runScript(this.shell, attachScript(this.workDir, { ...pid, devices, runName, reader, places }), "attaching the hop probes on the worker");
      const started = attached.filter((l) => l.key === "reader").map((l) => l.value);
      if (!started.includes("ready")) throw new Error(`the worker's hop reader did not start: ${started.join(" / ") || "no output"}`);
    } catch (error) {
      await this.abandon({ name: runName, keying, devices, tunnel, hooks: [] }).catch((cleanup: Error) => ((error as Error).message += `\nwhile undoing: ${cleanup.message}`));
      throw error;
    }
    const hooks = places.map((p) => {
      const where = p.iface === "pod" ? "pod" : "host";
      const prefix = `${where} ${devices[p.iface]} ${p.direction} `;
      const filters = parseFilters(attached.filter((l) => l.key === "hook" && l.value.startsWith(prefix)).map((l) => l.value.slice(prefix.length)).join("\n"));
      return { iface: p.iface, direction: p.direction, filters };
    });
    const notFirst = hooks.filter((h) => !h.filters[0] || !isWorkerProbe(h.filters[0]));
    if (notFirst.length > 0) {
      const run = { name: runName, keying, devices, tunnel, hooks };
      await this.abandon(run);
      throw new WorkerHopsError(`a hop probe is not the first filter of ${notFirst.map((h) => `${devices[h.iface]} ${h.direction} (${h.filters.map((f) => `${f.pref} ${f.name}`).join(", ")})`).join("; ")}`);
    }
    const run: WorkerRun = { name: runName, keying, devices, tunnel, hooks };
    if (role === "client-node" && keying === "handshake") {
      try {
        return { ...run, connectCgroups: await this.attachConnectHooks(Number(get("pid"))) };
      } catch (error) {
        await this.abandon(run).catch((cleanup: Error) => ((error as Error).message += `\nwhile undoing: ${cleanup.message}`));
        throw error;
      }
    }
    return run;
  }

  /** Attaches the connect call's hooks around the node's socket hooks (scripts.ts connectScript) and checks the order the kernel runs them in. */
  private async attachConnectHooks(pid: number): Promise<{ call: string; done: string }> {
    const lines = await runScript(this.shell, connectScript(this.workDir, pid), "attaching the connect call's hooks on the worker");
    const [call, done] = (lines.find((l) => l.key === "connect-cgroups")?.value ?? "").split(" ");
    if (!call || !done) throw new Error("the worker did not say where the connect call's hooks went");
    const problem = connectOrderProblem(effectiveConnectHooks(lines.filter((l) => l.key === "cgroup").map((l) => l.value)));
    if (problem) throw new WorkerHopsError(`the connect call's hooks on ${call} do not enclose the node's socket hooks: ${problem}`);
    return { call, done };
  }

  /**
   * After the run: stops the reader, detaches the probes, copies the records to `localDir` and
   * deletes them on the worker. Throws when a probe vanished during the run (something removed its
   * filter: a Cilium reload takes every filter off a hook it detaches from) or the reader failed.
   */
  async end(run: WorkerRun, localDir: string): Promise<HopCapture> {
    const lines = await runScript(this.shell, endScript(this.workDir, run.name), "stopping the hop probes on the worker");
    this.runs.delete(run.name);
    const local = path.join(localDir, `${run.name}.hops`);
    try {
      const missing = lines.filter((l) => l.key === "missing").map((l) => l.value);
      if (missing.length > 0) throw new WorkerHopsError(`hop probes were taken off the worker during run ${run.name}: ${missing.join(", ")} (a dataplane reload removes the filters of a hook)`);
      const error = lines.find((l) => l.key === "error");
      const summary = lines.find((l) => l.key === "summary");
      if (error || !summary) throw new Error(`the worker's hop reader failed: ${error?.value ?? "no summary"}`);
      await this.shell.fetch(`${this.workDir}/runs/${run.name}.hops`, local);
      return { recordsFile: local, keying: run.keying, scope: "worker", ...parseReaderSummary(summary.value) };
    } finally {
      await runScript(this.shell, forgetRunScript(this.workDir, run.name), "deleting a run's hop records on the worker");
    }
  }

  /** A failed run: stops its reader and detaches the probes; no capture. */
  async abandon(run: WorkerRun): Promise<void> {
    this.runs.delete(run.name);
    await runScript(this.shell, endScript(this.workDir, run.name), "stopping the hop probes on the worker");
    await runScript(this.shell, forgetRunScript(this.workDir, run.name), "deleting a run's hop records on the worker");
  }

  /** Removes everything the probes put on the worker. Safe to call twice. */
  async remove(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    this.runs.clear();
    await this.removeAll("removing the hop probes from the worker");
  }

  private async removeAll(what: string): Promise<void> {
    const left = (await runScript(this.shell, removeScript(this.workDir), what)).filter((l) => l.key === "left").map((l) => l.value);
    if (left.length > 0) throw new WorkerHopsError(`${what}: still there: ${left.join(", ")}`);
  }
}

/** Runs a script; its key=value lines, or an error that says what failed and what the worker printed. */
async function runScript(shell: WorkerShell, script: string, what: string): Promise<{ key: string; value: string }[]> {
  if (Buffer.byteLength(script) > MAX_SCRIPT_BYTES) throw new Error(`${what}: the script has ${Buffer.byteLength(script)} bytes; accepted: up to ${MAX_SCRIPT_BYTES}`);
  const r = await shell.run(script);
  const lines = parseLines(r.stdout);
  if (r.code !== 0) {
    const said = lines.find((l) => l.key === "error")?.value ?? lastLines(r.stderr || r.stdout);
    const error = r.code === 3 ? new WorkerHopsError(`${what}: ${said}`) : new Error(`${what}: exit ${r.code}: ${said || "no output"}`);
    throw error;
  }
  return lines;
}
