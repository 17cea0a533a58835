// What runs on the rehearsal's worker in place of the kubelet and of kube-proxy or the Cilium agent,
// driven by the API's objects as the real ones are (watching objects.json), and only as far as the
// stack's workloads need:
//
// - the kubelet runs each Deployment's one pod in the pod sandbox the rehearsal prepared for it (a
//   network namespace on the worker's pod bridge): its init containers, then its container's own
//   command, in the worker's mount and PID namespaces with a PID namespace of its own (the container's
//   process is PID 1, and the worker's `pgrep` sees it), its volumes mounted (hostPath, emptyDir);
//   it is Ready once its readiness probe passes, restarted when it exits, and replaced when its
//   template changes (`kubectl rollout restart`);
// - the dataplane agent brings the worker's lab dataplane (lab/dataplanes/<name>/, through its
//   LabDataplane interface) to the Services that have a ready endpoint, each with its endpoints,
//   asynchronously: it waits `programDelayMs` after a change before it programs (a test holds the old
//   rule set in place with it), then programs the latest state, as kube-proxy's and Cilium's sync loops do.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync, watch, type FSWatcher } from "node:fs";
import path from "node:path";
import type { Scenario } from "../../scenario/schema.js";
import type { ServiceSet } from "../../workloads/service-model.js";
import { exec, run } from "../../lab/netns.js";
import type { LabTopology } from "../../lab/topology.js";
import type { LabDataplane } from "../../lab/dataplanes/types.js";
import type { ServiceEndpoints } from "../../lab/dataplanes/kube-proxy-inputs.js";
import { ebpfLoadBalancer } from "../../lab/dataplanes/ebpf/module.js";
import { LB_MAPS } from "../../lab/dataplanes/ebpf/service-maps.js";
import { KubeApi, selects, serviceSpecOf, templateHash, type KubeObject, type PodStatus } from "./api.js";

/** How long a container may take to pass its readiness probe. */
const READY_TIMEOUT_MS = 120_000;

interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  volumeMounts?: { name: string; mountPath: string }[];
  readinessProbe?: { exec?: { command: string[] } };
}

interface PodSpec {
  initContainers?: Container[];
  containers: Container[];
  volumes?: { name: string; hostPath?: { path: string }; emptyDir?: unknown }[];
  terminationGracePeriodSeconds?: number;
}

/** A pod the kubelet runs. */
interface RunningPod {
  status: PodStatus;
  /** The main container's process tree (nsenter, which waits for it). */
  child?: ChildProcess;
  stopping: boolean;
}

export interface NodeAgentOptions {
  readonly topology: LabTopology;
  readonly api: KubeApi;
  readonly scenario: Scenario;
  readonly dataplane: LabDataplane;
  readonly workerNode: string;
  /** The worker's PID 1 as this machine numbers it (NamespaceHost.initPid). */
  readonly workerInitPid: () => number;
  /** Seconds the dataplane agent waits after a change before it programs. */
  programDelayMs?: number;
  readonly log: (line: string) => void;
}

/** One programming of the worker's dataplane, as the agent did it. */
export interface Programming {
  /** The Services it holds afterwards (with a ready endpoint). */
  readonly services: number;
  readonly startedAt: number;
  readonly doneAt: number;
}

export class WorkerAgents {
  private readonly pods = new Map<string, RunningPod>();
  private watcher?: FSWatcher;
  private reconciling = Promise.resolve();
  private pending = false;
  private programmedKey = "[]";
  private programTimer?: NodeJS.Timeout;
  private programming = Promise.resolve();
  private stopped = false;
  /** Every programming of the worker's dataplane, in order. */
  readonly programmings: Programming[] = [];

  constructor(private readonly o: NodeAgentOptions) {}

  set programDelayMs(ms: number) {
    this.o.programDelayMs = ms;
  }

  start(): void {
    mkdirSync(this.podLogDir, { recursive: true });
    this.watcher = watch(this.o.api.dir, (_, file) => {
      if (file === "objects.json") this.reconcile();
    });
    this.reconcile();
  }

  private get podLogDir(): string {
    return path.join(this.o.api.dir, "pod-logs");
  }

  /** Runs one reconciliation at a time; a change during one runs another after it. */
  private reconcile(): void {
    if (this.pending || this.stopped) return;
    this.pending = true;
    this.reconciling = this.reconciling.then(async () => {
      this.pending = false;
      try {
        await this.syncPods();
        this.scheduleProgramming();
      } catch (err) {
        this.o.log(`node agents: ${(err as Error).message}`);
      }
    });
  }

  // ------------------------------------------------------------------------------------------
  // The kubelet.

  private deployments(): KubeObject[] {
    return Object.values(this.o.api.objects().objects).filter((o) => o.kind === "Deployment");
  }

  private async syncPods(): Promise<void> {
    const sandboxes = this.o.api.cluster().sandboxes;
    const wanted = new Map(this.deployments().map((d) => [`${d.metadata.namespace}/${d.metadata.name}`, d]));
    for (const [key, pod] of this.pods) {
      const d = wanted.get(key);
      if (!d || templateHash(d) !== pod.status.templateHash) await this.stopPod(key);
    }
    for (const [key, d] of wanted) {
      if (this.pods.has(key)) continue;
      const sandbox = sandboxes[d.metadata.name];
      if (!sandbox) {
        this.o.log(`kubelet: no pod sandbox for deployment ${key} on the worker; it stays pending`);
        continue;
      }
      await this.startPod(key, d, sandbox);
    }
  }

  private writeStatus(): void {
    const status = this.o.api.status();
    status.pods = [...this.pods.values()].map((p) => p.status);
    this.o.api.writeStatus(status);
  }

  private async startPod(key: string, d: KubeObject, sandbox: { netns: string; ips: readonly string[] }): Promise<void> {
    const spec = (d.spec as { template: { metadata?: { labels?: Record<string, string> }; spec: PodSpec } }).template;
    const hash = templateHash(d);
    const status: PodStatus = {
      namespace: d.metadata.namespace!,
      name: `${d.metadata.name}-${hash}-${Math.random().toString(36).slice(2, 7)}`,
      owner: d.metadata.name,
      templateHash: hash,
      labels: spec.metadata?.labels ?? {},
      nodeName: this.o.workerNode,
      ips: sandbox.ips,
      netns: sandbox.netns,
      containers: spec.spec.containers.map((c) => c.name),
      ready: false,
      hostNetwork: false,
    };
    const pod: RunningPod = { status, stopping: false };
    this.pods.set(key, pod);
    this.writeStatus();
    const podDir = path.join(this.o.topology.runDir, "pods", status.name);
    for (const c of spec.spec.initContainers ?? []) {
      const code = await new Promise<number>((resolve) => this.runContainer(spec.spec, c, sandbox.netns, podDir, status.name).once("exit", (c2) => resolve(c2 ?? 1)));
      if (code !== 0) {
        this.o.log(`kubelet: init container ${c.name} of ${status.name} exited with ${code}; the pod stays pending`);
        return;
      }
    }
    const main = spec.spec.containers[0]!;
    if (spec.spec.containers.length > 1) this.o.log(`kubelet: ${status.name} has ${spec.spec.containers.length} containers; only ${main.name} runs`);
    if (main.command === undefined && main.args === undefined) {
      // The pause image: nothing runs, the sandbox is the pod.
      pod.status = { ...status, ready: true };
      this.writeStatus();
      return;
    }
    const startMain = () => {
      const child = this.runContainer(spec.spec, main, sandbox.netns, podDir, status.name);
      pod.child = child;
      child.once("exit", (code, signal) => {
        if (pod.stopping || this.stopped) return;
        this.o.log(`kubelet: container ${main.name} of ${status.name} exited (${signal ?? code}); restarting it`);
        pod.status = { ...pod.status, ready: false };
        this.writeStatus();
        startMain();
        void this.untilReady(pod, main, sandbox.netns);
      });
    };
    startMain();
    await this.untilReady(pod, main, sandbox.netns);
  }

  /** Polls the container's readiness probe, as the kubelet does, until it passes. */
  private async untilReady(pod: RunningPod, c: Container, netns: string): Promise<void> {
    const probe = c.readinessProbe?.exec?.command;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    const child = pod.child;
    while (probe && exec(["ip", "netns", "exec", netns, ...probe]).status !== 0) {
      if (pod.stopping || this.stopped || pod.child !== child || child?.exitCode !== null) return;
      if (Date.now() > deadline) {
        this.o.log(`kubelet: ${pod.status.name} is not ready after ${READY_TIMEOUT_MS / 1000} s`);
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    pod.status = { ...pod.status, ready: true };
    this.writeStatus();
    this.scheduleProgramming();
  }

  /**
   * Starts a container: in the worker's mount, PID and UTS namespaces and root, a PID and mount
   * namespace of its own with the pod's volumes, the sandbox's network namespace, its own command.
   */
  private runContainer(pod: PodSpec, c: Container, netns: string, podDir: string, podName: string): ChildProcess {
    const mounts: string[] = [];
    for (const m of c.volumeMounts ?? []) {
      const v = pod.volumes?.find((x) => x.name === m.name);
      if (!v) throw new Error(`pod ${podName}: volume ${m.name} is not declared`);
      let source: string;
      if (v.hostPath) source = v.hostPath.path;
      else if (v.emptyDir !== undefined) source = path.join(podDir, "volumes", v.name);
      else throw new Error(`pod ${podName}: volume ${v.name} is neither hostPath nor emptyDir`);
      mounts.push(`mkdir -p '${source}' '${m.mountPath}' && mount --bind '${source}' '${m.mountPath}'`);
    }
    const argv = [...(c.command ?? []), ...(c.args ?? [])];
    const setup = `set -e\n${mounts.join("\n")}\nexec nsenter --net=/run/netns/${netns} -- "$@"`;
    const child = spawn(
      "nsenter",
      ["--target", String(this.o.workerInitPid()), "--mount", "--pid", "--uts", "--root", "--wd", "--", "unshare", "--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private", "--", "/bin/sh", "-c", setup, "container", ...argv],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const log = createWriteStream(path.join(this.podLogDir, `${podName}_${c.name}.log`), { flags: "a" });
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    child.once("exit", () => log.end());
    return child;
  }

  /** Ends a pod: SIGINT to its container (its preStop does `kill -INT 1`), SIGKILL after its grace period. */
  private async stopPod(key: string): Promise<void> {
    const pod = this.pods.get(key);
    if (!pod) return;
    pod.stopping = true;
    const child = pod.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      const pids = () => exec(["ip", "netns", "pids", pod.status.netns]).stdout.split(/\s+/).filter(Boolean).map(Number);
      const signal = (pid: number, s: NodeJS.Signals) => {
        try {
          process.kill(pid, s);
        } catch {
          // Gone already.
        }
      };
      for (const pid of pids()) signal(pid, "SIGINT");
      const grace = setTimeout(() => {
        for (const pid of pids()) signal(pid, "SIGKILL");
      }, 10_000);
      await exited;
      clearTimeout(grace);
    }
    this.pods.delete(key);
    this.writeStatus();
  }

  // ------------------------------------------------------------------------------------------
  // The dataplane agent (kube-proxy or Cilium).

  /** The Services with a ready endpoint, each with its endpoints, in the lab's order. */
  private desired(): { endpoints: ServiceEndpoints[]; set: ServiceSet; key: string } {
    const objects = Object.values(this.o.api.objects().objects).filter((o) => o.kind === "Service");
    const ready = this.o.api.pods().filter((p) => p.ready && !p.hostNetwork);
    const programmable: ServiceEndpoints[] = [];
    for (const svc of objects) {
      const spec = serviceSpecOf(svc);
      const ips = ready.filter((p) => p.namespace === spec.namespace && selects(spec.selector, p.labels)).flatMap((p) => p.ips);
      if (ips.length > 0) programmable.push({ service: spec, endpoints: ips.map((ip) => ({ ip, local: true })) });
    }
    // kube-proxy walks a Go map, so the receiver's rules land anywhere among the NodePort Services' on
    // every sync; as in the lab (lab/lab-scenario.ts) they sit in the middle, where they land on average.
    const { receiver } = this.o.scenario;
    const isReceiver = (e: ServiceEndpoints) => e.service.namespace === receiver.namespace && e.service.type === "NodePort" && e.service.ports.some((p) => p.nodePort === receiver.signalingNodePort);
    const receiverEntry = programmable.find(isReceiver);
    const others = programmable.filter((e) => e !== receiverEntry).sort((a, b) => `${a.service.namespace}/${a.service.name}`.localeCompare(`${b.service.namespace}/${b.service.name}`));
    const nodePorts = others.filter((e) => e.service.type === "NodePort");
    const middle = Math.floor(nodePorts.length / 2);
    const ordered = receiverEntry ? [...nodePorts.slice(0, middle), receiverEntry, ...nodePorts.slice(middle), ...others.filter((e) => e.service.type !== "NodePort")] : [...nodePorts, ...others.filter((e) => e.service.type !== "NodePort")];
    const first = receiverEntry ?? ordered[0];
    const scaled = ordered.filter((e) => e !== first).map((e) => e.service);
    const set: ServiceSet = {
      // The eBPF model puts this one first in its maps; the order of the others does not matter there.
      receiver: first?.service ?? { namespace: "", name: "", type: "ClusterIP", clusterIPs: {}, selector: {}, ports: [] },
      scaled,
      counts: { nodePort: scaled.filter((s) => s.type === "NodePort").length, clusterIp: scaled.filter((s) => s.type !== "NodePort").length },
    };
    return { endpoints: ordered, set, key: JSON.stringify(ordered) };
  }

  private scheduleProgramming(): void {
    if (this.stopped || this.programTimer) return;
    if (this.desired().key === this.programmedKey) return;
    this.programTimer = setTimeout(() => {
      this.programTimer = undefined;
      this.programming = this.programming.then(() => this.program()).catch((err: unknown) => this.o.log(`dataplane agent: ${(err as Error).message}`));
    }, this.o.programDelayMs ?? 0);
  }

  /** Brings the worker's dataplane to the latest state: a full sync, as the lab's modules do it. */
  private async program(): Promise<void> {
    if (this.stopped) return;
    const { endpoints, set, key } = this.desired();
    if (key === this.programmedKey) return;
    const startedAt = Date.now();
    await this.o.dataplane.remove();
    if (endpoints.length > 0) await this.o.dataplane.setUp({ services: endpoints.length, serviceSet: set, endpoints });
    this.programmedKey = key;
    const done: Programming = { services: endpoints.length, startedAt, doneAt: Date.now() };
    this.programmings.push(done);
    this.o.log(`dataplane agent: the worker's ${this.o.dataplane.name} dataplane holds ${done.services} Services (${((done.doneAt - startedAt) / 1000).toFixed(1)} s)`);
    const status = this.o.api.status();
    status.programmed = { services: done.services, at: new Date(done.doneAt).toISOString() };
    const lb = ebpfLoadBalancer(this.o.dataplane);
    if (lb) {
      const ids: Record<string, number> = {};
      for (const byFamily of [LB_MAPS.services, LB_MAPS.backends]) {
        for (const name of Object.values(byFamily)) ids[name] = (JSON.parse(run(["bpftool", "-j", "map", "show", "pinned", lb.mapPath(name)])) as { id: number }).id;
      }
      status.bpfMaps = ids;
    } else {
      delete status.bpfMaps;
    }
    this.o.api.writeStatus(status);
    // A change while it programmed is programmed next.
    this.scheduleProgramming();
  }

  /** Stops the pods and removes what the dataplane installed. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    clearTimeout(this.programTimer);
    await this.reconciling;
    await this.programming;
    for (const key of [...this.pods.keys()]) await this.stopPod(key);
    await this.o.dataplane.remove();
  }
}
