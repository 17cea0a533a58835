// What runs on the rehearsal's worker in place of the kubelet and of kube-proxy or the Cilium agent,
// driven by the API's objects as the real ones are (watching objects.json), and only as far as the
// stack's workloads need:
//
// - the kubelet of each node runs each Deployment's one pod in the pod sandbox the rehearsal prepared
//   for it (a network namespace on its node's pod bridge), on the node the Deployment's node affinity
//   names (a sandbox on another node keeps the pod pending): its init containers, then its
//   container's own command, in the node's mount and PID namespaces with PID and UTS namespaces of
//   its own (the container's process is PID 1, the node's `pgrep` sees it, and its host name is the
//   pod's name), in the pod's cgroup where it has one (the client pod), its volumes mounted
//   (hostPath, emptyDir); it is Ready once its readiness probe passes in the container, restarted
//   when it exits, and replaced when its template changes (`kubectl rollout restart`);
//   the pause image runs as a process called pause in the sandbox (it sleeps), as on a node;
//   `kubectl exec` into a pod comes to the kubelets on a Unix socket (EXEC_SOCKET), and runs in the
//   container's namespaces and the pod's cgroup, as the CRI's exec does;
// - the dataplane agent brings the worker's lab dataplane (lab/dataplanes/<name>/, through its
//   LabDataplane interface) to the Services that have a ready endpoint, each with its endpoints (local
//   or on another node),
//   asynchronously: it waits `programDelayMs` after a change before it programs (a test holds the old
//   rule set in place with it), then programs the latest state, as kube-proxy's and Cilium's sync loops do:
//   its first sync installs everything, every later one is a partial sync (LabDataplane.program),
//   and kube-proxy also syncs every 30 s whatever changed (deleting the chains it left stale);
// - the agent serves its control plane's metrics where the real one does (ControlPlane.metricsUrl in
//   the worker's network namespace, metrics-endpoint.ts): the duration of each family's sync, and the
//   time from each Service's change to its write (kube-proxy: per family, for Services created; the
//   Cilium agent: per Service event, created or deleted), from what the lab dataplane did (agent-metrics.ts);
// - a deleted DaemonSet pod on the worker comes back under a new name; when it is the dataplane's
//   control plane, the agent stops, its metrics endpoint answers 503, and it restarts once the API
//   changes again (the campaign creates a Service while it is away) or after RESTART_WAIT_MS: its
//   first sync is a restart (kube-proxy's first sync, the Cilium agent restoring its maps), its
//   metrics start again from zero, and then the new pod is ready.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, watch, writeFileSync, type FSWatcher } from "node:fs";
import { createServer, type Server } from "node:net";
import path from "node:path";
import os from "node:os";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { clusterDataplane, type ControlPlane } from "../../infra/cluster/dataplanes/index.js";
import type { Scenario } from "../../scenario/schema.js";
import type { ServiceSet } from "../../workloads/service-model.js";
import { exec, run } from "../../lab/netns.js";
import type { LabTopology } from "../../lab/topology.js";
import type { LabDataplane } from "../../lab/dataplanes/types.js";
import type { ServiceEndpoints } from "../../lab/dataplanes/kube-proxy-inputs.js";
import { ebpfLoadBalancer } from "../../lab/dataplanes/ebpf/module.js";
import { LB_MAPS } from "../../lab/dataplanes/ebpf/service-maps.js";
import { namespacedName } from "../../lab/dataplanes/kube-proxy-inputs.js";
import { inCgroup } from "../../lab/pod-cgroups.js";
import { EXEC_SOCKET, KubeApi, matchesLabelSelector, schedulableNodes, selects, serviceSpecOf, templateHash, type ExecFrame, type ExecRequest, type KubeObject, type PodSandbox, type PodStatus } from "./api.js";
import { AgentMetrics } from "./agent-metrics.js";
import { CHECKOUT } from "../hosts.js";

/** How long a deleted control plane stays away when the API does not change meanwhile (a container's start). */
const RESTART_WAIT_MS = 5000;
/** kube-proxy's periodic sync (its syncPeriod's default): a sync with nothing changed, which deletes the chains earlier syncs left stale. */
const KUBE_PROXY_SYNC_PERIOD_MS = 30_000;
const METRICS_ENDPOINT = path.join(CHECKOUT, "rehearsal/kubernetes/metrics-endpoint.ts");
const TSX = pathToFileURL(path.join(CHECKOUT, "node_modules/tsx/dist/esm/index.mjs")).href;

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
  volumes?: { name: string; hostPath?: { path: string; type?: string }; emptyDir?: unknown }[];
  terminationGracePeriodSeconds?: number;
}

/** A pod the kubelet runs. */
interface RunningPod {
  status: PodStatus;
  /** The main container's process tree (nsenter, which waits for it). */
  child?: ChildProcess;
  stopping: boolean;
  readonly sandbox: PodSandbox;
}

export interface NodeAgentOptions {
  readonly topology: LabTopology;
  readonly api: KubeApi;
  readonly scenario: Scenario;
  readonly dataplane: LabDataplane;
  /** The node whose dataplane the agent programs (worker 1). */
  readonly workerNode: string;
  /** The nodes whose kubelet runs here, by node name, each with its PID 1 as this machine numbers it (NamespaceHost.initPid). */
  readonly nodeInitPids: Readonly<Record<string, () => number>>;
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
  /** The worker's dataplane, as its control plane runs it. */
  private readonly controlPlane: ControlPlane;
  /** Whether the dataplane's first sync is done: every later one is partial. */
  private synced = false;
  /** The Services of the last sync, by namespace/name. */
  private programmedServices = new Set<string>();
  /** When the agent first saw a change it has not programmed yet, ms. */
  private changeSeenAt: number | undefined;
  /** The control plane is away (its pod deleted), since the API's resourceVersion then. */
  private away: { resourceVersion: number; timer: NodeJS.Timeout } | undefined;
  /** Its next sync is the first of a restarted control plane. */
  private restarting = false;
  /** Deleted pods already replaced. */
  private readonly replaced = new Set<string>();
  private metrics: AgentMetrics;
  private metricsServer?: ChildProcess;
  private execServer?: Server;
  /** The Services of the last sync with their endpoints: what a periodic sync writes again. */
  private lastEndpoints: ServiceEndpoints[] = [];
  private periodic?: NodeJS.Timeout;

  constructor(private readonly o: NodeAgentOptions) {
    this.controlPlane = clusterDataplane(o.scenario.dataplane).controlPlane;
    this.metrics = this.newMetrics();
  }

  set programDelayMs(ms: number) {
    this.o.programDelayMs = ms;
  }

  /** A control plane's metrics as a new process registers them; not the bpf(2) call durations, which the lab's map writer does not time one by one. */
  private newMetrics(): AgentMetrics {
    const { sync, programming } = this.controlPlane.metrics;
    return new AgentMetrics(sync ? [sync, programming] : [programming]);
  }

  /** Where the agent's metrics are written for the endpoint. */
  private get metricsFile(): string {
    return path.join(this.o.api.dir, "agent-metrics.prom");
  }

  private writeMetrics(): void {
    const tmp = `${this.metricsFile}.tmp`;
    writeFileSync(tmp, this.metrics.text());
    renameSync(tmp, this.metricsFile);
  }

  /** Serves the control plane's metrics in the worker's network namespace; resolves once it listens. */
  async serveMetrics(): Promise<void> {
    const url = new URL(this.controlPlane.metricsUrl);
    this.writeMetrics();
    const child = spawn("ip", ["netns", "exec", this.o.topology.namespace("worker"), process.execPath, "--import", TSX, METRICS_ENDPOINT, this.metricsFile, url.hostname, url.port], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.metricsServer = child;
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout! }).once("line", (line) => (line === "listening" ? resolve() : reject(new Error(`metrics endpoint: ${line}`))));
      child.once("exit", (code) => reject(new Error(`the metrics endpoint on ${url.host} in the worker exited (${code}): ${stderr.trim()}`)));
    });
  }

  start(): void {
    mkdirSync(this.podLogDir, { recursive: true });
    this.watcher = watch(this.o.api.dir, (_, file) => {
      if (file === "objects.json") this.reconcile();
    });
    this.reconcile();
    // kube-proxy syncs periodically whatever changed; the Cilium agent's maps have no stale chains to delete.
    if (clusterDataplane(this.o.scenario.dataplane).kubeProxyMode !== undefined) {
      this.periodic = setInterval(() => {
        this.programming = this.programming.then(() => this.periodicSync()).catch((err: unknown) => this.o.log(`dataplane agent: ${(err as Error).message}`));
      }, KUBE_PROXY_SYNC_PERIOD_MS);
    }
  }

  /** kube-proxy's periodic sync: a partial sync of what it holds, counted in its metrics. */
  private async periodicSync(): Promise<void> {
    if (this.stopped || this.away || !this.synced) return;
    const write = await this.o.dataplane.program({ endpoints: this.lastEndpoints, how: "partial", family: this.o.scenario.families[0]! });
    const { sync } = this.controlPlane.metrics;
    if (sync) for (const f of write.families) this.metrics.observe(sync, f.syncS);
    this.writeMetrics();
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
        this.replaceDeletedPods();
        this.changeSeenAt ??= Date.now();
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
    const nodes = this.o.api.cluster().nodes.filter((n) => this.o.nodeInitPids[n.name] !== undefined);
    for (const [key, d] of wanted) {
      if (this.pods.has(key)) continue;
      const sandbox = sandboxes[d.metadata.name];
      const node = sandbox?.node ?? this.o.workerNode;
      const fits = schedulableNodes(d, nodes);
      if (!sandbox || !fits.includes(node)) {
        this.o.log(`kubelet: no pod sandbox for deployment ${key} on a node it may run on (${fits.join(", ") || "none"}); it stays pending`);
        continue;
      }
      await this.startPod(key, d, { ...sandbox, node });
    }
  }

  private writeStatus(): void {
    const status = this.o.api.status();
    status.pods = [...this.pods.values()].map((p) => p.status);
    this.o.api.writeStatus(status);
  }

  private async startPod(key: string, d: KubeObject, sandbox: PodSandbox & { node: string }): Promise<void> {
    const spec = (d.spec as { template: { metadata?: { labels?: Record<string, string> }; spec: PodSpec } }).template;
    const hash = templateHash(d);
    const status: PodStatus = {
      namespace: d.metadata.namespace!,
      name: `${d.metadata.name}-${hash}-${Math.random().toString(36).slice(2, 7)}`,
      owner: d.metadata.name,
      templateHash: hash,
      labels: spec.metadata?.labels ?? {},
      nodeName: sandbox.node,
      ips: sandbox.ips,
      netns: sandbox.netns,
      containers: spec.spec.containers.map((c) => c.name),
      ready: false,
      hostNetwork: false,
    };
    const pod: RunningPod = { status, stopping: false, sandbox };
    this.pods.set(key, pod);
    this.writeStatus();
    const podDir = path.join(this.o.topology.runDir, "pods", status.name);
    for (const c of spec.spec.initContainers ?? []) {
      const code = await new Promise<number>((resolve) => this.runContainer(spec.spec, c, sandbox, podDir, status.name).once("exit", (c2) => resolve(c2 ?? 1)));
      if (code !== 0) {
        this.o.log(`kubelet: init container ${c.name} of ${status.name} exited with ${code}; the pod stays pending`);
        return;
      }
    }
    const main = spec.spec.containers[0]!;
    if (spec.spec.containers.length > 1) this.o.log(`kubelet: ${status.name} has ${spec.spec.containers.length} containers; only ${main.name} runs`);
    // The pause image: a process called pause that sleeps in the sandbox, as on a node.
    const pause = main.command === undefined && main.args === undefined;
    const container = pause ? { ...main, command: [this.pauseBinary(), "infinity"] } : main;
    if (pause) {
      pod.status = { ...status, ready: true };
      this.writeStatus();
    }
    const startMain = () => {
      const child = this.runContainer(spec.spec, container, sandbox, podDir, status.name);
      pod.child = child;
      child.once("exit", (code, signal) => {
        if (pod.stopping || this.stopped) return;
        this.o.log(`kubelet: container ${main.name} of ${status.name} exited (${signal ?? code}); restarting it`);
        pod.status = { ...pod.status, ready: false };
        this.writeStatus();
        startMain();
        void this.untilReady(pod, main);
      });
    };
    startMain();
    if (!pause) await this.untilReady(pod, main);
  }

  /** sleep under the name pause (a process's name is the name it was started by). */
  private pauseBinary(): string {
    const link = path.join(this.o.topology.runDir, "bin", "pause");
    if (!existsSync(link)) {
      mkdirSync(path.dirname(link), { recursive: true });
      symlinkSync("/bin/sleep", link);
    }
    return link;
  }

  /**
   * A deleted DaemonSet pod on the worker comes back under a new name, not ready until its agent
   * runs; the dataplane's control plane stops until it restarts.
   */
  private replaceDeletedPods(): void {
    const objects = this.o.api.objects();
    // Away since its pod's deletion: any later change of the API brings it back.
    if (this.away && objects.resourceVersion > this.away.resourceVersion) this.comeBack();
    const deleted = Object.keys(objects.podDeletions ?? {}).filter((name) => !this.replaced.has(name));
    if (deleted.length === 0) return;
    const status = this.o.api.status();
    const replacements = { ...(status.replaced ?? {}) };
    for (const system of this.o.api.cluster().systemPods) {
      const now = replacements[system.name] ?? system;
      if (!deleted.includes(now.name) || now.nodeName !== this.o.workerNode) continue;
      this.replaced.add(now.name);
      const agent = matchesLabelSelector(now.labels, this.controlPlane.podLabel);
      replacements[system.name] = { ...now, name: `${now.owner}-${Math.random().toString(36).slice(2, 7)}`, ready: !agent };
      if (agent && !this.away) {
        this.o.log(`dataplane agent: ${this.controlPlane.name} on the worker stops (pod ${now.name} deleted)`);
        rmSync(this.metricsFile, { force: true });
        this.away = { resourceVersion: objects.resourceVersion, timer: setTimeout(() => this.comeBack(), RESTART_WAIT_MS) };
      }
    }
    status.replaced = replacements;
    this.o.api.writeStatus(status);
  }

  /** The restarted control plane: new metrics, and its first sync a restart. */
  private comeBack(): void {
    if (!this.away || this.stopped) return;
    clearTimeout(this.away.timer);
    this.away = undefined;
    this.restarting = true;
    this.metrics = this.newMetrics();
    this.programmedKey = "";
    this.scheduleProgramming();
  }

  /** The restarted control plane's pod is ready. */
  private agentReady(): void {
    const status = this.o.api.status();
    const replacements = status.replaced ?? {};
    for (const [original, pod] of Object.entries(replacements)) {
      if (pod.nodeName === this.o.workerNode && !pod.ready && matchesLabelSelector(pod.labels, this.controlPlane.podLabel)) replacements[original] = { ...pod, ready: true };
    }
    this.o.api.writeStatus(status);
  }

  /** Polls the container's readiness probe in the container, as the kubelet does, until it passes. */
  private async untilReady(pod: RunningPod, c: Container): Promise<void> {
    const probe = c.readinessProbe?.exec?.command;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    const child = pod.child;
    const passes = (argv: readonly string[]) => {
      const target = this.containerPid(pod.status);
      return target !== undefined && exec(this.inContainer(pod, target, argv)).status === 0;
    };
    while (probe && !passes(probe)) {
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
   * Starts a container: in its node's mount and PID namespaces and root, PID, mount and UTS namespaces
   * of its own (the pod's name as host name) with the pod's volumes, the sandbox's network namespace,
   * the pod's cgroup where it has one, its own command.
   */
  private runContainer(pod: PodSpec, c: Container, sandbox: PodSandbox & { node: string }, podDir: string, podName: string): ChildProcess {
    const argv = [...(c.command ?? []), ...(c.args ?? [])];
    const setup = `set -e\nhostname '${podName}'\n${volumeMounts(pod, c, podDir, podName).join("\n")}\nexec nsenter --net=/run/netns/${sandbox.netns} -- "$@"`;
    const initPid = this.o.nodeInitPids[sandbox.node];
    if (!initPid) throw new Error(`pod ${podName}: no kubelet on node ${sandbox.node}`);
    const start = [
      "nsenter", "--target", String(initPid()), "--mount", "--pid", "--uts", "--root", "--wd", "--",
      "unshare", "--pid", "--fork", "--mount", "--mount-proc", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", setup, "container", ...argv,
    ];
    const [command, ...args] = sandbox.cgroup ? inCgroup(sandbox.cgroup, start) : start;
    const child = spawn(command!, args, { stdio: ["ignore", "pipe", "pipe"] });
    const log = createWriteStream(path.join(this.podLogDir, `${podName}_${c.name}.log`), { flags: "a" });
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    child.once("exit", () => log.end());
    return child;
  }

  /** The host PID of a running pod's container process (PID 1 of its PID namespace, in the pod's network namespace). */
  private containerPid(pod: PodStatus): number | undefined {
    for (const pid of exec(["ip", "netns", "pids", pod.netns]).stdout.split(/\s+/).filter(Boolean)) {
      try {
        if (/^NSpid:.*\s1$/m.test(readFileSync(`/proc/${pid}/status`, "utf8"))) return Number(pid);
      } catch {
        // Gone meanwhile.
      }
    }
    return undefined;
  }

  /** The argument array that runs argv in a container: its namespaces (mount, UTS, network, PID) and the pod's cgroup, as the CRI's exec does. */
  private inContainer(pod: RunningPod, target: number, argv: readonly string[]): string[] {
    const enter = ["nsenter", "--target", String(target), "--mount", "--uts", "--net", "--pid", "--root", "--wd", "--", ...argv];
    return pod.sandbox.cgroup ? inCgroup(pod.sandbox.cgroup, enter) : enter;
  }

  /** Takes `kubectl exec` into the pods this agent runs, on EXEC_SOCKET in the API's directory; resolves once it listens. */
  async serveExec(): Promise<void> {
    const socket = path.join(this.o.api.dir, EXEC_SOCKET);
    rmSync(socket, { force: true });
    const server = createServer((conn) => {
      const send = (f: ExecFrame) => conn.write(`${JSON.stringify(f)}\n`);
      const lines = createInterface({ input: conn });
      lines.once("line", (line) => {
        lines.close();
        let request: ExecRequest;
        try {
          request = JSON.parse(line) as ExecRequest;
        } catch {
          send({ error: "not a request" });
          conn.end();
          return;
        }
        const pod = [...this.pods.values()].find((p) => p.status.name === request.pod && p.status.namespace === request.namespace);
        const target = pod && this.containerPid(pod.status);
        if (!pod || target === undefined) {
          send({ error: `pod ${request.pod} in namespace ${request.namespace} has no running container` });
          conn.end();
          return;
        }
        const [command, ...args] = this.inContainer(pod, target, request.command);
        const child = spawn(command!, args, { stdio: ["ignore", "pipe", "pipe"] });
        child.stdout!.on("data", (d: Buffer) => send({ out: d.toString("base64") }));
        child.stderr!.on("data", (d: Buffer) => send({ err: d.toString("base64") }));
        child.once("error", (e) => {
          send({ error: e.message });
          conn.end();
        });
        child.once("close", (code, signal) => {
          send({ exit: code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1) });
          conn.end();
        });
        // A client that goes away (kubectl stopped by its bound) stops what it ran.
        conn.once("close", () => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        });
      });
    });
    this.execServer = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(socket, () => resolve());
    });
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
      const endpoints = ready.filter((p) => p.namespace === spec.namespace && selects(spec.selector, p.labels)).flatMap((p) => p.ips.map((ip) => ({ ip, local: p.nodeName === this.o.workerNode })));
      if (ips.length > 0) programmable.push({ service: spec, endpoints });
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
    if (this.stopped || this.programTimer || this.away) return;
    if (this.desired().key === this.programmedKey) return;
    this.programTimer = setTimeout(() => {
      this.programTimer = undefined;
      this.programming = this.programming.then(() => this.program()).catch((err: unknown) => this.o.log(`dataplane agent: ${(err as Error).message}`));
    }, this.o.programDelayMs ?? 0);
  }

  /**
   * Brings the worker's dataplane to the latest state: its first sync installs everything (setUp),
   * every later one writes the change (a partial sync, or a restarted control plane's first), and is
   * observed in the control plane's metrics.
   */
  private async program(): Promise<void> {
    if (this.stopped || this.away) return;
    const { endpoints, set, key } = this.desired();
    if (key === this.programmedKey) return;
    const startedAt = Date.now();
    const seenAt = this.changeSeenAt ?? startedAt;
    this.changeSeenAt = undefined;
    if (!this.synced) {
      if (endpoints.length > 0) {
        await this.o.dataplane.setUp({ services: endpoints.length, serviceSet: set, endpoints });
        this.synced = true;
      }
    } else {
      const write = await this.o.dataplane.program({ endpoints, how: this.restarting ? "restart" : "partial", family: this.o.scenario.families[0]! });
      this.observe(write.families, endpoints, startedAt, seenAt);
    }
    if (this.restarting) {
      this.restarting = false;
      this.agentReady();
      this.o.log(`dataplane agent: ${this.controlPlane.name} on the worker restarted`);
    }
    this.programmedServices = new Set(endpoints.map((e) => namespacedName(e.service)));
    this.lastEndpoints = endpoints;
    this.writeMetrics();
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

  /**
   * What the sync did, in the control plane's metrics: each family's sync, and for each Service it
   * brought in, the time from the Service's creation (the EndpointSlice's trigger time) to its
   * family's write (kube-proxy, a proxier per family), or to the whole write, also for each Service
   * it removed, from when the agent saw the event (the Cilium agent, one event per Service).
   */
  private observe(families: readonly { syncS: number }[], endpoints: readonly ServiceEndpoints[], startedAt: number, seenAt: number): void {
    const { sync, programming } = this.controlPlane.metrics;
    if (sync) for (const f of families) this.metrics.observe(sync, f.syncS);
    const objects = this.o.api.objects().objects;
    // Keys are Service/NAMESPACE/NAME (api.ts objectKey).
    const created = (name: string) => Date.parse(objects[`Service/${name}`]?.metadata.creationTimestamp ?? "");
    const now = new Set(endpoints.map((e) => namespacedName(e.service)));
    const added = [...now].filter((n) => !this.programmedServices.has(n));
    const removed = [...this.programmedServices].filter((n) => !now.has(n));
    let writtenAt = startedAt;
    const perFamily = clusterDataplane(this.o.scenario.dataplane).kubeProxyMode !== undefined;
    if (perFamily) {
      for (const f of families) {
        writtenAt += f.syncS * 1000;
        for (const n of added) if (Number.isFinite(created(n))) this.metrics.observe(programming, Math.max(0, writtenAt - created(n)) / 1000);
      }
      return;
    }
    const done = startedAt + families.reduce((s, f) => s + f.syncS * 1000, 0);
    for (const n of added) if (Number.isFinite(created(n))) this.metrics.observe(programming, Math.max(0, done - created(n)) / 1000);
    for (const _ of removed) this.metrics.observe(programming, Math.max(0, done - seenAt) / 1000);
  }

  /** Stops the pods and removes what the dataplane installed. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    clearTimeout(this.programTimer);
    clearInterval(this.periodic);
    if (this.away) clearTimeout(this.away.timer);
    this.metricsServer?.kill("SIGTERM");
    this.execServer?.close();
    await this.reconciling;
    await this.programming;
    for (const key of [...this.pods.keys()]) await this.stopPod(key);
    await this.o.dataplane.remove();
  }
}

/**
 * Pure: the shell lines that mount a container's volumes in its mount namespace: a hostPath (a
 * directory, made when missing, or with type File an existing file) or an emptyDir (a directory of the pod's).
 */
export function volumeMounts(pod: Pick<PodSpec, "volumes">, c: Pick<Container, "volumeMounts">, podDir: string, podName: string): string[] {
  return (c.volumeMounts ?? []).map((m) => {
    const v = pod.volumes?.find((x) => x.name === m.name);
    if (!v) throw new Error(`pod ${podName}: volume ${m.name} is not declared`);
    if (v.hostPath?.type === "File") {
      const file = v.hostPath.path;
      return `[ -f '${file}' ] || { echo 'hostPath ${file} is not a file' >&2; exit 1; }\nmkdir -p "$(dirname '${m.mountPath}')" && { [ -e '${m.mountPath}' ] || : > '${m.mountPath}'; } && mount --bind '${file}' '${m.mountPath}'`;
    }
    let source: string;
    if (v.hostPath) source = v.hostPath.path;
    else if (v.emptyDir !== undefined) source = path.join(podDir, "volumes", v.name);
    else throw new Error(`pod ${podName}: volume ${v.name} is neither hostPath nor emptyDir`);
    return `mkdir -p '${source}' '${m.mountPath}' && mount --bind '${source}' '${m.mountPath}'`;
  });
}
