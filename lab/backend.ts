// The local lab as a campaign backend: the paper's client, router, worker and receiver pod as network
// namespaces on this host (topology.ts), one topology per campaign, and at each step either
// kube-proxy's iptables rules (iptables-dataplane.ts) or the tc eBPF load balancer (ebpf-dataplane.ts)
// holding the Service set of that step, never both.
//
// Traffic: ITGSend in the client namespace sends to the worker's address and the receiver's
// NodePorts (signaling NodePort -> pod port 9000; data NodePort = Service port = pod port), one
// ITGRecv in the pod namespace answers. ITGRecv bound to `::` serves both families: its data sockets
// are dual-stack, IPv4 flows arrive as ::ffff:a.b.c.d (checked on this lab; two receivers, one per
// family, would need two signaling NodePorts). The setup profile runs the connection-setup probe
// instead (connection-setup.ts). Logs live in the run's directory and go with the topology.
//
// Both dataplanes run on the same netfilter base: connection tracking follows every connection
// through the worker, as on a real node, where kubelet's and Cilium 1.17's own iptables rules (KUBE-
// FIREWALL, CILIUM_* with conntrack matches and MASQUERADE) turn it on whatever the Service dataplane;
// on kernel 5.4 Cilium's NodePort path to a local pod goes through the kernel stack and its
// conntrack. Here one count-only rule with a conntrack match stands for them, so the dataplanes
// differ only in the KUBE-* rules or the tc program. Conntrack is flushed at every step.
//
// Hop probes (lab/hops/, unless turned off): tc programs at every boundary of the path stamp the
// packets of latency and setup runs, a reader collects the stamps of each run, and the decoder cuts
// the run into sections (measure/hops.ts). They are detached for throughput runs.
import { spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Family } from "../scenario/cidr.js";
import { parseScenario, PLACEHOLDERS, type Dataplane, type Scenario } from "../scenario/schema.js";
import { buildServiceSet } from "../workloads/service-set.js";
import type { ServiceSet } from "../workloads/service-model.js";
import { ditgJudge, type FlowJudge } from "../measure/campaign.js";
import { flowLogs, receiverCommand, senderCommand } from "../measure/ditg-commands.js";
import { awaitSender, LocalFlowLogs } from "../measure/ditg-sender.js";
import type { Backend, CollectedLogs, FlowOutcome, RunKey, TrafficProfile } from "../measure/types.js";
import { judgeSetup, plannedConnections, runSetupProbe, SourcePortPool } from "./connection-setup.js";
import { EBPF_DATAPLANE_PREF, ebpfHostProblem, setupEbpfDataplane, type EbpfDataplane } from "./ebpf-dataplane.js";
import { LB_MAPS } from "./ebpf/service-maps.js";
import {
  applyKubeProxyRules,
  DEFAULT_IPTABLES_BACKEND,
  iptablesTools,
  kubeProxyLeftovers,
  removeKubeProxyRules,
  type IptablesBackend,
} from "./iptables-dataplane.js";
import { kubeProxyRules, type KubeProxyRules, type ServiceEndpoints } from "./kube-proxy-rules.js";
import { hopProbeHostProblem, HopProbes } from "./hops/hop-probes.js";
import { exec, run } from "./netns.js";
import { createTopology, labHostProblem, type LabTopology, type Shaper } from "./topology.js";

const FAMILIES: readonly Family[] = ["ipv4", "ipv6"];
const RECEIVER_START_TIMEOUT_MS = 5000;
const OUTPUT_TAIL_CHARS = 2000;
/** Debian tools the lab runs, beyond the eBPF dataplane's. */
const LAB_TOOLS = [
  { tool: "ITGSend", probe: ["ITGSend", "-h"], debian: "d-itg" },
  { tool: "ITGRecv", probe: ["ITGRecv", "-h"], debian: "d-itg" },
  { tool: "conntrack", probe: ["conntrack", "--version"], debian: "conntrack" },
  { tool: "iptables-legacy-restore", probe: ["iptables-legacy-restore", "--version"], debian: "iptables" },
  { tool: "ip6tables-legacy-restore", probe: ["ip6tables-legacy-restore", "--version"], debian: "iptables" },
  { tool: "ss", probe: ["ss", "-V"], debian: "iproute2" },
] as const;

/** The worker's own rule (see netfilterBase): filter FORWARD, count-only, tracks new connections. */
export const NODE_BASE_RULE = [
  "-t", "filter", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "testbed node base: conntrack in both dataplanes",
] as const;

/** ClusterIPs of the lab's Services: benchmarking addresses, never routed anywhere. */
export const LAB_SERVICE_SUBNETS = { ipv4: "198.19.128.0/17", ipv6: "2001:2:0:ff::/112" } as const;

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
  return ebpfHostProblem() ?? hopProbeHostProblem();
}

/**
 * The scenario of the lab: the schema's defaults (receiver ports, NodePort range, traffic, seed),
 * the lab's own networks, and ClusterIPs from the benchmarking ranges. The cloud keys (admin CIDR,
 * SSH key) do not apply and hold the documented placeholders.
 */
export function labScenario(topology: Pick<LabTopology, "plan">): Scenario {
  const { links } = topology.plan;
  return parseScenario({
    // Both dataplanes run in the lab, step by step; the key only has to be valid.
    dataplane: "iptables",
    ...PLACEHOLDERS,
    network: {
      client: { ipv4: links.access.subnets.ipv4.text, ipv6: links.access.subnets.ipv6.text },
      datacenter: { ipv4: links.datacenter.subnets.ipv4.text, ipv6: links.datacenter.subnets.ipv6.text },
    },
    kubernetes: {
      podSubnets: { ipv4: links.pod.subnets.ipv4.text, ipv6: links.pod.subnets.ipv6.text },
      serviceSubnets: LAB_SERVICE_SUBNETS,
    },
  });
}

/**
 * Pure: every Service of the set with its one endpoint, the receiver pod, on this node, in the order
 * kube-proxy writes them. kube-proxy walks a Go map, so the receiver's rules land at a random place
 * among the NodePort Services' on every sync; here they sit in the middle, where they land on average:
 * a new connection to the receiver walks every ClusterIP rule of KUBE-SERVICES, then half of
 * KUBE-NODEPORTS.
 */
export function serviceEndpoints(set: ServiceSet, pod: Readonly<Record<Family, string>>): ServiceEndpoints[] {
  const endpoints = FAMILIES.map((family) => ({ ip: pod[family], local: true }));
  const middle = Math.floor(set.counts.nodePort / 2);
  const ordered = [...set.scaled.slice(0, middle), set.receiver, ...set.scaled.slice(middle)];
  return ordered.map((service) => ({ service, endpoints }));
}

/** Pure: the rule sets kube-proxy writes for the set on the lab's worker, one per family (pod link = cluster CIDR). */
export function labKubeProxyRules(set: ServiceSet, topology: Pick<LabTopology, "plan">): KubeProxyRules[] {
  const { plan } = topology;
  const services = serviceEndpoints(set, plan.addresses.pod);
  return FAMILIES.map((family) => kubeProxyRules(services, { family, clusterCIDR: plan.links.pod.subnets[family].text }));
}

/** What a step left in the kernel; handed to LabBackendOptions.onPrepared. */
export interface PreparedStep {
  readonly dataplane: Dataplane;
  readonly services: number;
  readonly serviceSet: ServiceSet;
  readonly topology: LabTopology;
  /** iptables mode: the rule sets written (their ruleCounts are what kube-proxy reports). */
  readonly ruleSets?: readonly KubeProxyRules[];
  /** ebpf mode: the load balancer. */
  readonly ebpf?: EbpfDataplane;
  /** Time to bring the dataplane to the step, rules or maps included, ms. */
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
}

/** The lab's verdict: D-ITG's for the D-ITG profiles, the probe's for connection setup. */
export const labJudge: FlowJudge = (output, decoded, expected) =>
  expected.profile === "setup"
    ? judgeSetup(output, decoded, plannedConnections(expected.traffic, expected.durationS))
    : ditgJudge(output, decoded, expected);

interface Receiver {
  child: ReturnType<typeof spawn> | undefined;
  output: string;
}

export class LabBackend implements Backend {
  readonly name = "lab";
  /** Client and pod are namespaces of one host, on one clock: their one-way delays are valid. */
  readonly sharedClock = true;
  private readonly receiver: Receiver = { child: undefined, output: "" };
  private readonly ports = new SourcePortPool();
  private readonly logs = new LocalFlowLogs();
  private ebpf: EbpfDataplane | undefined;
  /** The hop probes, unless turned off. */
  hops: HopProbes | undefined;
  private iptablesInstalled = false;
  private current: { dataplane: Dataplane; services: number } | undefined;
  private tornDown = false;

  private constructor(
    readonly topology: LabTopology,
    readonly scenario: Scenario,
    private readonly options: LabBackendOptions,
    /** Where the flows' logs go: inside the run's directory. */
    readonly logDir: string,
  ) {}

  /** Builds the network, the netfilter base and the receiver. Everything is removed again on failure. */
  static async start(options: LabBackendOptions): Promise<LabBackend> {
    const problem = labProblem();
    if (problem) throw new Error(problem);
    const topology = createTopology({ linkMbps: options.linkMbps, ...(options.shaper ? { shaper: options.shaper } : {}) });
    let backend: LabBackend | undefined;
    try {
      const logDir = join(topology.runDir, "logs");
      mkdirSync(logDir, { recursive: true });
      backend = new LabBackend(topology, labScenario(topology), options, logDir);
      backend.netfilterBase();
      if (options.hops !== false) backend.hops = HopProbes.load(topology, { dataPort: backend.scenario.receiver.dataPort });
      await backend.startReceiver();
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

  private get worker(): string {
    return this.topology.namespace("worker");
  }

  /**
   * The node's own netfilter rule, in both modes: a conntrack match makes the kernel track every
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

  async prepare(step: { dataplane: Dataplane; services: number }): Promise<void> {
    const set = buildServiceSet(this.scenario, step.services);
    this.current = undefined;
    const start = performance.now();
    let ruleSets: KubeProxyRules[] | undefined;
    // Off first, then on: the two dataplanes never hold Services at the same time.
    if (this.ebpf) {
      const ebpf = this.ebpf;
      this.ebpf = undefined;
      ebpf.teardown();
    }
    if (this.iptablesInstalled) {
      // Also between two iptables steps: a resync would leave the chains of Services that are gone.
      await removeKubeProxyRules(this.worker, FAMILIES, this.iptablesBackend);
      this.iptablesInstalled = false;
    }
    if (step.dataplane === "ebpf") {
      this.ebpf = setupEbpfDataplane(this.topology, { services: set });
    } else {
      ruleSets = labKubeProxyRules(set, this.topology);
      this.iptablesInstalled = true;
      await applyKubeProxyRules(this.worker, ruleSets, this.iptablesBackend);
    }
    const installMs = performance.now() - start;
    await this.checkOnlyOneDataplane(step.dataplane);
    this.flushConntrack();
    this.current = { ...step };
    await this.options.onPrepared?.({
      dataplane: step.dataplane,
      services: step.services,
      serviceSet: set,
      topology: this.topology,
      ...(ruleSets ? { ruleSets } : {}),
      ...(this.ebpf ? { ebpf: this.ebpf } : {}),
      installMs,
    });
  }

  /** Throws if the other dataplane left anything: KUBE-* chains in ebpf mode, a tc program in iptables mode. */
  private async checkOnlyOneDataplane(dataplane: Dataplane): Promise<void> {
    if (dataplane === "ebpf") {
      for (const family of FAMILIES) {
        const left = await kubeProxyLeftovers(this.worker, family, this.iptablesBackend);
        if (left.length > 0) throw new Error(`ebpf step: kube-proxy rules are still in place (${family}: ${left.map((t) => t.table).join(", ")})`);
      }
    } else {
      for (const direction of ["ingress", "egress"]) {
        // The eBPF dataplane's filter only: the hop probes' filters on the uplink stay for every dataplane.
        const filters = this.topology.run("worker", ["tc", "filter", "show", "dev", this.topology.plan.worker.uplink, direction, "pref", String(EBPF_DATAPLANE_PREF)]).trim();
        if (filters !== "") throw new Error(`iptables step: a tc filter is still attached at ${direction}: ${filters.split("\n")[0]}`);
      }
    }
  }

  /** Forgets every tracked connection: nf_conntrack in the worker, and the eBPF load balancer's CT maps. */
  flushConntrack(): void {
    for (const family of FAMILIES) this.topology.run("worker", ["conntrack", "-F", "-f", family]);
    if (this.ebpf) {
      for (const family of FAMILIES) {
        const map = this.ebpf.mapPath(LB_MAPS.conntrack[family]);
        const entries = JSON.parse(run(["bpftool", "-j", "map", "dump", "pinned", map], { timeoutMs: 120_000 })) as { key: string[] }[];
        if (entries.length === 0) continue;
        const batch = join(this.logDir, "ct-flush.batch");
        const lines = entries.map((e) => `map delete pinned ${map} key hex ${e.key.map((b) => b.replace(/^0x/, "")).join(" ")}`);
        writeFileSync(batch, `${lines.join("\n")}\n`);
        run(["bpftool", "batch", "file", batch], { timeoutMs: 120_000 });
        rmSync(batch, { force: true });
      }
    }
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

  async runFlow(key: RunKey, flow: { logName: string; durationS: number; traffic: TrafficProfile }): Promise<FlowOutcome> {
    this.requirePrepared(key);
    const hops = await this.hops?.beginRun(key.profile, join(this.logDir, `${flow.logName}.hops`));
    try {
      const outcome = await (key.profile === "setup" ? this.runSetup(key, flow) : this.runDitg(key, flow));
      return hops ? { ...outcome, hops: await hops.reader.stop(hops.keying) } : outcome;
    } finally {
      hops?.reader.abandon();
    }
  }

  private async runDitg(key: RunKey, flow: { logName: string; durationS: number; traffic: TrafficProfile }): Promise<FlowOutcome> {
    const logs = flowLogs(flow.logName, { senderDir: this.logDir, receiverDir: this.logDir });
    const { receiver } = this.scenario;
    const cmd = senderCommand({
      traffic: flow.traffic,
      durationS: flow.durationS,
      target: { address: this.topology.addresses.node[key.family], signalingPort: receiver.signalingNodePort, dataPort: receiver.dataPort },
      logs,
      linkMbps: this.options.linkMbps,
    });
    const startedAt = new Date();
    const child = this.topology.spawn("client", cmd.argv, { cwd: this.logDir, stdio: ["ignore", "pipe", "pipe"] });
    return this.logs.remember(await awaitSender(child, cmd, startedAt));
  }

  private async runSetup(key: RunKey, flow: { logName: string; durationS: number; traffic: TrafficProfile }): Promise<FlowOutcome> {
    const connections = plannedConnections(flow.traffic, flow.durationS);
    const address = this.topology.addresses.node[key.family];
    const grant = this.ports.take(address, connections);
    if (grant.flushFirst) this.flushConntrack();
    const logPath = join(this.logDir, `${flow.logName}.setup.slog`);
    const startedAt = new Date();
    const { result, output } = await runSetupProbe(this.topology, {
      family: key.family,
      address,
      port: this.scenario.receiver.dataPort,
      traffic: flow.traffic,
      durationS: flow.durationS,
      ports: grant,
      logPath,
    });
    this.ports.used(address, result.nextPort);
    return { logPath, senderOutput: output, startedAt, endedAt: new Date() };
  }

  async collectLog(outcome: FlowOutcome): Promise<CollectedLogs> {
    const logs = await this.logs.collect(outcome);
    return outcome.hops ? { ...logs, hops: outcome.hops } : logs;
  }


  // -------------------------------------------------------------------------------------------
  // The receiver.

  private receiverRunning(): boolean {
    const child = this.receiver.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  private signalingListening(): boolean {
    const port = this.scenario.receiver.signalingPort;
    // The socket table, never a connection: a reset probe connection kills ITGRecv.
    const r = this.topology.exec("pod", ["ss", "-H", "-l", "-t", "-n", "sport", "=", `:${port}`]);
    return r.status === 0 && r.stdout.trim() !== "";
  }

  private async startReceiver(): Promise<void> {
    // `-a ::`: one receiver for both families (see the top of this file).
    const argv = receiverCommand({ signalingPort: this.scenario.receiver.signalingPort, family: "ipv6" });
    const child = this.topology.spawn("pod", argv, { cwd: this.logDir, stdio: ["ignore", "ignore", "pipe"] });
    this.receiver.child = child;
    this.receiver.output = "";
    child.stderr!.on("data", (d: Buffer) => (this.receiver.output = (this.receiver.output + d.toString()).slice(-OUTPUT_TAIL_CHARS)));
    const spawnError = new Promise<never>((_, reject) => child.once("error", (e) => reject(new Error(`cannot start ITGRecv: ${e.message}`))));
    const deadline = Date.now() + RECEIVER_START_TIMEOUT_MS;
    const listening = (async () => {
      while (!this.signalingListening()) {
        if (!this.receiverRunning()) throw new Error(`ITGRecv exited at start: ${this.receiver.output.trim() || "no output"}`);
        if (Date.now() > deadline) throw new Error(`ITGRecv is not listening on port ${this.scenario.receiver.signalingPort} after ${RECEIVER_START_TIMEOUT_MS} ms`);
        await sleep(20);
      }
    })();
    await Promise.race([listening, spawnError]);
  }

  private async stopReceiver(): Promise<void> {
    const child = this.receiver.child;
    if (!child || !this.receiverRunning()) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
    await exited;
    clearTimeout(timer);
  }

  /** Process id of ITGRecv (in the pod namespace), while it runs. */
  get receiverPid(): number | undefined {
    return this.receiverRunning() ? this.receiver.child?.pid : undefined;
  }

  async receiverAlive(): Promise<boolean> {
    return this.receiverRunning() && this.signalingListening();
  }

  async restartReceiver(): Promise<void> {
    await this.stopReceiver();
    await this.startReceiver();
  }

  /** Stops the receiver and removes the whole lab (namespaces, rules, tc programs, maps, logs). Safe to call twice. */
  async teardown(): Promise<void> {
    if (this.tornDown) return;
    this.tornDown = true;
    try {
      await this.stopReceiver();
    } finally {
      this.ebpf = undefined;
      this.current = undefined;
      this.topology.destroy();
    }
  }
}

