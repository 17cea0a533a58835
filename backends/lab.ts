// The local lab as a campaign backend: the paper's client, router, worker and receiver pod as network
// namespaces on this host (lab/topology.ts), one topology per campaign, and at each step one Service
// dataplane (lab/dataplanes/: kube-proxy's iptables or nftables rules, or the tc eBPF load balancer)
// holding the Service set of that step, never two on the packet path at once.
//
// Traffic: ITGSend in the client namespace sends to the worker's address and the receiver's
// NodePorts (signaling NodePort -> pod port 9000; data NodePort = Service port = pod port), an
// ITGRecv in the pod namespace answers. ITGRecv bound to `::` serves both families: its data sockets
// are dual-stack, IPv4 flows arrive as ::ffff:a.b.c.d (checked on this lab). Every receiver pod runs
// two ITGRecv, each on its own signaling and data ports behind NodePorts of its own (scenario
// receiver.alternate), and the D-ITG flows alternate between them. The setup profile runs the
// connection-setup probe instead (connection-setup.ts). Logs live in the run's directory and go with
// the topology.
//
// Every dataplane runs on the same netfilter base: connection tracking follows every connection
// through the worker, as on a real node, where kubelet's and Cilium 1.17's own iptables rules (KUBE-
// FIREWALL, CILIUM_* with conntrack matches and MASQUERADE) turn it on whatever the Service dataplane;
// on kernel 5.4 Cilium's NodePort path to a local pod goes through the kernel stack and its
// conntrack. Here one count-only rule with a conntrack match stands for them, so the dataplanes
// differ only in kube-proxy's rules or the tc program. Conntrack is flushed at every step.
//
// Switching dataplanes within a step is cheap: the one leaving steps aside and keeps what it
// installed (parked, unreachable by packets) until its turn comes back at the same Service count, so
// the interleaved plan writes each dataplane once per step. At a new Service count each dataplane, on
// its turn, moves what it holds to the new Services by a partial sync, as its control plane does in a
// running cluster (stepSync "partial"); with stepSync "full" a new Service count removes them all and
// each installs the step by one full sync. The programming profile's runs change the step's Services
// through the dataplane (backends/lab-programming.ts) and leave them as they were.
//
// A D-ITG flow is handed back when ITGRecv prints that its data is in, and ITGRecv then waits a second
// before it closes the flow and takes no new session (backends/ditg-close-wait.ts). The next flow
// goes to the pod's other ITGRecv, on its other ports, and starts at once; a connection-setup run (not
// D-ITG) goes to the ports of the ITGRecv the next flow takes. A flow waits only for a closing flow
// of its own ITGRecv (the one two flows back, long closed unless the host stalls). A change of step, a
// conntrack flush, a receiver restart and the teardown wait until every closing flow is through: its
// ack crosses the dataplane.
//
// Paths (scenario/paths.ts, LabBackendOptions.paths): beyond the paper's, the lab has worker 2 with its
// receiver pod (nodeport-remote and clusterip put their only endpoint there) and a client pod on
// worker 1 (clusterip's sender); worker 1's dataplane holds each path's receiver Service besides the
// step's, two ITGRecv answer in each receiver pod, and each run goes along its own path. kube-proxy's
// two modes serve them all; the eBPF model serves nodeport-remote too (SNAT, or DSR with
// loadBalancerMode dsr) and is refused on clusterip (PATH_DATAPLANES).
//
// Hop probes (lab/hops/, unless turned off): tc programs at every boundary of the path stamp the
// packets of latency and setup runs, a reader collects the stamps of each run, and the decoder cuts
// the run into sections (measure/hops.ts). Each path has its own probes, compiled for the data ports
// of its receiver pod's two ITGRecv and attached where its packets pass; a run attaches its path's and detaches every other path's
// (they share hooks). They are detached for throughput runs.
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import ipaddr from "ipaddr.js";
import { cidrContains, parseCidr, type Family } from "../scenario/cidr.js";
import { DATAPLANES, RECEIVER_INSTANCES, receiverPortKeys, type Dataplane, type ReceiverInstance, type Scenario } from "../scenario/schema.js";
import { buildServiceSet, pathDataPort, pathReceiverPorts, pathReceiverService } from "../workloads/service-set.js";
import type { ServiceSet, ServiceSpec } from "../workloads/service-model.js";
import { DEFAULT_PATH, DEFAULT_PATHS, PATHS, workersNeeded, type ServicePath } from "../scenario/paths.js";
import { flowLogs, receiverCommand, senderCommand } from "../measure/ditg-commands.js";
import { ClosingFlows, FlowEnds } from "./ditg-close-wait.js";
import { LocalFlowLogs } from "./ditg-sender.js";
import { listeningTcpPorts } from "./loopback.js";
import { PhaseTimes } from "../measure/phase-times.js";
import { pathOf, type Backend, type CollectedLogs, type FlowOutcome, type RunKey, type RunProfile, type StepReadiness, type TrafficProfile } from "../measure/types.js";
import { plannedConnections, SourcePortPool } from "../measure/connection-setup.js";
import { runSetupProbe } from "../lab/connection-setup.js";
import { LAB_DATAPLANES, type LabDataplane, type StepSync } from "../lab/dataplanes/index.js";
import { DEFAULT_IPTABLES_BACKEND, iptablesTools, type IptablesBackend } from "../lab/dataplanes/iptables/kernel.js";
import { LAB_FAMILIES as FAMILIES, LAB_SERVICE_SUBNETS, labScenario, pathServiceEndpoints, serviceEndpoints } from "../lab/lab-scenario.js";
import { exec, inNamespace } from "../lab/netns.js";
import { createTopology, labHostProblem, type LabTopology, type Shaper } from "../lab/topology.js";
import { hopProbeHostProblem, HopProbes } from "../lab/hops/hop-probes.js";
import { LabProgramming, type HeldStep } from "./lab-programming.js";
import type { LoadBalancerMode } from "../lab/dataplanes/ebpf/node-config.js";

const OUTPUT_TAIL_CHARS = 2000;
/** Debian tools the lab runs, beyond its dataplanes' own. */
const LAB_TOOLS = [
  { tool: "ITGSend", probe: ["ITGSend", "-h"], debian: "d-itg" },
  { tool: "ITGRecv", probe: ["ITGRecv", "-h"], debian: "d-itg" },
  { tool: "conntrack", probe: ["conntrack", "--version"], debian: "conntrack" },
  { tool: "iptables-legacy-restore", probe: ["iptables-legacy-restore", "--version"], debian: "iptables" },
  { tool: "ip6tables-legacy-restore", probe: ["ip6tables-legacy-restore", "--version"], debian: "iptables" },
] as const;

/** The worker's own rule (see netfilterBase): filter FORWARD, count-only, tracks new connections. */
export const NODE_BASE_RULE = [
  "-t", "filter", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "testbed node base: conntrack in both dataplanes",
] as const;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Why the lab cannot run here (not Linux, not root, a tool missing), or undefined. Checks before anything is created. */
export function labProblem(): string | undefined {
  const host = labHostProblem();
  if (host) return host;
  const missing = LAB_TOOLS.filter(({ probe }) => {
    try {
      const r = exec(probe, { timeoutMs: 10_000 });
      return r.status === null || r.status === 127;
    } catch {
      return true;
    }
  });
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((m) => m.debian))];
    return `the local lab needs ${missing.map((m) => m.tool).join(", ")} (Debian: ${packages.join(", ")})`;
  }
  for (const dataplane of DATAPLANES) {
    const problem = LAB_DATAPLANES[dataplane].hostProblem();
    if (problem) return problem;
  }
  return hopProbeHostProblem();
}

/** What a step left in the kernel; handed to LabBackendOptions.onPrepared. */
export interface PreparedStep {
  readonly dataplane: Dataplane;
  readonly services: number;
  readonly serviceSet: ServiceSet;
  readonly topology: LabTopology;
  /** The dataplane on the packet path (its counts() read what it installed). */
  readonly module: LabDataplane;
  /** How it came to hold the step: installed (a full sync), moved from another step (a partial sync), or put back from parking ("none"). */
  readonly sync: "full" | "partial" | "none";
  /** Time to bring the dataplane to the step (the others stepping aside, rules or maps included), ms. */
  readonly installMs: number;
}

export interface LabBackendOptions {
  /** Cap of the access and datacenter links, Mbit/s; 0 turns it off. */
  readonly linkMbps: number;
  readonly shaper?: Shaper;
  readonly iptablesBackend?: IptablesBackend;
  /** Called after every prepare(), with the dataplane in place and no flow running. */
  readonly onPrepared?: (step: PreparedStep) => void | Promise<void>;
  /** Stamp latency and setup runs at every section boundary of the path (lab/hops/). Default true. */
  readonly hops?: boolean;
  /** How the dataplanes move between Service counts: "partial" (default), as a running cluster, or "full": one full sync per step. */
  readonly stepSync?: StepSync;
  /**
   * The Service paths to serve (scenario/paths.ts); default the paper's alone. Beyond it the lab
   * builds the workers and the client pod the paths need, and a receiver on each endpoint worker.
   */
  readonly paths?: readonly ServicePath[];
  /** Cilium's loadBalancer.mode for the eBPF model's remote NodePort backends (nodeport-remote): snat (default) or dsr. */
  readonly loadBalancerMode?: LoadBalancerMode;
}

/**
 * The dataplanes that serve each path in the lab: every one of them. The eBPF model serves the
 * paper's path and nodeport-remote with its tc NodePort program (SNAT, or DSR), and clusterip with its
 * socket load balancer on the client pod's cgroup. A dataplane left out of a path is refused on it.
 */
export const PATH_DATAPLANES: Readonly<Record<ServicePath, readonly Dataplane[]>> = {
  "nodeport-local": ["iptables", "nftables", "ebpf"],
  "nodeport-remote": ["iptables", "nftables", "ebpf"],
  clusterip: ["iptables", "nftables", "ebpf"],
};

/** Why a dataplane cannot serve these paths in the lab, or undefined. */
export function pathProblem(dataplane: Dataplane, paths: readonly ServicePath[]): string | undefined {
  const unserved = paths.filter((p) => !PATH_DATAPLANES[p].includes(dataplane));
  if (unserved.length === 0) return undefined;
  return `the lab's ${dataplane} dataplane does not serve ${unserved.map((p) => `${p} (served by ${PATH_DATAPLANES[p].join(", ")})`).join(", ")}`;
}

/**
 * Pure: how many Services other than the receiver's a dataplane forwards, per family: the ClusterIPs
 * it forwards (LabDataplane.forwardedClusterIps) inside the service subnets, the receiver's left out.
 * A step is measurable only when this is the step's Service count in every family: more means a
 * larger step's rules are still in place.
 */
export function heldServices(
  forwarded: readonly string[],
  set: ServiceSet,
  serviceSubnets: Readonly<Record<Family, string>>,
  /** The receivers of the paths beyond the paper's (their ClusterIPs are left out too). */
  pathReceivers: readonly ServiceSpec[] = [],
): Record<Family, number> {
  const canonical = (a: string) => ipaddr.parse(a).toString();
  const receiver = new Set([set.receiver, ...pathReceivers].flatMap((s) => Object.values(s.clusterIPs)).map(canonical));
  const subnets = { ipv4: parseCidr(serviceSubnets.ipv4)!, ipv6: parseCidr(serviceSubnets.ipv6)! };
  const held = { ipv4: 0, ipv6: 0 };
  for (const address of new Set(forwarded.map(canonical))) {
    const family: Family = address.includes(":") ? "ipv6" : "ipv4";
    if (!receiver.has(address) && cidrContains(subnets[family], address)) held[family]++;
  }
  return held;
}

/** One ITGRecv of a receiver pod. */
interface Receiver {
  /** The receiver pod's namespace role. */
  readonly role: string;
  readonly instance: ReceiverInstance;
  /** Names it in errors and among the closing flows: "pod ITGRecv 2". */
  readonly name: string;
  child: ReturnType<typeof spawn> | undefined;
  output: string;
  /** Its Finish lines: when each flow's data is in. */
  ends: FlowEnds;
}

/** Where one path's flows go in the lab: from which namespace, to which address and ports, answered by which receiver. */
interface PathTarget {
  readonly senderRole: string;
  /** The sender's own address. */
  readonly source: string;
  readonly address: string;
  readonly signalingPort: number;
  readonly dataPort: number;
  /** The ITGRecv that answers (its pod's namespace and which of its two). */
  readonly receiver: Receiver;
}

/** The other ITGRecv of a receiver pod. */
const otherInstance = (instance: ReceiverInstance): ReceiverInstance => (instance === 0 ? 1 : 0);

export class LabBackend implements Backend {
  readonly name = "lab";
  /** The Service paths this lab serves (LabBackendOptions.paths). */
  readonly paths: readonly ServicePath[];
  readonly profiles: readonly RunProfile[] = ["throughput", "latency", "setup", "programming"];
  /** Client and pod are namespaces of one host, on one clock: their one-way delays are valid. */
  readonly sharedClock = true;
  /** Two ITGRecv per receiver pod (worker 1's "pod", and each endpoint worker's of the paths), by role and instance. */
  private readonly receivers: Receiver[] = [];
  /** The ITGRecv (of whichever pod) the next D-ITG flow goes to: never the one the last flow closes on. */
  private nextInstance: ReceiverInstance = 0;
  /** D-ITG flows handed back at their data's end whose senders still wait for the receiver's close (ditg-close-wait.ts). */
  private readonly closing = new ClosingFlows();
  private readonly ports = new SourcePortPool();
  private readonly logs = new LocalFlowLogs();
  /** Where prepare() spends its time, phase by phase. */
  readonly phases = new PhaseTimes();
  /** Every registered dataplane on this lab's worker, whether the campaign runs it or not: each one checks that it is off the packet path when another runs. */
  private readonly dataplanes: Readonly<Record<Dataplane, LabDataplane>>;
  /** The Service count the dataplanes hold (parked or on the path). */
  private held: number | undefined;
  /** What each dataplane forwarded when it installed the held Service count, per family. */
  private readonly heldByDataplane = new Map<Dataplane, Record<Family, number>>();
  /** The hop probes of the paper's path, unless turned off. */
  hops: HopProbes | undefined;
  /** The hop probes of the other paths this lab serves, unless turned off. */
  readonly pathHops = new Map<ServicePath, HopProbes>();
  private current: { dataplane: Dataplane; services: number } | undefined;
  /** The prepared step's dataplane and Services, for the programming profile. */
  private heldStep: HeldStep | undefined;
  /** Service changes through the step's dataplane, timed (backends/lab-programming.ts). */
  readonly programming: LabProgramming;
  private tornDown = false;

  private constructor(
    readonly topology: LabTopology,
    readonly scenario: Scenario,
    private readonly options: LabBackendOptions,
    /** Where the flows' logs go: inside the run's directory. */
    readonly logDir: string,
  ) {
    this.paths = options.paths ?? DEFAULT_PATHS;
    for (const role of new Set(this.paths.map((p) => this.receiverRoleOf(p)))) {
      for (const instance of RECEIVER_INSTANCES) this.receivers.push({ role, instance, name: `${role} ITGRecv ${instance + 1}`, child: undefined, output: "", ends: new FlowEnds() });
    }
    const context = {
      topology,
      scenario,
      iptablesBackend: options.iptablesBackend ?? DEFAULT_IPTABLES_BACKEND,
      stepSync: options.stepSync ?? "partial",
      ...(options.loadBalancerMode ? { loadBalancerMode: options.loadBalancerMode } : {}),
    };
    this.dataplanes = Object.fromEntries(DATAPLANES.map((d) => [d, LAB_DATAPLANES[d].create(context)])) as Record<Dataplane, LabDataplane>;
    // A programming run rewrites the step's tables: the next prepare() counts them again.
    this.programming = new LabProgramming(topology, scenario, () => (this.current ? this.heldStep : undefined), (d) => this.heldByDataplane.delete(d));
  }

  /** Builds the network, the netfilter base and the receiver. Everything is removed again on failure. */
  static async start(options: LabBackendOptions): Promise<LabBackend> {
    const problem = labProblem();
    if (problem) throw new Error(problem);
    const paths = options.paths ?? DEFAULT_PATHS;
    const topology = createTopology({
      linkMbps: options.linkMbps,
      ...(options.shaper ? { shaper: options.shaper } : {}),
      workers: Math.max(...paths.map(workersNeeded)),
      ...(paths.includes("clusterip") ? { clientPod: { serviceSubnets: LAB_SERVICE_SUBNETS } } : {}),
    });
    let backend: LabBackend | undefined;
    try {
      const logDir = join(topology.runDir, "logs");
      mkdirSync(logDir, { recursive: true });
      backend = new LabBackend(topology, labScenario(topology, paths), options, logDir);
      backend.netfilterBase();
      if (options.hops !== false) {
        for (const path of paths) {
          const probes = HopProbes.load(topology, { dataPort: pathDataPort(backend.scenario, path, 0), alternateDataPort: pathDataPort(backend.scenario, path, 1), path });
          if (path === DEFAULT_PATH) backend.hops = probes;
          else backend.pathHops.set(path, probes);
        }
      }
      for (const receiver of backend.receivers) await backend.startReceiver(receiver);
      return backend;
    } catch (error) {
      if (backend) await backend.teardown().catch(() => undefined);
      else topology.destroy();
      throw error;
    }
  }

  private get iptablesBackend(): IptablesBackend {
    return this.options.iptablesBackend ?? DEFAULT_IPTABLES_BACKEND;
  }

  /**
   * The node's own netfilter rule, whatever the dataplane: a conntrack match makes the kernel track every
   * connection through the worker (an empty table would not). It counts and decides nothing.
   */
  private netfilterBase(): void {
    for (const family of FAMILIES) {
      const { iptables } = iptablesTools(family, this.iptablesBackend);
      this.topology.run("worker", [iptables, "-w", "60", ...NODE_BASE_RULE]);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Dataplane.

  /** The step the dataplane holds now, if any. */
  get step(): { dataplane: Dataplane; services: number } | undefined {
    return this.current && { ...this.current };
  }

  async prepare(step: { dataplane: Dataplane; services: number }): Promise<StepReadiness> {
    const unserved = pathProblem(step.dataplane, this.paths);
    if (unserved) throw new Error(`${step.dataplane} step with ${step.services} Services: ${unserved}`);
    const set = buildServiceSet(this.scenario, step.services);
    const target = this.dataplanes[step.dataplane];
    this.current = undefined;
    // A closing flow's ack crosses the dataplane and conntrack: both stay until it is through.
    await this.phases.time("wait for closing flows", () => this.closing.settle());
    const start = performance.now();
    // The probes come off while the dataplanes change: the next run attaches the connect call's
    // hooks after whatever socket hooks the step's dataplane attaches (lab/hops/hop-probes.ts).
    for (const probes of this.pathHops.values()) if (probes.connectCgroups) probes.disable();
    // Off first, then on: two dataplanes never serve Services at the same time.
    await this.phases.time("step aside", async () => {
      for (const d of Object.values(this.dataplanes)) if (d !== target) await d.stepAside();
    });
    if (this.held !== step.services && (this.options.stepSync ?? "partial") === "full") {
      // Another Service count, one full sync per step: what the others parked is of no use any more.
      await this.phases.time("remove the last step", async () => {
        for (const d of Object.values(this.dataplanes)) await d.remove();
      });
      this.heldByDataplane.clear();
    }
    this.held = step.services;
    const setUpStart = performance.now();
    const endpoints = [...serviceEndpoints(set, this.topology.addresses.pod), ...pathServiceEndpoints(this.scenario, this.topology.plan)];
    this.heldStep = undefined;
    const { sync } = await target.setUp({ services: step.services, serviceSet: set, endpoints });
    this.heldStep = { dataplane: step.dataplane, services: step.services, module: target, serviceSet: set, endpoints };
    this.phases.add(`${sync === "full" ? "install" : sync === "partial" ? "move" : "resume"} ${target.name}`, performance.now() - setUpStart);
    const installMs = performance.now() - start;
    await this.phases.time("check the packet path", () => this.checkOnlyOneDataplane(target));
    // What it forwards is read from the kernel whenever its tables changed: parking keeps them as they are.
    if (sync !== "none" || !this.heldByDataplane.has(target.name)) this.heldByDataplane.set(target.name, await this.phases.time("count the Services", async () => heldServices(await target.forwardedClusterIps(), set, this.scenario.kubernetes.serviceSubnets, this.pathReceivers())));
    const programmedServices = this.heldByDataplane.get(target.name)!;
    const wrong = FAMILIES.filter((f) => programmedServices[f] !== step.services);
    if (wrong.length > 0) {
      throw new Error(
        `${target.name} step with ${step.services} Services: the worker's dataplane forwards ${wrong.map((f) => `${programmedServices[f]} ${f} ClusterIPs`).join(" and ")} besides the receiver's; the step needs exactly ${step.services}`,
      );
    }
    await this.phases.time("flush conntrack", () => this.flushConntrack());
    this.current = { ...step };
    await this.options.onPrepared?.({
      dataplane: step.dataplane,
      services: step.services,
      serviceSet: set,
      topology: this.topology,
      module: target,
      sync,
      installMs,
    });
    return { endpointsReadyAfterS: 0, programmedAfterS: installMs / 1000, programmedServices };
  }

  /** Throws unless the kernel shows the step's dataplane, and no other, on the worker's packet path. */
  private async checkOnlyOneDataplane(target: LabDataplane): Promise<void> {
    for (const d of Object.values(this.dataplanes)) {
      const traces = await d.activeTraces();
      if (d === target && traces.length === 0) throw new Error(`${target.name} step: the ${d.name} dataplane is not on the packet path after its setup`);
      if (d !== target && traces.length > 0) throw new Error(`${target.name} step: the ${d.name} dataplane is still on the packet path: ${traces.join("; ")}`);
    }
  }

  /** Forgets every tracked connection: nf_conntrack in the worker, and what a dataplane tracks itself (the eBPF load balancer's CT maps). */
  flushConntrack(): void {
    for (const family of FAMILIES) this.topology.run("worker", ["conntrack", "-F", "-f", family]);
    for (const d of Object.values(this.dataplanes)) d.flushConnections();
    this.ports.reset();
  }

  // -------------------------------------------------------------------------------------------
  // Flows.

  private requirePrepared(key: RunKey): void {
    if (!this.current || this.current.dataplane !== key.dataplane || this.current.services !== key.services) {
      const now = this.current ? `${this.current.dataplane} with ${this.current.services} Services` : "nothing";
      throw new Error(`run ${key.dataplane}/${key.services} asked for, but the lab holds ${now}; prepare() the step first`);
    }
  }

  /** The receivers of the paths beyond the paper's. */
  private pathReceivers(): ServiceSpec[] {
    return this.paths.filter((p) => p !== DEFAULT_PATH).map((p) => pathReceiverService(this.scenario, p));
  }

  /** The namespace of the receiver pod a path's flows reach: its endpoint worker's. */
  private receiverRoleOf(path: ServicePath): string {
    const index = PATHS[path].endpointWorker;
    return index === 1 ? "pod" : `pod${index}`;
  }

  /** One ITGRecv of the receiver pod in this namespace. */
  private receiver(role: string, instance: ReceiverInstance): Receiver {
    const receiver = this.receivers.find((r) => r.role === role && r.instance === instance);
    if (!receiver) throw new Error(`no ITGRecv ${instance + 1} in ${role}; this lab runs ${this.receivers.map((r) => r.name).join(", ")}`);
    return receiver;
  }

  /** Where a run's flows go, by its path and family, to which of its receiver pod's two ITGRecv. */
  private targetOf(key: RunKey, instance: ReceiverInstance): PathTarget {
    const path = pathOf(key);
    if (!this.paths.includes(path)) throw new Error(`run on path ${path} asked for, but this lab serves ${this.paths.join(", ")}`);
    const ports = pathReceiverPorts(this.scenario, path, instance);
    const receiver = this.receiver(this.receiverRoleOf(path), instance);
    const node = this.topology.addresses.node[key.family];
    const client = this.topology.addresses.client[key.family];
    if (path === "clusterip") {
      const clusterIp = pathReceiverService(this.scenario, path).clusterIPs[key.family]!;
      const pod = this.topology.plan.clientPod!;
      return { senderRole: pod.role, source: pod.addresses[key.family], address: clusterIp, signalingPort: ports.signalingPort, dataPort: ports.dataPort, receiver };
    }
    return { senderRole: "client", source: client, address: node, signalingPort: ports.signalingNodePort!, dataPort: ports.dataPort, receiver };
  }

  async runFlow(key: RunKey, flow: { logName: string; durationS: number; traffic: TrafficProfile }): Promise<FlowOutcome> {
    this.requirePrepared(key);
    // The run's path's probes only: the paths' probes share hooks at the same priorities.
    const path = pathOf(key);
    // With DSR, worker 2 answers the client itself: the remote path's return points on worker 1 see
    // no reply, so those runs go unprobed and carry no sections.
    const direct = path === "nodeport-remote" && key.dataplane === "ebpf" && this.options.loadBalancerMode === "dsr";
    const probes = direct ? undefined : path === DEFAULT_PATH ? this.hops : this.pathHops.get(path);
    const hops = await this.phases.time("hop probes: attach, start the reader", async () => {
      for (const other of [this.hops, ...this.pathHops.values()]) if (other !== probes) other?.disable();
      return probes?.beginRun(key.profile, join(this.logDir, `${flow.logName}.hops`));
    });
    try {
      const outcome = await (key.profile === "setup" ? this.runSetup(key, flow) : this.runDitg(key, flow));
      return hops ? { ...outcome, hops: await this.phases.time("hop probes: stop the reader", () => hops.reader.stop(hops.keying)) } : outcome;
    } finally {
      hops?.reader.abandon();
    }
  }

  private async runDitg(key: RunKey, flow: { logName: string; durationS: number; traffic: TrafficProfile }): Promise<FlowOutcome> {
    const logs = flowLogs(flow.logName, { senderDir: this.logDir, receiverDir: this.logDir });
    // The ITGRecv the last flow did not go to: that one may still be closing it.
    const instance = this.nextInstance;
    this.nextInstance = otherInstance(instance);
    const target = this.targetOf(key, instance);
    const { receiver } = target;
    const cmd = senderCommand({
      traffic: flow.traffic,
      durationS: flow.durationS,
      target: { address: target.address, signalingPort: target.signalingPort, dataPort: target.dataPort },
      logs,
      linkMbps: this.options.linkMbps,
    });
    // A new session while ITGRecv closes another can crash it (ditg-close-wait.ts): a flow waits for
    // its own ITGRecv's closing flow, normally long through (the other ITGRecv took the flow between).
    await this.phases.time("wait for closing flows", () => this.closing.settle({ receiver: receiver.name }));
    const finishedBefore = receiver.ends.count(flow.traffic.protocol);
    const startedAt = new Date();
    const child = this.topology.spawn(target.senderRole, cmd.argv, { cwd: this.logDir, stdio: ["ignore", "pipe", "pipe"] });
    const sent = await this.closing.untilDataIn(child, cmd, {
      receiver: receiver.name,
      protocol: flow.traffic.protocol,
      ends: receiver.ends,
      finishedBefore,
      startedAt,
      durationS: flow.durationS,
    });
    return this.logs.remember(sent);
  }

  private async runSetup(key: RunKey, flow: { logName: string; durationS: number; traffic: TrafficProfile }): Promise<FlowOutcome> {
    const connections = plannedConnections(flow.traffic, flow.durationS);
    // The ports of the ITGRecv the next D-ITG flow takes: not those of the one the last flow closes on.
    const target = this.targetOf(key, this.nextInstance);
    const address = target.address;
    const grant = this.ports.take(address, connections);
    // The probe listens on the data port over TCP; a flush would cut every closing flow's ack off its NAT.
    await this.phases.time("wait for closing flows", () => this.closing.settle(grant.flushFirst ? {} : { receiver: target.receiver.name, protocol: flow.traffic.protocol }));
    if (grant.flushFirst) this.flushConntrack();
    const logPath = join(this.logDir, `${flow.logName}.setup.slog`);
    const startedAt = new Date();
    const { result, output } = await runSetupProbe(this.topology, {
      family: key.family,
      address,
      port: target.dataPort,
      roles: { client: target.senderRole, listener: target.receiver.role, source: target.source },
      traffic: flow.traffic,
      durationS: flow.durationS,
      ports: grant,
      logPath,
    });
    this.ports.used(address, result.nextPort);
    return { logPath, senderOutput: output, startedAt, endedAt: new Date() };
  }

  async collectLog(outcome: FlowOutcome): Promise<CollectedLogs> {
    // A flow handed back while closing: both logs are written before its Finish line (ITGSend writes
    // its log before it asks to close, ITGRecv flushes its own before it prints the line), so they
    // settle during the close; the sender's output is whole once it has exited.
    const collected = this.logs.collect(outcome);
    // Its failure is reported below, unless the sender's exit fails first.
    collected.catch(() => undefined);
    const senderOutput = await this.closing.exitOf(outcome.logPath);
    const logs = await collected;
    return { ...logs, ...(senderOutput === undefined ? {} : { senderOutput }), ...(outcome.hops ? { hops: outcome.hops } : {}) };
  }


  // -------------------------------------------------------------------------------------------
  // The receiver.

  private receiverRunning(receiver: Receiver): boolean {
    const child = receiver.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /**
   * Whether the ITGRecv listens on its signaling port: its namespace's socket table, read through its
   * process once that has entered the namespace, never a connection (a reset probe connection kills
   * ITGRecv). No command runs: the check comes before every flow.
   */
  private signalingListening(receiver: Receiver): boolean {
    const pid = receiver.child?.pid;
    if (pid === undefined || !inNamespace(pid, this.topology.namespace(receiver.role))) return false;
    // ITGRecv listens on `::` (dual-stack): the IPv6 table alone.
    return listeningTcpPorts(`/proc/${pid}/net`, ["tcp6"]).has(receiverPortKeys(this.scenario, receiver.instance).signalingPort);
  }

  private async startReceiver(receiver: Receiver): Promise<void> {
    // `-a ::`: one receiver for both families (see the top of this file).
    const argv = receiverCommand({ signalingPort: receiverPortKeys(this.scenario, receiver.instance).signalingPort, family: "ipv6" });
    const child = this.topology.spawn(receiver.role, argv, { cwd: this.logDir, stdio: ["ignore", "pipe", "pipe"] });
    receiver.child = child;
    receiver.output = "";
    // A new process counts its own Finish lines.
    const ends = new FlowEnds();
    receiver.ends = ends;
    child.stdout!.on("data", (d: Buffer) => ends.feed(d.toString()));
    child.stderr!.on("data", (d: Buffer) => (receiver.output = (receiver.output + d.toString()).slice(-OUTPUT_TAIL_CHARS)));
    const spawnError = new Promise<never>((_, reject) => child.once("error", (e) => reject(new Error(`cannot start ITGRecv: ${e.message}`))));
    // Until its socket is in the table or it exits: no deadline, which a loaded host's slow start-up would lose to.
    const listening = (async () => {
      while (!this.signalingListening(receiver)) {
        if (!this.receiverRunning(receiver)) throw new Error(`${receiver.name} exited at start: ${receiver.output.trim() || "no output"}`);
        await sleep(20);
      }
    })();
    await Promise.race([listening, spawnError]);
  }

  private async stopReceiver(receiver: Receiver): Promise<void> {
    const child = receiver.child;
    if (!child || !this.receiverRunning(receiver)) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
    await exited;
    clearTimeout(timer);
  }

  /** Process id of the ITGRecv in the paper's receiver pod that the next D-ITG flow to it reaches, while it runs. */
  get receiverPid(): number | undefined {
    const receiver = this.receivers.find((r) => r.role === "pod" && r.instance === this.nextInstance);
    return receiver && this.receiverRunning(receiver) ? receiver.child?.pid : undefined;
  }

  async receiverAlive(): Promise<boolean> {
    return this.receivers.every((r) => this.receiverRunning(r) && this.signalingListening(r));
  }

  async restartReceiver(): Promise<void> {
    await this.closing.settle();
    for (const receiver of this.receivers) {
      await this.stopReceiver(receiver);
      await this.startReceiver(receiver);
    }
  }

  /** Stops the receiver and removes the whole lab (namespaces, rules, tc programs, maps, logs). Safe to call twice. */
  async teardown(): Promise<void> {
    if (this.tornDown) return;
    this.tornDown = true;
    try {
      this.programming.stop();
      await this.closing.settle();
      for (const receiver of this.receivers) await this.stopReceiver(receiver);
    } finally {
      this.held = undefined;
      this.current = undefined;
      this.topology.destroy();
    }
  }
}

