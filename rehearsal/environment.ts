// One stack of a rehearsal, deployed on this machine: the stack's hosts as namespace hosts with sshd
// (hosts.ts) on the stack's own networks (network.ts), the Kubernetes stand-ins (kubectl on the
// master, the node agents on the worker), the Pulumi CLI stand-in with the stack's state, and an
// operator namespace where the campaign and the Pulumi CLI run, reaching the lab only through the
// bastion's floating address. Each dataplane is a stack of its own, as on the cloud: one
// environment per stack, removed whole when it closes (or on exit, SIGINT, SIGTERM; after a crash
// by `testbed rehearse --cleanup`, as lab runs are).
//
// The first deployment (cloud-init, kubeadm, Helm) cannot run here: the environment leaves the hosts
// as it would, as far as the later steps need (kubectl and admin.conf on the master, the cluster's
// nodes and its dataplane's DaemonSet pods in the API), records the stack as deployed without its
// workloads, and its first `pulumi up` creates the workloads for real.
import { spawn, spawnSync, type SpawnOptions } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { resourceKey } from "../infra/lifecycle.js";
import type { PlannedResource } from "../infra/offline-engine.js";
import type { HostName } from "../infra/hosts.js";
import { clusterDataplane } from "../infra/cluster/dataplanes/index.js";
import { labDataplane } from "../lab/dataplanes/index.js";
import type { IptablesBackend } from "../lab/dataplanes/iptables/kernel.js";
import type { LabProfile } from "../lab/profiles.js";
import { LabTopology } from "../lab/topology.js";
import type { Dataplane, PodRouting, Scenario } from "../scenario/schema.js";
import type { ServicePath } from "../scenario/paths.js";
import { CHECKOUT, NamespaceHost, seedFile, seedPath } from "./hosts.js";
import { setupProbeCompileCommand } from "../measure/connection-setup.js";
import { STACK_PROBES } from "../infra/setup-probe.js";
import { KubeApi, type ClusterInfo, type PodSandbox, type PodStatus } from "./kubernetes/api.js";
import { WorkerAgents } from "./kubernetes/node-agents.js";
import { OPERATOR_ADDRESS, planRehearsalNetwork, rehearsalAddresses, rehearsalPods, type RehearsalAddresses } from "./network.js";
import { CARRIED_OUT_COMPONENTS } from "./pulumi/deploy.js";
import { planStack, STATE_ENV, StackState, type KnownState } from "./pulumi/state.js";
import { rehearsalStackConfig, rehearsalStackName, stackScenarioOf } from "./stack-config.js";

const TSX = pathToFileURL(path.join(CHECKOUT, "node_modules/tsx/dist/esm/index.mjs")).href;

export interface EnvironmentOptions {
  readonly dataplane: Dataplane;
  readonly profile: LabProfile;
  /** The Service count the stack is deployed with before the campaign (default: the sweep's first). */
  readonly services?: number;
  /** The sweep's Service counts (default: the profile's). */
  readonly sweepServices?: readonly number[];
  /** How long the worker's dataplane agent waits after a change before it programs (default 0). */
  readonly programDelayMs?: number;
  readonly iptablesBackend?: IptablesBackend;
  /** The Service paths the stack serves (testbed:paths); default the paper's alone. */
  readonly paths?: readonly ServicePath[];
  /** How pod traffic crosses between the workers (testbed:podRouting); default native. */
  readonly podRouting?: PodRouting;
  readonly log: (line: string) => void;
}

/**
 * The operator's temporary directory. Short, like a user's /tmp: ssh's control sockets live below it
 * (backends/cloud-transport.ts), and a socket path of 108 bytes or more breaks ProxyJump's
 * multiplexed jump. Named with the run's prefix, so the run's cleanup removes it (lab/run-registry.ts).
 */
function operatorTmp(topology: Pick<LabTopology, "prefix">): string {
  return path.join(tmpdir(), `${topology.prefix}-operator`);
}

/**
 * Pure: the hosts where the stack builds a probe (the hosts of its build commands, each named
 * `<component>-<host>-build`, whose script installs the probe's binary), as its first boot left them.
 */
export function probeHosts(resources: readonly PlannedResource[], binary: string): HostName[] {
  return resources
    .filter((r) => r.type === "command:remote:Command" && (r.options?.parent ?? "").startsWith("testbed:tools:SetupProbe::") && String(r.inputs.create ?? "").includes(binary))
    .map((r) => {
      const component = (r.options!.parent!).split("::")[1]!;
      return r.name.slice(component.length + 1, -"-build".length) as HostName;
    });
}

/** A wrapper script that runs one of the checkout's TypeScript entries with this Node.js. */
export function entryScript(entry: string, env: Readonly<Record<string, string>> = {}): string {
  const assignments = Object.entries(env).map(([k, v]) => `${k}='${v}' `).join("");
  return `#!/bin/sh\n${assignments}exec '${process.execPath}' --import '${TSX}' '${path.join(CHECKOUT, entry)}' "$@"\n`;
}

/** A key pair for the stack (testbed:sshPublicKey, testbed:sshPrivateKey), made for this rehearsal. */
function keyPair(): { publicKey: string; privateKey: string } {
  const dir = mkdtempSync(path.join(tmpdir(), "testbed-rehearsal-key-"));
  try {
    const r = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "testbed-rehearsal", "-f", path.join(dir, "id")], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`ssh-keygen: ${r.stderr.trim()}`);
    return { publicKey: readFileSync(path.join(dir, "id.pub"), "utf8").trim(), privateKey: readFileSync(path.join(dir, "id"), "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export class RehearsalEnvironment {
  private closed = false;

  private constructor(
    readonly stack: string,
    readonly scenario: Scenario,
    readonly topology: LabTopology,
    readonly addresses: RehearsalAddresses,
    readonly hosts: Readonly<Partial<Record<HostName, NamespaceHost>>>,
    readonly api: KubeApi,
    readonly agents: WorkerAgents,
    readonly state: StackState,
    private readonly log: (line: string) => void,
  ) {}

  /** Builds the environment and deploys the stack at its first Service count. */
  static async create(o: EnvironmentOptions): Promise<RehearsalEnvironment> {
    const module = labDataplane(o.dataplane);
    const problem = module.hostProblem();
    if (problem) throw new Error(`rehearse: ${problem}`);
    const stack = rehearsalStackName(o.dataplane);
    const keys = keyPair();
    const config = rehearsalStackConfig({
      dataplane: o.dataplane,
      profile: o.profile,
      operatorAddress: OPERATOR_ADDRESS,
      sshPublicKey: keys.publicKey,
      sshPrivateKey: keys.privateKey,
      projectDir: CHECKOUT,
      ...(o.services !== undefined ? { services: o.services } : {}),
      ...(o.sweepServices ? { sweepServices: o.sweepServices } : {}),
      ...(o.paths ? { paths: o.paths } : {}),
      ...(o.podRouting ? { podRouting: o.podRouting } : {}),
    });
    const scenario = stackScenarioOf(config);
    const addresses = rehearsalAddresses(scenario);

    // The plan of the deployed stack, with the floating address the rehearsal gives the bastion.
    const draft = await planStack(stack, config, {});
    const floating = draft.resources.find((r) => r.type === "openstack:networking/floatingIp:FloatingIp");
    if (!floating) throw new Error("rehearse: the program declares no floating IP for the bastion");
    const known: KnownState = { [resourceKey(floating)]: { address: addresses.floating } };
    const deployed = await planStack(stack, config, known);

    const topology = LabTopology.createFrom((prefix) => planRehearsalNetwork(prefix, scenario));
    try {
      const env = await RehearsalEnvironment.bring(o, stack, config, scenario, addresses, topology, deployed.resources, deployed.outputs, known, module);
      return env;
    } catch (err) {
      topology.destroy();
      throw err;
    }
  }

  private static async bring(
    o: EnvironmentOptions,
    stack: string,
    config: ReturnType<typeof rehearsalStackConfig>,
    scenario: Scenario,
    addresses: RehearsalAddresses,
    topology: LabTopology,
    resources: PlannedResource[],
    outputs: Record<string, unknown>,
    known: KnownState,
    module: ReturnType<typeof labDataplane>,
  ): Promise<RehearsalEnvironment> {
    const { runDir } = topology;
    const apiDir = path.join(runDir, "kube-api");
    mkdirSync(apiDir, { recursive: true });
    const api = new KubeApi(apiDir);

    // What kubeadm leaves on the master: admin.conf; and kubectl, here the stand-in.
    seedFile(topology, "master", "/usr/local/bin/kubectl", entryScript("rehearsal/kubernetes/kubectl.ts", { TESTBED_KUBE_API: apiDir }), 0o755);
    seedFile(
      topology,
      "master",
      "/etc/kubernetes/admin.conf",
      `# The rehearsal's cluster: kubectl on this host is a stand-in that answers from ${apiDir}\napiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://${addresses.management.master}:6443\n  name: kubernetes\ncurrent-context: kubernetes-admin@kubernetes\n`,
      0o600,
    );
    // The probes, where the stack's first boot builds them: the hosts of its build commands (its outputs name the paths).
    for (const { output, probe: built } of STACK_PROBES) {
      const probe = outputs[output] as { client?: string; worker?: string } | undefined;
      if (probe?.worker === undefined || probe.client === undefined) continue;
      for (const host of probeHosts(resources, built.binary)) {
        const target = seedPath(topology, host, built.binary);
        mkdirSync(path.dirname(target), { recursive: true });
        const compile = setupProbeCompileCommand(target, "cc", built.sourceFile);
        const cc = spawnSync(compile[0]!, compile.slice(1), { encoding: "utf8" });
        if (cc.status !== 0) throw new Error(`rehearse: building ${built.what} for the ${host}: ${cc.stderr.trim()}`);
      }
    }
    const hosts: Partial<Record<HostName, NamespaceHost>> = {};
    for (const host of Object.keys(addresses.management) as HostName[]) {
      hosts[host] = await NamespaceHost.start(topology, {
        role: host,
        hostname: `testbed-${host}`,
        listen: host === "bastion" ? [addresses.floating, addresses.management.bastion] : [addresses.management[host]!],
        authorizedKey: String(config["testbed:sshPublicKey"]!.value),
        logLevel: host === "bastion" ? "DEBUG1" : "VERBOSE",
      });
    }

    // The cluster as the bootstrap leaves it: its nodes, and the dataplane's DaemonSet pods on each.
    const nodes = (outputs.nodes as { role: HostName; name: string; addresses: Record<string, string> }[]) ?? [];
    const worker = nodes.find((n) => n.role === "worker");
    if (!worker) throw new Error("rehearse: the plan reports no worker node");
    const systemPods: PodStatus[] = [];
    const daemonSets = [
      ...(clusterDataplane(o.dataplane).kubeProxyMode ? [{ label: "kube-proxy", container: "kube-proxy" }] : []),
      { label: "cilium", container: "cilium-agent" },
    ];
    for (const node of nodes) {
      for (const ds of daemonSets) {
        systemPods.push({
          namespace: "kube-system",
          name: `${ds.label}-${node.role === "master" ? "m" : node.role.replace(/^worker-?/, "w")}${topology.prefix.slice(-4)}`,
          owner: ds.label,
          templateHash: "bootstrap",
          labels: { "k8s-app": ds.label },
          nodeName: node.name,
          ips: Object.values(node.addresses),
          netns: topology.namespace(node.role),
          containers: [ds.container],
          ready: true,
          hostNetwork: true,
        });
      }
    }
    const iptablesBackend = o.iptablesBackend ?? "legacy";
    const nodeOf = (host: HostName) => nodes.find((n) => n.role === host)?.name ?? `testbed-${host}`;
    const sandboxes: Record<string, PodSandbox> = {};
    for (const pod of rehearsalPods(scenario)) {
      // The container's cgroup, below the pod's where the socket load balancer sits: as a kubelet runs a container.
      const cgroup = topology.plan.clientPod?.role === pod.role ? topology.plan.clientPod.containerCgroup : undefined;
      sandboxes[pod.deployment] = { netns: topology.namespace(pod.role), ips: Object.values(addresses.pods[pod.role]!), node: nodeOf(pod.host), ...(cgroup ? { cgroup } : {}) };
    }
    const cluster: ClusterInfo = {
      nodes: nodes.map((n) => ({ name: n.name, role: n.role === "master" ? "master" : "worker", netns: topology.namespace(n.role), ips: Object.values(n.addresses) })),
      systemPods,
      sandboxes,
      iptablesBackend,
    };
    api.writeCluster(cluster);
    const dataplane = module.create({ topology, scenario, iptablesBackend });
    const agents = new WorkerAgents({
      topology,
      api,
      scenario,
      dataplane,
      workerNode: worker.name,
      nodeInitPids: Object.fromEntries(nodes.filter((n) => n.role !== "master").map((n) => [n.name, () => hosts[n.role]!.initPid()])),
      programDelayMs: o.programDelayMs ?? 0,
      log: o.log,
    });
    agents.start();
    await agents.serveMetrics();
    await agents.serveExec();

    // The stack, deployed but for its workloads; the Pulumi CLI stand-in on the operator's PATH.
    const state = StackState.in(path.join(runDir, "stacks"), stack);
    state.create(config);
    const workloads = (r: PlannedResource) => r.type === CARRIED_OUT_COMPONENTS[0] || (CARRIED_OUT_COMPONENTS as readonly string[]).includes((r.options?.parent ?? "").split("::")[0]!);
    state.setResources(resources.filter((r) => !workloads(r)));
    state.setKnown(known);
    state.setOutputs(outputs);
    mkdirSync(path.join(runDir, "bin"), { recursive: true });
    writeFileSync(path.join(runDir, "bin", "pulumi"), entryScript("rehearsal/pulumi/cli.ts"), { mode: 0o755 });
    mkdirSync(path.join(runDir, "project"), { recursive: true });
    copyFileSync(path.join(CHECKOUT, "Pulumi.yaml"), path.join(runDir, "project", "Pulumi.yaml"));
    mkdirSync(operatorTmp(topology), { recursive: true, mode: 0o700 });

    const env = new RehearsalEnvironment(stack, scenario, topology, addresses, hosts, api, agents, state, o.log);
    o.log(`stack ${stack}: hosts up in ${topology.prefix}; its first pulumi up creates the workloads at ${scenario.services} Services`);
    const first = await env.operator(["pulumi", "up", "--yes", "--skip-preview", "--stack", stack]);
    if (first.code !== 0) throw new Error(`rehearse: the first pulumi up of ${stack} failed:\n${first.stderr.trim() || first.stdout.trim()}`);
    return env;
  }

  /** The environment of every process of the operator: the stand-in's PATH and state, a temporary directory inside the run. */
  get operatorEnv(): Record<string, string> {
    const { runDir } = this.topology;
    return {
      ...(process.env as Record<string, string>),
      PATH: `${path.join(runDir, "bin")}:${process.env.PATH ?? "/usr/bin:/bin"}`,
      TMPDIR: operatorTmp(this.topology),
      [STATE_ENV]: path.join(runDir, "stacks"),
    };
  }

  get projectDir(): string {
    return path.join(this.topology.runDir, "project");
  }

  /** Runs a command in the operator's namespace and collects what it printed. */
  operator(argv: readonly string[], options: SpawnOptions = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn("ip", ["netns", "exec", this.topology.namespace("operator"), ...argv], { cwd: CHECKOUT, env: this.operatorEnv, stdio: ["ignore", "pipe", "pipe"], ...options });
      let stdout = "";
      let stderr = "";
      child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
      child.once("error", reject);
      child.once("close", (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    });
  }

  /**
   * `testbed campaign --stack S` in the operator's namespace, as a user runs it: the same CLI, its
   * output passed through. Resolves with its exit code.
   */
  campaign(db: string, extraArgs: readonly string[] = []): Promise<number> {
    const argv = [process.execPath, "--import", "tsx/esm", path.join(CHECKOUT, "cli/main.ts"), "campaign", "--stack", this.stack, "--db", db, "--project-dir", this.projectDir, ...extraArgs];
    this.log(`campaign: ${["testbed", ...argv.slice(4)].join(" ")}`);
    return new Promise((resolve, reject) => {
      const child = spawn("ip", ["netns", "exec", this.topology.namespace("operator"), ...argv], { cwd: CHECKOUT, env: this.operatorEnv, stdio: ["ignore", "inherit", "inherit"] });
      child.once("error", reject);
      child.once("close", (code, signal) => resolve(code ?? (signal ? 130 : 1)));
    });
  }

  /** Stops the agents and hosts and removes everything of the environment. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.agents.stop();
      for (const host of Object.values(this.hosts)) await host!.stop();
    } finally {
      this.topology.destroy();
    }
  }
}
