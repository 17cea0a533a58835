// The programming profile on a deployed stack: Service changes made through the Kubernetes API
// (kubectl on the master, over the backend's SSH shell), each timed from its start to the first
// connection through the changed Service that saw it, by the programming probe on the client VM
// (measure/programming-probe.c, built there by the stack: output `programmingProbe`), and read with
// the control plane's own histograms from its metrics endpoint on the worker before and after
// (infra/cluster/dataplanes: kube-proxy's sync and network-programming durations, the Cilium agent's
// service implementation delay and bpf(2) call durations).
//
// The same changes as the lab's (backends/lab-programming.ts), on the step's last NodePort Service:
//   remove-one   it is deleted (the probe: answered, then refused)
//   add-one      it is created again (refused, then answered)
//   remove-one   deleted again
//   add-100      created with the sweep's next 99 Services in one apply
//                (then the 100 go again, untimed, and the control plane settles)
//   full-sync    after the control plane's next periodic sync (as in the lab: no chain it left stale is
//                still there), its pod on the worker is deleted (kube-proxy, or the Cilium agent, restarts
//                from its DaemonSet) and the Service created while it is away: from the deletion to
//                the first answer through the Service; the campaign waits for the new pod to be ready
// and leaves the step's Services as they were. No cold start: a new node is not what a running
// cluster sees. The probe's clock is the client's: a change starts where the probe reads a mark on
// its stdin just before the command that makes it is sent, so the reading includes that command's
// trip to the master and kubectl's request (tens of milliseconds).
//
// The probe's listener runs on the worker in the network namespace of the scaled Services' backend
// pod (the pause pod nothing listens in), entered through the pause process of the sandbox that
// holds the pod's address.
import type { Readable, Writable } from "node:stream";
import { stringify } from "yaml";
import type { Family } from "../scenario/cidr.js";
import type { Scenario } from "../scenario/schema.js";
import { clusterDataplane, controlPlaneHistograms, type ControlPlane } from "../infra/cluster/dataplanes/index.js";
import { shellAssignments } from "../infra/cluster/shell.js";
import { histogramGrowth, parseHistograms, type MetricHistogram } from "../measure/control-plane-metrics.js";
import { shellCommand, type FlowTarget } from "../measure/ditg-commands.js";
import { listenerArgs, probeArgs, ProbeSession, PROBE_SOURCE_PORTS, type ProbeTarget } from "../measure/programming-probe.js";
import type { ChangeMeasurement, MeasuredChange, ProgrammingBackend, ProgrammingSettings, RunKey } from "../measure/types.js";
import { backendDeployment, serviceObject } from "../workloads/manifests.js";
import { programmingServices } from "../workloads/programming-services.js";
import type { ServiceSpec } from "../workloads/service-model.js";
import { buildServiceSet } from "../workloads/service-set.js";
import type { RemoteHost, RemoteShell } from "./cloud.js";

/**
 * What each programming run does on a stack: a probe every millisecond, 100 Services at once for
 * add-100, 50 ms of probes after the first that saw a change, at most 15 minutes for a change to
 * reach the packets (a restarted agent at 10000 Services), no cold starts.
 */
export const CLOUD_PROGRAMMING: ProgrammingSettings = { probesPerSecond: 1000, addMany: 100, confirmMs: 50, timeoutS: 900, coldStart: false };

/** kubectl on the control-plane node, as kubeadm leaves it. */
const KUBECTL = "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf";
/** The stack's own field manager (infra/workloads.ts): a Service created again is the stack's Service. */
const APPLY = `${KUBECTL} apply --server-side --force-conflicts --field-manager=dataplane-testbed`;
/** Longest wait for the control plane to count a sync after a change, and for a restarted one's pod to be ready, ms. */
const SETTLE_TIMEOUT_MS = 600_000;
const POLL_MS = 500;
/** How long kube-proxy keeps a flushed chain before a sync deletes it, ms (kernels before 6.2 need the delay). */
const STALE_CHAIN_DELAY_MS = 1100;
/** Between two reads of the chains a removed Service left (kube-proxy's periodic sync comes every 30 s). */
const LEFTOVER_POLL_MS = 2000;

/** A command on a host that runs while the caller talks to it (ssh with its stdin and stdout). */
export interface RemoteProcess {
  readonly stdin: Writable;
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly exitCode: number | null;
  once(event: "exit", listener: (code: number | null) => void): unknown;
  kill(signal?: NodeJS.Signals): unknown;
}

/** A shell that can also start a command and talk to it. */
export interface StreamingShell extends RemoteShell {
  start(host: RemoteHost, command: string): RemoteProcess;
}

/** Where the stack built the programming probe. */
export interface ProgrammingProbePaths {
  readonly client: string;
  readonly worker: string;
}

/** Pure: the stack output `programmingProbe`, or undefined when the stack was deployed without it. Throws when it is malformed. */
export function programmingProbeOutput(stack: string, outputs: Record<string, { value: unknown }>): ProgrammingProbePaths | undefined {
  const v = outputs.programmingProbe?.value as Partial<ProgrammingProbePaths> | undefined;
  if (v === undefined) return undefined;
  if (typeof v.client !== "string" || typeof v.worker !== "string") {
    throw new Error(`stack ${stack} has no usable output \`programmingProbe\` ({client, worker}: where the stack built the programming probe); redeploy it with \`pulumi up --stack ${stack}\``);
  }
  return { client: v.client, worker: v.worker };
}

/** Pure: a manifest of the Services, as the stack renders them. */
export function servicesManifest(services: readonly ServiceSpec[], families: readonly Family[]): string {
  return services.map((s) => stringify(serviceObject(s, families))).join("---\n");
}

/** Pure: a script that writes `text` to a new file on the host and prints its path. */
export function writeFileScript(text: string): string {
  const marker = "TESTBED_MANIFEST_END";
  if (text.includes(marker)) throw new Error(`a manifest holding ${marker} cannot be written by a here-document`);
  return `set -eu\nf="$(mktemp /tmp/testbed-programming.XXXXXX.yaml)"\ncat >"$f" <<'${marker}'\n${text}${text.endsWith("\n") ? "" : "\n"}${marker}\necho "$f"`;
}

/**
 * Pure: the worker-side script that starts the probe's listener on `port` in the network namespace
 * holding `address` (a pod's: found through the pod sandboxes' pause processes, one per pod on a
 * node), and prints `listener PID` once it listens. Bounded: a minute.
 */
export function listenerScript(binary: string, address: string, port: number): string {
  const listen = shellCommand(listenerArgs(port));
  return [
    `target=""`,
    `for pid in $(pgrep -x pause); do`,
    `  addrs="$(sudo nsenter -t "$pid" -n ip -o addr show 2>/dev/null)" || continue`,
    `  if [[ "$addrs" == *" ${address}/"* ]]; then target="$pid"; break; fi`,
    `done`,
    `if [ -z "$target" ]; then echo "no pod sandbox on $(hostname) holds ${address}: the backend pod is not on this node" >&2; exit 3; fi`,
    `out="$(mktemp)"`,
    `# The listener's output goes to this login's file, not root's.`,
    `# shellcheck disable=SC2024`,
    `sudo nsenter -t "$target" -n -- ${shellCommand([binary])} ${listen} >"$out" 2>&1 </dev/null &`,
    `listener=$!`,
    `if timeout 60 tail --pid="$listener" -f -n +1 "$out" | grep -q -m 1 '^listening$'; then echo "listener $listener"; rm -f "$out"; exit 0; fi`,
    `echo "the programming listener on port ${port} did not start: $(tail -n 3 "$out")" >&2; rm -f "$out"; sudo kill "$listener" 2>/dev/null; exit 4`,
  ].join("\n");
}

interface Pod {
  readonly name: string;
  readonly nodeName: string;
  readonly ips: readonly string[];
  readonly ready: boolean;
}

/** Pure: the pods of a `kubectl get pods -o json` list. */
export function podsOf(json: string): Pod[] {
  const list = JSON.parse(json) as {
    items?: { metadata: { name: string }; spec?: { nodeName?: string }; status?: { podIPs?: { ip: string }[]; conditions?: { type: string; status: string }[] } }[];
  };
  return (list.items ?? []).map((p) => ({
    name: p.metadata.name,
    nodeName: p.spec?.nodeName ?? "",
    ips: (p.status?.podIPs ?? []).map((x) => x.ip),
    ready: (p.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True"),
  }));
}

const familyOf = (ip: string): Family => (ip.includes(":") ? "ipv6" : "ipv4");
const lastLines = (text: string, n = 3) => text.trim().split("\n").slice(-n).join(" / ");

export interface CloudProgrammingOptions {
  readonly stack: string;
  readonly shell: RemoteShell;
  readonly scenario: Scenario;
  /** Where the client sends each family's flows: the worker's address as the client reaches it. */
  readonly endpoints: Partial<Record<Family, FlowTarget>>;
  /** The stack output, absent on a stack deployed before the programming profile. */
  readonly probe: ProgrammingProbePaths | undefined;
}

export class CloudProgramming implements ProgrammingBackend {
  private readonly controlPlane: ControlPlane;
  /** Where the probes' source-port cycle goes on. */
  private nextPort: number = PROBE_SOURCE_PORTS.first;

  constructor(private readonly o: CloudProgrammingOptions) {
    this.controlPlane = clusterDataplane(o.scenario.dataplane).controlPlane;
  }

  private get shell(): StreamingShell {
    const shell = this.o.shell as Partial<StreamingShell> & RemoteShell;
    if (typeof shell.start !== "function") throw new Error("the programming profile needs a shell that keeps a command running (the SSH shell)");
    return shell as StreamingShell;
  }

  private async run(host: RemoteHost, command: string, what: string): Promise<string> {
    const r = await this.o.shell.run(host, command);
    if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${lastLines(r.stderr || r.stdout)}`);
    return r.stdout;
  }

  async runChanges(key: RunKey, settings: ProgrammingSettings): Promise<ChangeMeasurement[]> {
    const { scenario, stack } = this.o;
    const probePaths = this.o.probe;
    if (!probePaths) {
      throw new Error(
        `stack ${stack} exports no \`programmingProbe\` output: it was deployed before the programming profile; update it with \`pulumi up --stack ${stack}\`, or leave programming out of --profiles`,
      );
    }
    const target = this.o.endpoints[key.family];
    if (!target) throw new Error(`stack ${stack} exports no ditgEndpoints.${key.family}; accepted families: ${Object.keys(this.o.endpoints).join(", ")}`);
    const set = buildServiceSet(scenario, key.services);
    const { probed, more } = programmingServices(scenario, set, settings.addMany);
    const backend = backendDeployment(scenario);
    const backendPods = podsOf(await this.run("master", `${KUBECTL} -n ${shellCommand([backend.metadata!.namespace!])} get pods -l ${labelSelector(backend.spec!.selector!.matchLabels!)} -o json`, "reading the backend pod"));
    const pod = backendPods.find((p) => p.ready && p.ips.length > 0);
    if (!pod) throw new Error(`no ready ${backend.metadata!.name} pod: the scaled Services have no endpoint to probe`);
    const podAddress = pod.ips.find((ip) => familyOf(ip) === key.family) ?? pod.ips[0]!;

    // The manifests on the master, before anything is timed.
    const families = scenario.families;
    const oneFile = (await this.run("master", writeFileScript(servicesManifest([probed], families)), "writing the Service's manifest")).trim();
    const manyFile = (await this.run("master", writeFileScript(servicesManifest([probed, ...more], families)), "writing the 100 Services' manifest")).trim();
    const namespace = shellCommand([probed.namespace]);
    const create = (file: string) => `${APPLY} -f ${shellCommand([file])} >/dev/null`;
    const remove = (names: readonly string[]) => `${KUBECTL} -n ${namespace} delete service ${names.map((n) => shellCommand([n])).join(" ")} >/dev/null`;

    const listener = Number(
      /^listener (\d+)$/m.exec(await this.run("receiver", listenerScript(probePaths.worker, podAddress, probed.ports[0]!.targetPort), "starting the programming listener on the worker"))?.[1],
    );
    const out: ChangeMeasurement[] = [];
    const probe = async (change: MeasuredChange, command: string, expect: ProbeTarget["expect"], services: number) => {
      out.push(await this.measure({ change, sequence: out.length, services, command, family: key.family }, probePaths.client, { address: target.address, port: probed.ports[0]!.nodePort!, expect }, settings));
    };
    try {
      const n = key.services;
      await probe("remove-one", remove([probed.name]), "refused", n - 1);
      await probe("add-one", create(oneFile), "answered", n);
      await probe("remove-one", remove([probed.name]), "refused", n - 1);
      await probe("add-100", create(manyFile), "answered", n + more.length);
      const before = await this.scrape(key.family);
      await this.run("master", remove([probed.name, ...more.map((s) => s.name)]), "deleting the 100 Services");
      await this.settled(before, key.family);
      await this.nextPeriodicSync(key.family);
      await this.noChainsLeft(pod.nodeName, probed, families);
      const agent = await this.agentPod(pod.nodeName);
      await probe("full-sync", `${KUBECTL} -n kube-system delete pod ${shellCommand([agent])} >/dev/null && ${create(oneFile)}`, "answered", n);
      await this.ready(pod.nodeName, agent);
    } catch (error) {
      // The next runs of the step measure its own Services: put them back before failing.
      await this.o.shell.run("master", `${create(oneFile)}; ${KUBECTL} -n ${namespace} delete service --ignore-not-found ${more.map((s) => shellCommand([s.name])).join(" ")}`).catch(() => undefined);
      throw error;
    } finally {
      await this.o.shell.run("receiver", `sudo kill ${listener} 2>/dev/null; true`).catch(() => undefined);
      await this.o.shell.run("master", `rm -f ${shellCommand([oneFile, manyFile])}`).catch(() => undefined);
    }
    return out;
  }

  /** One probed change: the probe sees the state before, the mark, the command, the probe sees the state after; the control plane's histograms around it. */
  private async measure(
    change: { change: MeasuredChange; sequence: number; services: number; command: string; family: Family },
    binary: string,
    target: ProbeTarget,
    settings: ProgrammingSettings,
  ): Promise<ChangeMeasurement> {
    const before = await this.scrape(change.family);
    const args = probeArgs(target, { rate: settings.probesPerSecond, startPort: this.nextPort, confirmMs: settings.confirmMs, maxS: settings.timeoutS });
    const child = this.shell.start("client", shellCommand([binary, ...args]));
    try {
      const session = new ProbeSession({ stdout: child.stdout, stderr: child.stderr, stdin: child.stdin, once: (e, f) => child.once(e, f) });
      await session.ready;
      const start = await session.mark();
      await this.run("master", change.command, `${change.change} through the API`);
      const result = await session.result;
      this.nextPort = result.nextPort;
      if (!result.changed) {
        throw new Error(`${change.change}: no probe through ${target.address}:${target.port} was ${target.expect} within ${settings.timeoutS} s of the change`);
      }
      const metrics = await this.settled(before, change.family);
      return {
        change: change.change,
        sequence: change.sequence,
        services: change.services,
        programmedS: Number(result.changed.seenNs - start) / 1e9,
        probes: { sent: result.sent, flaps: result.flaps, timeouts: result.timeouts },
        metrics,
      };
    } finally {
      child.stdin.end();
      if (child.exitCode === null) child.kill("SIGTERM");
    }
  }

  /** The control plane's histograms now, read on the worker; undefined while its endpoint does not answer (a restarting agent). */
  private async scrape(family: Family): Promise<Map<string, MetricHistogram> | undefined> {
    const r = await this.o.shell.run("receiver", `curl -sS --fail --max-time 10 ${shellCommand([this.controlPlane.metricsUrl])}`);
    if (r.code !== 0) return undefined;
    return parseHistograms(r.stdout, controlPlaneHistograms(this.controlPlane), family);
  }

  /**
   * What the histograms grew by since `before`, once the control plane counted something new (a
   * sync, an event) or restarted; bounded. The caller's change has reached the packets by then, so
   * its sync has normally been counted already.
   */
  private async settled(before: Map<string, MetricHistogram> | undefined, family: Family): Promise<MetricHistogram[]> {
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    for (;;) {
      const now = await this.scrape(family);
      if (now) {
        const grown = [...now.values()].map((h) => histogramGrowth(before?.get(h.name), h));
        if (grown.some((h) => h.count > 0)) return grown;
      }
      if (Date.now() > deadline) {
        throw new Error(`${this.controlPlane.name} counted no sync in its metrics (${this.controlPlane.metricsUrl} on the worker) within ${SETTLE_TIMEOUT_MS / 1000} s of a change`);
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  /**
   * Returns once the control plane has synced again, at least STALE_CHAIN_DELAY_MS after now: the
   * periodic sync that deletes the chains earlier syncs flushed (kube-proxy deletes them only a
   * second later, and on its first sync after a restart keeps the endpoint chains it finds, flushed
   * or not). The restart is then the one the lab makes: after the control plane's next periodic
   * sync. A control plane without a sync histogram (the Cilium agent) leaves nothing stale.
   */
  private async nextPeriodicSync(family: Family): Promise<void> {
    const { sync } = this.controlPlane.metrics;
    if (!sync) return;
    await new Promise((r) => setTimeout(r, STALE_CHAIN_DELAY_MS));
    const before = await this.scrape(family);
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    for (;;) {
      const now = (await this.scrape(family))?.get(sync);
      if (now && histogramGrowth(before?.get(sync), now).count > 0) return;
      if (Date.now() > deadline) throw new Error(`${this.controlPlane.name} did not sync within ${SETTLE_TIMEOUT_MS / 1000} s (its periodic sync, before it is restarted)`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  /**
   * Returns once the worker's dataplane holds no chain of the removed Service (ClusterDataplane
   * leftoverChains), whatever syncs that takes: the restart that follows must not find one. The
   * periodic sync counted in the metrics is not enough alone: a sync of the removal itself that
   * ends after the wait began counts too, and it leaves the chains flushed, not deleted.
   */
  private async noChainsLeft(node: string, service: { readonly namespace: string; readonly name: string }, families: readonly Family[]): Promise<void> {
    const script = clusterDataplane(this.o.scenario.dataplane).leftoverChains;
    if (!script) return;
    const body = `set -euo pipefail
export KUBECONFIG=/etc/kubernetes/admin.conf
${shellAssignments({ WORKER_NODE: node, SERVICE_FAMILIES: families.join(" "), SERVICE: `${service.namespace}/${service.name}` })}
${script}`;
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    for (;;) {
      const left = (await this.run("master", `sudo -n bash -c ${shellCommand([body])}`, `reading the chains ${this.controlPlane.name} left on the worker`)).trim();
      if (left === "") return;
      if (Date.now() > deadline) {
        throw new Error(`${this.controlPlane.name} still holds ${left.split("\n").join(", ")} of the removed Service ${service.namespace}/${service.name} ${SETTLE_TIMEOUT_MS / 1000} s later, before it is restarted`);
      }
      await new Promise((r) => setTimeout(r, LEFTOVER_POLL_MS));
    }
  }

  private async agentPods(node: string): Promise<Pod[]> {
    const json = await this.run("master", `${KUBECTL} -n kube-system get pods -l ${this.controlPlane.podLabel} --field-selector spec.nodeName=${shellCommand([node])} -o json`, `reading ${this.controlPlane.name}'s pods`);
    return podsOf(json);
  }

  /** The control plane's pod on the worker. */
  private async agentPod(node: string): Promise<string> {
    const pods = await this.agentPods(node);
    if (pods.length === 0) throw new Error(`no ${this.controlPlane.name} pod (${this.controlPlane.podLabel}) on node ${node}`);
    return pods[0]!.name;
  }

  /** Waits until the pod that replaced `gone` on the node is ready; bounded. */
  private async ready(node: string, gone: string): Promise<void> {
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    while (!(await this.agentPods(node)).some((p) => p.name !== gone && p.ready)) {
      if (Date.now() > deadline) throw new Error(`${this.controlPlane.name} on node ${node} is not ready again ${SETTLE_TIMEOUT_MS / 1000} s after its pod ${gone} was deleted`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }
}

/** `k=v,k2=v2` for kubectl -l. */
function labelSelector(labels: Readonly<Record<string, string>>): string {
  return shellCommand([Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(",")]);
}
