// The cloud backend behind `testbed campaign --stack S`: a deployed Pulumi stack is the lab.
//
// What it reads from the stack (the Pulumi program must export these names):
//   outputs
//     bastionAddress       string   public address of the SSH jump host
//     bastionSshPort       number   optional, default 22
//     clientAddress        string   management address of the client VM (runs ITGSend)
//     masterAddress        string   management address of the control-plane node (runs kubectl)
//     ditgEndpoints        { ipv4?: {address, signalingPort, dataPort, alternate?}, ipv6?: {...} }
//                                   where the client sends each family's flows: the NodeIP as the
//                                   client reaches it, the signaling NodePort and the data port
//                                   (pod port = Service port = NodePort); alternate: {signalingPort,
//                                   dataPort} of the receiver pod's second ITGRecv (the flows
//                                   alternate between the two; a stack without it uses the first)
//     ditgReceiver         { namespace, deployment, nodeAddress, podLogDir, nodeLogDir }
//                                   the receiver Deployment, the management address of the node its
//                                   pod runs on, the directory ITGRecv writes `-x` logs to inside
//                                   the pod and the same directory on the node (a hostPath volume)
//     clientLogDir         string   optional, default /var/tmp/testbed-ditg: ITGSend's `-l` logs
//     step                 { services, endpointsReadyAfterS, programmedAfterS, programmedServices }
//                                   when the last applied step became measurable (infra/workloads.ts)
//     connectionSetupProbe { client, worker }   optional; needed by the setup profile: where the
//                                   stack built the connection-setup probe on the client and on
//                                   the receiver's node (measure/connection-setup-probe.c)
//     programmingProbe     { client, worker }   optional; needed by the programming profile: where the
//                                   stack built the programming probe (backends/cloud-programming.ts)
//     hostAddresses        optional: every host's addresses per network; the client's address on
//                                   the client network goes into the setup runs' logs
//   config
//     testbed:*            the scenario (scenario/schema.ts), read as the Pulumi program reads it
//     testbed:services     set by this backend before each step, followed by `pulumi up`, so the
//                          stack always describes what the lab runs
//     testbed:sshPrivateKey  secret: the private half of testbed:sshPublicKey, for SSH through the bastion
//
// The client, master and receiver node are reached over SSH with ProxyJump through the bastion;
// logs come back with scp over the management network, never over the measured path. A latency
// (rttm) run brings back two: the client's round trips and the receiver's `-x` log from the node,
// whose send stamps make them exact (D-ITG B15). Every flow names a `-x` log, so flows with and
// without `-x` never share one ITGRecv (notes B2).
// Pulumi and SSH sit behind StackControl and RemoteShell (measure/cloud-transport.ts holds the
// real ones), so the sequencing is tested with fakes.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path, { join } from "node:path";
import { readRawScenario } from "../infra/config.js";
import { clusterDataplane } from "../infra/cluster/dataplanes/index.js";
import { DEFAULT_WORKER_HOPS_DIR, sshWorkerShell, WorkerHops, type WorkerRun } from "./worker-hops/module.js";
import type { WorkerRole } from "./worker-hops/points.js";
import type { ReceiverLocator } from "./worker-hops/scripts.js";
import type { Family } from "../scenario/cidr.js";
import { CONFIG_NAMESPACE, FAMILIES, parseScenario, type Dataplane, type Scenario } from "../scenario/schema.js";
import {
  describeProbeResult,
  parseProbeOutput,
  plannedConnections,
  setupListenArgs,
  setupLog,
  setupProbeArgs,
  SourcePortPool,
} from "../measure/connection-setup.js";
import { STACK_BACKEND_PREFIX } from "../measure/campaign-plan.js";
import { flowLogs, receiverSessionError, senderCommand, shellCommand, type FlowTarget } from "../measure/ditg-commands.js";
import { pathOf, ReceiverSessionError, type Backend, type CollectedLogs, type FlowOutcome, type RunKey, type RunProfile, type StepReadiness, type TrafficProfile } from "../measure/types.js";
import { CloudProgramming, programmingProbeOutput } from "./cloud-programming.js";
import { mergeWorkerCaptures, type HopCapture } from "../measure/hops.js";
import { CLIENT_POD_PROCESS } from "../workloads/manifests.js";
import { DEFAULT_PATH, ENTRY_WORKER, PATHS, SERVICE_PATHS, type ServicePath } from "../scenario/paths.js";

/** The stack as the backend uses it: read outputs and config, change the Service count. */
export interface StackControl {
  readonly name: string;
  outputs(): Promise<Record<string, { value: unknown; secret?: boolean }>>;
  /** Every config key with its value, secrets in clear ("testbed:services" -> {value: "1000"}). */
  config(): Promise<Record<string, { value: string; secret?: boolean }>>;
  /** Sets testbed:services and runs `pulumi up`; resolves when the update has finished. */
  setServices(services: number): Promise<void>;
}

/**
 * The hosts of the lab reached over SSH: the bastion, the client VM, the control-plane node, worker 1
 * ("receiver": the paper's receiver runs there, and its dataplane translates every path's Service
 * address) and the further workers a path puts its receiver on (worker2, ...).
 */
export type RemoteHost = "bastion" | "client" | "master" | "receiver" | `worker${number}`;

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Commands on, and files from, the lab's hosts. */
export interface RemoteShell {
  /** Runs a POSIX shell command on the host. Rejects only when the transport fails (see SshError). */
  run(host: RemoteHost, command: string): Promise<CommandResult>;
  /** Copies a remote file to a local path. */
  fetch(host: RemoteHost, remotePath: string, localPath: string): Promise<void>;
  close(): Promise<void>;
}

/** What SSH needs, from the stack. */
export interface SshAccess {
  readonly user: string;
  readonly privateKey: string;
  readonly bastion: { address: string; port: number };
  readonly hosts: Readonly<Record<"client" | "master" | "receiver", string> & Partial<Record<`worker${number}`, string>>>;
}

/** A setup problem the user must fix (missing CLI, stack, output, key, SSH access). */
export class CloudSetupError extends Error {
  override name = "CloudSetupError";
}

interface ReceiverOutput {
  readonly namespace: string;
  readonly deployment: string;
  readonly nodeAddress: string;
  readonly podLogDir: string;
  readonly nodeLogDir: string;
}

/** Where a path's client sends from: the client VM, or a pod the campaign execs into from the control-plane node. */
export type CloudPathClient =
  | { readonly kind: "external" }
  | {
      readonly kind: "pod";
      readonly namespace: string;
      readonly deployment: string;
      /** The pod's node, where its sender logs land (nodeLogDir) and its dataplane translates. */
      readonly host: RemoteHost;
      readonly podLogDir: string;
      readonly nodeLogDir: string;
      /** The connection-setup probe inside the pod. */
      readonly setupProbe: string;
    };

/** One Service path as the stack serves it (its output `ditgPaths`), with the hosts it touches. */
export interface CloudPath {
  readonly name: ServicePath;
  /** Per family: where the client sends and on which ports. */
  readonly endpoints: Partial<Record<Family, FlowTarget>>;
  /** Per family: the same address and the ports of the receiver pod's second ITGRecv, where the stack exports them. */
  readonly alternates: Partial<Record<Family, FlowTarget>>;
  readonly receiver: ReceiverOutput;
  /** The host the receiver's pod runs on. */
  readonly receiverHost: RemoteHost;
  readonly client: CloudPathClient;
}

/** Where the stack built the connection-setup probe. */
export interface SetupProbePaths {
  readonly client: string;
  readonly worker: string;
}

export interface LabOutputs {
  readonly bastionAddress: string;
  readonly bastionSshPort: number;
  readonly clientAddress: string;
  readonly masterAddress: string;
  readonly ditgEndpoints: Partial<Record<Family, FlowTarget>>;
  readonly ditgReceiver: ReceiverOutput;
  readonly clientLogDir: string;
  /** Absent on a stack deployed before the setup profile: setup runs then refuse with how to fix it. */
  readonly connectionSetupProbe?: SetupProbePaths;
  /** The client's address on the client network, per family (the source of its flows). */
  readonly clientDataAddresses: Partial<Record<Family, string>>;
  /** Every path the stack serves: the paper's always (from ditgEndpoints and ditgReceiver), the others from `ditgPaths`. */
  readonly paths: Partial<Record<ServicePath, CloudPath>>;
  /** The management address of each worker host the paths reach beyond worker 1. */
  readonly workerHosts: Partial<Record<`worker${number}`, string>>;
}

const DEFAULT_CLIENT_LOG_DIR = "/var/tmp/testbed-ditg";
/** kubectl on the control-plane node, as kubeadm leaves it. */
const KUBECTL = "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf";

/** Reads and checks the outputs this backend needs; errors name the output and what it must hold. */
export function labOutputs(stack: string, outputs: Record<string, { value: unknown }>): LabOutputs {
  const missing = (name: string, what: string): never => {
    throw new CloudSetupError(
      `stack ${stack} has no usable output \`${name}\` (${what}); deploy the stack with \`pulumi up --stack ${stack}\`, whose program exports it`,
    );
  };
  const text = (name: string, what: string): string => {
    const v = outputs[name]?.value;
    return typeof v === "string" && v.length > 0 ? v : missing(name, what);
  };
  const endpoints: Partial<Record<Family, FlowTarget>> = {};
  const alternates: Partial<Record<Family, FlowTarget>> = {};
  const raw = outputs.ditgEndpoints?.value as Record<string, unknown> | undefined;
  for (const family of ["ipv4", "ipv6"] as const) {
    if (raw?.[family] === undefined) continue;
    const e = endpointTargets(raw[family]) ?? missing("ditgEndpoints", `${family}: ${ENDPOINT_FIELDS}`);
    endpoints[family] = e.target;
    if (e.alternate) alternates[family] = e.alternate;
  }
  if (Object.keys(endpoints).length === 0) missing("ditgEndpoints", `{ipv4: ${ENDPOINT_FIELDS}, ipv6: {...}}`);
  const r = outputs.ditgReceiver?.value as Partial<ReceiverOutput> | undefined;
  const receiverWhat = "{namespace, deployment, nodeAddress, podLogDir, nodeLogDir}";
  if (!r || (["namespace", "deployment", "nodeAddress", "podLogDir", "nodeLogDir"] as const).some((k) => typeof r[k] !== "string")) {
    missing("ditgReceiver", receiverWhat);
  }
  const port = outputs.bastionSshPort?.value;
  const clientLogDir = outputs.clientLogDir?.value;
  const probe = outputs.connectionSetupProbe?.value as Partial<SetupProbePaths> | undefined;
  if (probe !== undefined && (typeof probe.client !== "string" || typeof probe.worker !== "string")) {
    missing("connectionSetupProbe", "{client, worker}: where the stack built the connection-setup probe");
  }
  const hostAddresses = outputs.hostAddresses?.value as { client?: { client?: Partial<Record<Family, string>> } } | undefined;
  const receiver = r as ReceiverOutput;
  const { paths, workerHosts } = cloudPaths(stack, outputs.ditgPaths?.value, { endpoints, alternates, receiver });
  return {
    bastionAddress: text("bastionAddress", "the bastion's public address"),
    bastionSshPort: typeof port === "number" && Number.isInteger(port) ? port : 22,
    clientAddress: text("clientAddress", "the client VM's management address"),
    masterAddress: text("masterAddress", "the control-plane node's management address"),
    ditgEndpoints: endpoints,
    ditgReceiver: r as ReceiverOutput,
    clientLogDir: typeof clientLogDir === "string" && clientLogDir.length > 0 ? clientLogDir : DEFAULT_CLIENT_LOG_DIR,
    ...(probe !== undefined ? { connectionSetupProbe: probe as SetupProbePaths } : {}),
    clientDataAddresses: { ...(hostAddresses?.client?.client ?? {}) },
    paths,
    workerHosts,
  };
}

/**
 * Pure: the paths of a stack's `ditgPaths` output, each with the hosts it reaches. The paper's path
 * comes from ditgEndpoints and ditgReceiver (a stack deployed before paths has no ditgPaths). A node
 * is named by the worker the path definition puts the pod on (scenario/paths.ts): worker 1 is
 * "receiver", worker n is "worker<n>"; two paths that name one worker must name one address.
 */
export function cloudPaths(
  stack: string,
  raw: unknown,
  paper: { readonly endpoints: Partial<Record<Family, FlowTarget>>; readonly alternates?: Partial<Record<Family, FlowTarget>>; readonly receiver: ReceiverOutput },
): { paths: Partial<Record<ServicePath, CloudPath>>; workerHosts: Partial<Record<`worker${number}`, string>> } {
  const paths: Partial<Record<ServicePath, CloudPath>> = {
    [DEFAULT_PATH]: { name: DEFAULT_PATH, endpoints: paper.endpoints, alternates: paper.alternates ?? {}, receiver: paper.receiver, receiverHost: "receiver", client: { kind: "external" } },
  };
  const workerHosts: Partial<Record<`worker${number}`, string>> = {};
  const bad = (what: string): never => {
    throw new CloudSetupError(`stack ${stack} has no usable output \`ditgPaths\` (${what}); deploy the stack with \`pulumi up --stack ${stack}\`, whose program exports it`);
  };
  const hostOf = (path: ServicePath, worker: number, address: unknown): RemoteHost => {
    if (typeof address !== "string" || address.length === 0) bad(`${path}: the management address of worker ${worker}`);
    if (worker === ENTRY_WORKER) {
      if (address !== paper.receiver.nodeAddress) bad(`${path}: worker 1 is ${paper.receiver.nodeAddress} (ditgReceiver.nodeAddress), not ${String(address)}`);
      return "receiver";
    }
    const host = `worker${worker}` as const;
    const known = workerHosts[host];
    if (known !== undefined && known !== address) bad(`${path}: worker ${worker} is ${known} for another path, not ${String(address)}`);
    workerHosts[host] = address as string;
    return host;
  };
  if (raw === undefined) return { paths, workerHosts };
  if (typeof raw !== "object" || raw === null) bad("an object of paths");
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (!(SERVICE_PATHS as readonly string[]).includes(name)) bad(`${name}: not a path; accepted: ${SERVICE_PATHS.join(", ")}`);
    const path = name as ServicePath;
    if (path === DEFAULT_PATH) continue;
    const v = value as { endpoints?: Record<string, unknown>; receiver?: Partial<ReceiverOutput>; client?: Record<string, unknown> } | undefined;
    const endpoints: Partial<Record<Family, FlowTarget>> = {};
    const alternates: Partial<Record<Family, FlowTarget>> = {};
    for (const family of FAMILIES) {
      if (v?.endpoints?.[family] === undefined) continue;
      const e = endpointTargets(v.endpoints[family]) ?? bad(`${path}.endpoints.${family}: ${ENDPOINT_FIELDS}`);
      endpoints[family] = e.target;
      if (e.alternate) alternates[family] = e.alternate;
    }
    if (Object.keys(endpoints).length === 0) bad(`${path}.endpoints: {ipv4: ${ENDPOINT_FIELDS}, ...}`);
    const rv = v?.receiver;
    if (!rv || (["namespace", "deployment", "nodeAddress", "podLogDir", "nodeLogDir"] as const).some((k) => typeof rv[k] !== "string")) {
      bad(`${path}.receiver: {namespace, deployment, nodeAddress, podLogDir, nodeLogDir}`);
    }
    const def = PATHS[path];
    const receiverHost = hostOf(path, def.endpointWorker, rv!.nodeAddress);
    let client: CloudPathClient = { kind: "external" };
    if (def.client.kind === "pod") {
      const c = v?.client ?? {};
      if (c.kind !== "pod" || (["namespace", "deployment", "podLogDir", "nodeLogDir", "setupProbe"] as const).some((k) => typeof c[k] !== "string")) {
        bad(`${path}.client: {kind: "pod", namespace, deployment, nodeAddress, podLogDir, nodeLogDir, setupProbe}`);
      }
      client = {
        kind: "pod",
        namespace: c.namespace as string,
        deployment: c.deployment as string,
        host: hostOf(path, def.client.worker, c.nodeAddress),
        podLogDir: c.podLogDir as string,
        nodeLogDir: c.nodeLogDir as string,
        setupProbe: c.setupProbe as string,
      };
    }
    paths[path] = { name: path, endpoints, alternates, receiver: rv as ReceiverOutput, receiverHost, client };
  }
  return { paths, workerHosts };
}

/** What one family's endpoint of the stack's outputs holds. */
const ENDPOINT_FIELDS = "{address, signalingPort, dataPort, alternate?: {signalingPort, dataPort}}";

/**
 * Pure: one family's endpoint of a stack output: where the client sends, and where the receiver
 * pod's second ITGRecv answers at the same address (none when the stack exports none); undefined
 * when it holds something else.
 */
export function endpointTargets(value: unknown): { readonly target: FlowTarget; readonly alternate?: FlowTarget } | undefined {
  const e = value as (Partial<FlowTarget> & { alternate?: Partial<Pick<FlowTarget, "signalingPort" | "dataPort">> }) | null | undefined;
  if (!e || typeof e.address !== "string" || !Number.isInteger(e.signalingPort) || !Number.isInteger(e.dataPort)) return undefined;
  const target: FlowTarget = { address: e.address, signalingPort: e.signalingPort!, dataPort: e.dataPort! };
  if (e.alternate === undefined) return { target };
  const a = e.alternate;
  if (!a || !Number.isInteger(a.signalingPort) || !Number.isInteger(a.dataPort)) return undefined;
  return { target, alternate: { address: e.address, signalingPort: a.signalingPort!, dataPort: a.dataPort! } };
}

/**
 * Pure: the stack's `step` output for a step of `services` Services: when it became measurable and how
 * many Services the worker held per family. Throws, saying what the stack reports, when the output is
 * missing, describes another step, or the worker held another count.
 */
export function stepReadinessOf(stack: string, services: number, families: readonly Family[], output: unknown): StepReadiness {
  const step = output as { services?: unknown; endpointsReadyAfterS?: unknown; programmedAfterS?: unknown; programmedServices?: unknown } | undefined;
  const number = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
  if (!step || number(step.services) === undefined || number(step.endpointsReadyAfterS) === undefined || number(step.programmedAfterS) === undefined) {
    throw new CloudSetupError(
      `stack ${stack} has no usable output \`step\` ({services, endpointsReadyAfterS, programmedAfterS, programmedServices}) after its update; deploy it with \`pulumi up --stack ${stack}\`, whose program exports it`,
    );
  }
  if (step.services !== services) {
    throw new Error(`stack ${stack} reports its step at ${String(step.services)} Services after an update to ${services}: the update did not apply the step`);
  }
  // The count the gate found: one number (every family) or one per family.
  const held = step.programmedServices;
  const programmedServices: Partial<Record<Family, number>> = {};
  for (const family of families) {
    const n = typeof held === "object" && held !== null ? number((held as Record<string, unknown>)[family]) : number(held);
    if (n === undefined) {
      throw new CloudSetupError(`stack ${stack}'s output \`step\` says nothing of the Services the worker held (programmedServices.${family}); redeploy it with this testbed's program`);
    }
    if (n !== services) throw new Error(`stack ${stack}: the worker's dataplane held ${n} ${family} Services at the step of ${services}; a step is measured only on exactly its Services`);
    programmedServices[family] = n;
  }
  return { endpointsReadyAfterS: step.endpointsReadyAfterS as number, programmedAfterS: step.programmedAfterS as number, programmedServices };
}

/** The scenario a stack was deployed with, from its config, as the Pulumi program reads it. */
export function stackScenario(config: Record<string, { value: string }>): Scenario {
  return parseScenario(readRawScenario((k) => config[`${CONFIG_NAMESPACE}:${k}`]?.value));
}

/** `host:path` of a remote log, as FlowOutcome.logPath carries it. */
function remoteLog(host: RemoteHost, file: string): string {
  return `${host}:${file}`;
}

function parseRemoteLog(logPath: string): { host: RemoteHost; file: string } {
  const i = logPath.indexOf(":");
  return { host: logPath.slice(0, i) as RemoteHost, file: logPath.slice(i + 1) };
}

function lastLines(text: string, n = 3): string {
  return text.trim().split("\n").slice(-n).join(" / ");
}

export interface CloudBackendDeps {
  /** The stack; default: the real one through the Pulumi CLI. */
  readonly stack: StackControl;
  /** Builds the SSH shell from the stack's access data; default: ssh/scp through the bastion. */
  readonly shell: (access: SshAccess) => RemoteShell;
  /**
   * Time the worker's part of latency and setup runs with the hop probes (backends/worker-hops/),
   * built on the worker at the first such run and removed at teardown. Default true.
   */
  readonly hops?: boolean;
}

/** ITGSend's own end is its flow's; beyond this bound past it the sender is stopped and the run fails. */
const SENDER_GRACE_S = 60;

/** Runs the campaign on a deployed stack. Create with CloudBackend.open(). */
/** What a deployed stack measures: D-ITG's profiles, connection setup and Service changes (backends/cloud-programming.ts), on the real dataplane. */
export const CLOUD_PROFILES: readonly RunProfile[] = ["throughput", "latency", "setup", "programming"];

export class CloudBackend implements Backend {
  readonly name: string;
  readonly profiles = CLOUD_PROFILES;
  /** The paths the stack serves: those of its testbed:paths that its outputs describe. */
  readonly paths: readonly ServicePath[];
  /** Service changes through the API, timed by the probe and the control plane's metrics (backends/cloud-programming.ts). */
  programming!: CloudProgramming;
  private currentServices: number | undefined;
  private updatedOnce = false;
  /** Source ports of the setup probe: no 5-tuple twice between two flushes of the worker's connection tracking. */
  private readonly ports = new SourcePortPool();
  /** Logs this backend made here (setup runs): collectLog hands them back as they are. */
  private readonly localLogs = new Set<string>();
  /** The unmeasured (sender) log of each one-way flow, deleted with the measured one once collected. */
  private readonly unmeasured = new Map<string, string>();
  /** The worker's hop probes once installed; false when the campaign leaves them out. */
  private hops: Map<string, WorkerHops> | false;
  /** Which of the receiver pod's two ITGRecv the next D-ITG flow goes to (where the stack exports the second). */
  private nextInstance: 0 | 1 = 0;

  private constructor(
    private readonly stack: StackControl,
    private readonly shell: RemoteShell,
    readonly scenario: Scenario,
    readonly lab: LabOutputs,
    /** Local directory the logs are fetched into. */
    readonly localDir: string,
    hops: boolean,
  ) {
    this.hops = hops ? new Map() : false;
    this.name = `${STACK_BACKEND_PREFIX}${stack.name}`;
    this.paths = scenario.paths.filter((p) => lab.paths[p] !== undefined);
    this.currentServices = scenario.services;
  }

  /**
   * Reads the stack, checks every output and the SSH key, and checks that the client answers over
   * SSH through the bastion. Errors say what is missing and how to provide it.
   */
  static async open(deps: CloudBackendDeps): Promise<CloudBackend> {
    const { stack } = deps;
    const config = await stack.config();
    const scenario = stackScenario(config);
    const outputs = await stack.outputs();
    const lab = labOutputs(stack.name, outputs);
    const programmingProbe = programmingProbeOutput(stack.name, outputs);
    const key = config[`${CONFIG_NAMESPACE}:sshPrivateKey`]?.value;
    const setKey = `pulumi config set --stack ${stack.name} --secret ${CONFIG_NAMESPACE}:sshPrivateKey < ~/.ssh/id_ed25519`;
    if (!key) {
      throw new CloudSetupError(
        `stack ${stack.name} has no SSH private key in ${CONFIG_NAMESPACE}:sshPrivateKey (needed to reach the client through the bastion); set it with \`${setKey}\``,
      );
    }
    if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) {
      throw new CloudSetupError(
        `${CONFIG_NAMESPACE}:sshPrivateKey of stack ${stack.name} is not a private key file's text; accepted: the private half of ${CONFIG_NAMESPACE}:sshPublicKey (-----BEGIN OPENSSH PRIVATE KEY----- ...), set with \`${setKey}\``,
      );
    }
    const shell = deps.shell({
      user: scenario.openstack.sshUser,
      privateKey: key,
      bastion: { address: lab.bastionAddress, port: lab.bastionSshPort },
      hosts: { client: lab.clientAddress, master: lab.masterAddress, receiver: lab.ditgReceiver.nodeAddress, ...lab.workerHosts },
    });
    try {
      const probe = await shell.run("client", `mkdir -p ${lab.clientLogDir} && command -v ITGSend`);
      if (probe.code !== 0) {
        throw new CloudSetupError(`the client VM has no ITGSend on PATH (${lastLines(probe.stderr || probe.stdout) || `exit ${probe.code}`}); its cloud-init installs d-itg`);
      }
    } catch (err) {
      await shell.close();
      throw err;
    }
    const backend = new CloudBackend(stack, shell, scenario, lab, mkdtempSync(path.join(tmpdir(), "testbed-cloud-logs-")), deps.hops !== false);
    backend.programming = new CloudProgramming({ stack: stack.name, shell, scenario, endpoints: lab.ditgEndpoints, probe: programmingProbe });
    return backend;
  }

  /**
   * Sets the stack's Service count and updates it. The first step of a session always updates,
   * even when the count is unchanged: a campaign killed during `pulumi up` leaves the lab between
   * two states, and an update with nothing to change is cheap.
   */
  /**
   * The step's readiness: when it became measurable (the stack's `step` output, written by the apply
   * that the update ran) and what the worker held.
   */
  async prepare(step: { dataplane: Dataplane; services: number }): Promise<StepReadiness> {
    if (step.dataplane !== this.scenario.dataplane) {
      throw new CloudSetupError(
        `stack ${this.stack.name} runs the ${this.scenario.dataplane} dataplane, the campaign asked for ${step.dataplane}; accepted: ${this.scenario.dataplane} (the other dataplane is another stack)`,
      );
    }
    if (!this.updatedOnce || this.currentServices !== step.services) {
      await this.stack.setServices(step.services);
      this.currentServices = step.services;
      this.updatedOnce = true;
    }
    const families = Object.keys(this.lab.ditgEndpoints) as Family[];
    return stepReadinessOf(this.stack.name, step.services, families, (await this.stack.outputs()).step?.value);
  }

  /**
   * One flow, with the worker's hop probes around a latency or setup run: attached before, read and
   * detached after (abandoned when the flow fails), so nothing stays on the node between runs.
   */
  async runFlow(key: RunKey, flow: { logName: string; durationS: number; traffic: TrafficProfile }): Promise<FlowOutcome> {
    const path = this.pathOf(key);
    const first = path.endpoints[key.family];
    if (!first) {
      throw new CloudSetupError(`stack ${this.stack.name} exports no ${path.name} endpoint for ${key.family}; accepted families: ${Object.keys(path.endpoints).join(", ")}`);
    }
    // D-ITG flows alternate between the receiver pod's two ITGRecv (the lab's way: backends/lab.ts);
    // a setup run takes the ports of the one the next flow goes to.
    const alternate = path.alternates[key.family];
    const target = this.nextInstance === 1 && alternate ? alternate : first;
    if (key.profile !== "setup" && alternate) this.nextInstance = this.nextInstance === 0 ? 1 : 0;
    const probes = key.profile === "throughput" ? [] : await this.workerHops(path, first.dataPort, alternate?.dataPort);
    const begun: { hops: WorkerHops; run: WorkerRun }[] = [];
    const abandon = async () => {
      for (const b of begun) await b.hops.abandon(b.run);
    };
    let outcome: FlowOutcome;
    try {
      for (const hops of probes) {
        const run = await hops.begin(key.profile, flow.logName, { maxSeconds: flow.durationS + SENDER_GRACE_S });
        if (run) begun.push({ hops, run });
      }
      outcome = key.profile === "setup" ? await this.runSetup(key.family, path, target, flow) : await this.runDitg(path, target, flow);
    } catch (err) {
      await abandon();
      throw err;
    }
    if (begun.length === 0) return outcome;
    const captures: HopCapture[] = [];
    for (const [i, b] of begun.entries()) {
      const hostDir = path.name === DEFAULT_PATH ? this.localDir : mkdtempSync(join(this.localDir, `hops-${i + 1}-`));
      captures.push(await b.hops.end(b.run, hostDir));
    }
    // A path across two workers: one capture, each host's stamps on its own clock (measure/hops.ts).
    const hops = captures.length === 1 ? captures[0]! : mergeWorkerCaptures(captures, join(this.localDir, `${flow.logName}.hops`), path.name);
    return { ...outcome, hops };
  }

  /** The path a run takes, as the stack serves it. */
  private pathOf(key: RunKey): CloudPath {
    const name = pathOf(key);
    const path = this.paths.includes(name) ? this.lab.paths[name] : undefined;
    if (!path) {
      throw new CloudSetupError(`stack ${this.stack.name} does not serve the ${name} path; accepted: ${this.paths.join(", ")} (testbed:paths, then \`pulumi up --stack ${this.stack.name}\`)`);
    }
    return path;
  }

  /**
   * The workers' hop probes of a path, installed at its first probed run (one set per host and path:
   * each is compiled for its path's data ports, both ITGRecv's); none when the campaign leaves them out. The paper's
   * path probes worker 1 and its receiver pod; nodeport-remote worker 1's uplink and worker 2 with its
   * receiver pod; clusterip worker 1 with the client pod, and worker 2 with its receiver pod.
   */
  private async workerHops(p: CloudPath, dataPort: number, alternateDataPort: number | undefined): Promise<WorkerHops[]> {
    if (this.hops === false) return [];
    const receiverPod: ReceiverLocator = { deployment: p.receiver.deployment, process: "ITGRecv" };
    const hosts: { host: RemoteHost; role: WorkerRole; receiver: ReceiverLocator }[] =
      p.name === DEFAULT_PATH
        ? [{ host: "receiver", role: "receiver-node", receiver: receiverPod }]
        : [
            p.client.kind === "pod"
              ? { host: p.client.host, role: "client-node", receiver: { deployment: p.client.deployment, process: CLIENT_POD_PROCESS } }
              : { host: "receiver", role: "nodeport-entry", receiver: {} },
            { host: p.receiverHost, role: "endpoint-node", receiver: receiverPod },
          ];
    const installed: WorkerHops[] = [];
    for (const h of hosts) {
      const id = `${h.host}/${p.name}`;
      let hops = this.hops.get(id);
      if (!hops) {
        try {
          const workDir = p.name === DEFAULT_PATH ? DEFAULT_WORKER_HOPS_DIR : `${DEFAULT_WORKER_HOPS_DIR}-${p.name}`;
          hops = await WorkerHops.install(sshWorkerShell(this.shell, h.host), { dataPort, ...(alternateDataPort !== undefined ? { alternateDataPort } : {}), receiver: h.receiver, role: h.role, workDir });
        } catch (err) {
          throw new CloudSetupError(`the hop probes could not be built on ${h.host} (${p.name}): ${(err as Error).message}; campaign --no-hops measures without them`);
        }
        this.hops.set(id, hops);
      }
      installed.push(hops);
    }
    return installed;
  }

  private async runDitg(p: CloudPath, target: FlowTarget, flow: { logName: string; durationS: number; traffic: TrafficProfile }): Promise<FlowOutcome> {
    const client = p.client;
    const logs = flowLogs(flow.logName, { senderDir: client.kind === "pod" ? client.podLogDir : this.lab.clientLogDir, receiverDir: p.receiver.podLogDir });
    const cmd = senderCommand({ traffic: flow.traffic, durationS: flow.durationS, target, logs, linkMbps: this.scenario.linkMbps });
    const startedAt = new Date();
    // Bounded: an ITGSend that never ends (a lost signaling reply) is stopped and the run fails.
    const bound = ["timeout", "--kill-after=5", String(Math.ceil(flow.durationS + SENDER_GRACE_S))];
    const result = await this.onClient(p, [...bound, ...cmd.argv]);
    const endedAt = new Date();
    // Pod log directories are hostPaths: the same file sits under nodeLogDir on the pod's node.
    const sender = client.kind === "pod" ? remoteLog(client.host, path.posix.join(client.nodeLogDir, path.posix.basename(logs.senderLog))) : remoteLog("client", logs.senderLog);
    const receiver = remoteLog(p.receiverHost, path.posix.join(p.receiver.nodeLogDir, path.posix.basename(logs.receiverLog)));
    const brokenSession = receiverSessionError(result.stdout);
    if (result.code !== 0 || brokenSession !== undefined) {
      await this.removeRemote([sender, receiver]);
      const said = `ITGSend on the ${client.kind === "pod" ? "client pod" : "client"} exited with ${result.code}: ${lastLines(result.stdout + result.stderr)}`;
      // 124/137: the bound stopped a sender whose session hung, which leaves ITGRecv with it.
      if (brokenSession === undefined && result.code !== 124 && result.code !== 137) throw new Error(said);
      throw new ReceiverSessionError(`${said}; on the receiver's node, the data port ${target.dataPort}: ${await this.dataPortHolders(p, target.dataPort)}`);
    }
    if (cmd.measuredLog === "sender") {
      // A round trip: the receiver's log on the node pairs with the client's for exact delays (D-ITG B15).
      return { logPath: sender, receiverLogPath: receiver, senderOutput: result.stdout, startedAt, endedAt };
    }
    this.unmeasured.set(receiver, sender);
    return { logPath: receiver, senderOutput: result.stdout, startedAt, endedAt };
  }

  /**
   * Runs a command where the path's client sends from: on the client VM, or in the client pod
   * (kubectl exec from the control-plane node). Output and errors together, as ITGSend prints them.
   */
  private onClient(p: CloudPath, argv: readonly string[]): Promise<CommandResult> {
    const c = p.client;
    if (c.kind === "external") return this.shell.run("client", `${shellCommand(argv)} 2>&1`);
    return this.shell.run("master", `${KUBECTL} -n ${shellCommand([c.namespace])} exec deployment/${shellCommand([c.deployment])} -- ${shellCommand(argv)} 2>&1`);
  }

  /**
   * One setup run: the listener in the receiver pod's network namespace on its worker, the probe on the
   * client (VM or pod), the log made here from the probe's output.
   */
  private async runSetup(family: Family, p: CloudPath, target: FlowTarget, flow: { logName: string; durationS: number; traffic: TrafficProfile }): Promise<FlowOutcome> {
    const probe = this.lab.connectionSetupProbe;
    if (!probe) {
      throw new CloudSetupError(
        `stack ${this.stack.name} exports no \`connectionSetupProbe\` output: it was deployed before the setup profile; update it with \`pulumi up --stack ${this.stack.name}\`, or leave setup out of --profiles`,
      );
    }
    const grant = this.ports.take(target.address, plannedConnections(flow.traffic, flow.durationS));
    if (grant.flushFirst) await this.forgetConnections();
    const startedAt = new Date();
    const listener = await this.startSetupListener(p, probe.worker, target.dataPort);
    let result;
    let output: string;
    try {
      const binary = p.client.kind === "pod" ? p.client.setupProbe : probe.client;
      const run = await this.onClient(p, setupProbeArgs(binary, { address: target.address, port: target.dataPort, traffic: flow.traffic, durationS: flow.durationS, ports: grant }));
      try {
        result = parseProbeOutput(run.stdout);
      } catch (err) {
        throw new Error(`the connection-setup probe on the ${p.client.kind === "pod" ? "client pod" : "client"} exited with ${run.code}: ${(err as Error).message}: ${lastLines(run.stdout)}`);
      }
      output = describeProbeResult(result);
    } finally {
      await this.shell.run(p.receiverHost, `sudo kill ${listener} 2>/dev/null; true`);
    }
    this.ports.used(target.address, result.nextPort);
    const logPath = path.join(this.localDir, `${flow.logName}.setup.slog`);
    // A pod's address is not in the stack's outputs: its log names no source, as a VM's without hostAddresses.
    const source = (p.client.kind === "external" ? this.lab.clientDataAddresses[family] : undefined) ?? (family === "ipv4" ? "0.0.0.0" : "::");
    writeFileSync(logPath, setupLog(result, { source, destination: target.address, destinationPort: target.dataPort }));
    this.localLogs.add(logPath);
    return { logPath, senderOutput: output, startedAt, endedAt: new Date() };
  }

  /**
   * Starts the probe's listener in the receiver pod's network namespace (entered through ITGRecv's pid)
   * on the data port, and returns its pid once it prints that it listens. Bounded: the wait ends when
   * the listener exits, or after a minute.
   */
  private async startSetupListener(p: CloudPath, binary: string, port: number): Promise<number> {
    const listen = shellCommand(setupListenArgs(binary, port));
    const script = [
      receiverPidScript(p.receiver.deployment),
      `out="$(mktemp)"`,
      `sudo nsenter -t "$pid" -n -- ${listen} >"$out" 2>&1 </dev/null &`,
      `listener=$!`,
      `if timeout 60 tail --pid="$listener" -f -n +1 "$out" | grep -q -m 1 '^ready$'; then echo "listener $listener"; rm -f "$out"; exit 0; fi`,
      `echo "the connection-setup listener on port ${port} did not start: $(tail -n 3 "$out")" >&2; rm -f "$out"; sudo kill "$listener" 2>/dev/null; exit 4`,
    ].join("\n");
    const r = await this.shell.run(p.receiverHost, script);
    const m = /^listener (\d+)$/m.exec(r.stdout);
    if (r.code !== 0 || !m) throw new Error(`starting the connection-setup listener on the receiver's node (${p.receiverHost}) failed (exit ${r.code}): ${lastLines(r.stderr || r.stdout)}`);
    return Number(m[1]);
  }

  /**
   * The probe has used every fresh source port: the worker's dataplane forgets its tracked connections
   * (its own way: nf_conntrack for kube-proxy, Cilium's CT maps), so a reused 5-tuple is new again.
   */
  private async forgetConnections(): Promise<void> {
    const script = clusterDataplane(this.scenario.dataplane).forgetConnections;
    // Worker 1 translates every path; the workers of remote endpoints track the same connections.
    const hosts = new Set<RemoteHost>(["receiver", ...this.paths.map((p) => this.lab.paths[p]!.receiverHost)]);
    for (const host of hosts) {
      const r = await this.shell.run(host, `sudo -n bash -c ${shellCommand([`set -eu\n${script}`])}`);
      if (r.code !== 0) throw new Error(`forgetting the tracked connections of ${host} (${this.scenario.dataplane}) failed: ${lastLines(r.stderr || r.stdout)}`);
    }
    this.ports.reset();
  }

  private async removeRemote(logs: string[]): Promise<void> {
    for (const log of logs) {
      const { host, file } = parseRemoteLog(log);
      // Pods' logs are written by their root user.
      await this.shell.run(host, `${host === "client" ? "" : "sudo "}rm -f ${shellCommand([file])}`);
    }
  }

  /**
   * Fetches the measured log (and a round trip's receiver log from the node) over the management
   * network, then deletes both remote logs.
   */
  async collectLog(outcome: FlowOutcome): Promise<CollectedLogs> {
    const hops = outcome.hops ? { hops: outcome.hops } : {};
    if (this.localLogs.delete(outcome.logPath)) return { log: outcome.logPath, ...hops };
    const fetchLocal = async (remote: string) => {
      const { host, file } = parseRemoteLog(remote);
      const local = path.join(this.localDir, path.posix.basename(file));
      await this.shell.fetch(host, file, local);
      return local;
    };
    const log = await fetchLocal(outcome.logPath);
    const receiverLog = outcome.receiverLogPath === undefined ? undefined : await fetchLocal(outcome.receiverLogPath);
    const other = outcome.receiverLogPath ?? this.unmeasured.get(outcome.logPath);
    this.unmeasured.delete(outcome.logPath);
    await this.removeRemote(other === undefined ? [outcome.logPath] : [outcome.logPath, other]);
    return receiverLog === undefined ? { log, ...hops } : { log, receiverLog, ...hops };
  }

  /** What holds the data port in the receiver pod's network namespace (ss), for a failed session's report. */
  private async dataPortHolders(p: CloudPath, port: number): Promise<string> {
    const r = await this.shell.run(
      p.receiverHost,
      `${receiverPidScript(p.receiver.deployment, "no ITGRecv process")}\nsudo nsenter -t "$pid" -n ss -Htuanp '( sport = :${port} )' | tr -s ' ' | head -n 5`,
    );
    return r.code === 0 ? r.stdout.trim().split("\n").join(" / ") || "no socket" : `not read (${lastLines(r.stderr || r.stdout)})`;
  }

  /**
   * True when every path's receiver node runs as many ITGRecv processes as it should: the paper's
   * receiver one per distinct signaling port, each further path's receiver one, and every receiver
   * pod its second ITGRecv where the stack exports one (receiversPerHost). Checked with pgrep,
   * never by connecting: a connection reset on the signaling port kills ITGRecv (notes B1).
   */
  async receiverAlive(): Promise<boolean> {
    for (const [host, expected] of receiversPerHost(this.paths.map((p) => this.lab.paths[p]!))) {
      const r = await this.shell.run(host, "pgrep -c -x ITGRecv");
      if (r.code !== 0 || Number(r.stdout.trim()) < expected) return false;
    }
    return true;
  }

  /** Restarts every path's receiver Deployment and waits for each to roll out. */
  async restartReceiver(): Promise<void> {
    const deployments = new Set(this.paths.map((p) => `-n ${shellCommand([this.lab.paths[p]!.receiver.namespace])} deployment/${shellCommand([this.lab.paths[p]!.receiver.deployment])}`));
    for (const target of deployments) {
      const r = await this.shell.run("master", `${KUBECTL} rollout restart ${target} && ${KUBECTL} rollout status ${target} --timeout=180s`);
      if (r.code !== 0) throw new Error(`restarting the D-ITG receiver (${target}) failed: ${lastLines(r.stderr || r.stdout)}`);
    }
  }

  async teardown(): Promise<void> {
    try {
      if (this.hops) for (const hops of this.hops.values()) await hops.remove();
    } finally {
      await this.shell.close();
    }
    rmSync(this.localDir, { recursive: true, force: true });
  }
}

/** Pure: the ITGRecv processes each receiver node should run for these paths. */
export function receiversPerHost(paths: readonly CloudPath[]): Map<RemoteHost, number> {
  const perHost = new Map<RemoteHost, number>();
  const seen = new Set<string>();
  for (const p of paths) {
    const key = `${p.receiver.namespace}/${p.receiver.deployment}`;
    if (seen.has(key)) continue;
    seen.add(key);
    // The paper's receiver runs one ITGRecv per distinct signaling port; a further path's, one; each
    // pod one more where the stack exports its second ITGRecv (its endpoints' alternate).
    const distinct = (targets: Partial<Record<Family, FlowTarget>>) => new Set(Object.values(targets).map((e) => e.signalingPort)).size;
    const n = p.name === DEFAULT_PATH ? distinct(p.endpoints) + distinct(p.alternates) : 1 + Math.min(1, distinct(p.alternates));
    perHost.set(p.receiverHost, (perHost.get(p.receiverHost) ?? 0) + n);
  }
  return perHost;
}

/**
 * Pure: a shell fragment that sets `pid` to an ITGRecv of the Deployment's pod on this node. Where
 * every ITGRecv of the node shares one network namespace (one receiver pod) that is the oldest one;
 * where receivers of several paths run (worker 2 holds nodeport-remote's and clusterip's), the one
 * whose pod's hostname (its UTS namespace: the pod's name) is the Deployment's name and two suffixes.
 */
export function receiverPidScript(deployment: string, missing = "no ITGRecv process on this node: the receiver pod is not running"): string {
  return `pids="$(pgrep -x ITGRecv)" || { echo ${shellCommand([missing])} >&2; exit 3; }
if [ "$(for p in $pids; do sudo readlink "/proc/$p/ns/net"; done | sort -u | wc -l)" -eq 1 ]; then
  pid="$(pgrep -xo ITGRecv)"
else
  pid=""
  for p in $pids; do
    pod="$(sudo nsenter -t "$p" -u hostname)"
    # A Deployment's pod is named <deployment>-<template hash>-<suffix>; a prefix alone would take ditg-receiver-remote's for ditg-receiver's.
    pod="\${pod%-*}"
    if [ "\${pod%-*}" = ${shellCommand([deployment])} ]; then pid="$p"; break; fi
  done
  [ -n "$pid" ] || { echo ${shellCommand([`no ITGRecv process of deployment ${deployment} on this node`])} >&2; exit 3; }
fi`;
}
