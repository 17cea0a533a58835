// The workloads of one sweep step on the cluster: the scaled Services, their backend and the D-ITG
// receiver. The whole rendered set is applied as one unit by kubectl on the master (server-side
// apply), not as one Pulumi resource per object: at 10000 Services a resource per Service would put
// tens of thousands of entries into the state and make every `pulumi up` take hours, while here the
// state holds one upload per manifest file and one apply command, whatever N is.
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import type { Family } from "../scenario/cidr.js";
import { PATHS, type ServicePath } from "../scenario/paths.js";
import { RECEIVER_INSTANCES, type Scenario } from "../scenario/schema.js";
import {
  CLIENT_LOG_DIR,
  CLIENT_NODE_LOG_DIR,
  manifestFileNames,
  pathManifestName,
  pathManifestObjects,
  renderManifestFile,
  renderManifests,
  SCALED_SERVICES_MANIFEST,
  type WorkerNodes,
} from "../workloads/manifests.js";
import { RECEIVER_LOG_DIR, RECEIVER_NODE_LOG_DIR } from "../workloads/receiver.js";
import { buildServiceSet, PATH_CLIENT_NAME, PATH_RECEIVER_NAMES, pathReceiverPorts, pathReceiverService, RECEIVER_SERVICE_NAME, type PathReceiverPorts } from "../workloads/service-set.js";
import type { ServiceSet } from "../workloads/service-model.js";
import { readinessWaitS } from "./cluster/readiness.js";
import { asRootCommand, commandTimeouts, shellAssignments, shellQuote, type ScriptBound } from "./cluster/shell.js";
import type { HostAccess, NamedHost } from "./hosts.js";
import { contentHash, remoteArtifactPath, uploadArtifact, uploadArtifactByHash } from "./remote-files.js";
import {
  ADMIN_KUBECONFIG,
  ENDPOINT_READINESS_JSONPATH,
  GATE_PRELUDE,
  parseStepReadiness,
  STEP_POLL_S,
  stepGateAssignments,
  stepGateBody,
  type StepReadiness,
} from "./step-gate.js";

export { parseStepReadiness, STEP_LINE_PREFIX, type StepReadiness } from "./step-gate.js";

export const MANIFEST_DIR = "manifests";

/** Where the client sends one family's flows. */
export interface DitgEndpoint {
  /** The worker's data-center address: the NodePort address on the measured path. */
  readonly address: string;
  readonly signalingPort: number;
  /** Pod port = Service port = NodePort (D-ITG names the data port in its signaling). */
  readonly dataPort: number;
  readonly protocols: readonly ("TCP" | "UDP")[];
  /**
   * The receiver pod's second ITGRecv, at the same address (workloads/receiver.ts): campaigns
   * alternate their flows between the two. The stack always exports it; the measurement command
   * (testbed:measure) sends to the first alone.
   */
  readonly alternate?: { readonly signalingPort: number; readonly dataPort: number };
}

/** Where the receiver runs and writes its logs, as `testbed campaign` needs it (backends/cloud.ts). */
export interface DitgReceiver {
  readonly namespace: string;
  readonly deployment: string;
  /** Management address of the worker, where the receiver pod is pinned. */
  readonly nodeAddress: string;
  readonly podLogDir: string;
  readonly nodeLogDir: string;
}

export interface ServiceCounts {
  readonly total: number;
  readonly nodePort: number;
  readonly clusterIp: number;
}

export interface ApplyScriptArgs {
  /**
   * Manifest files in apply order, with each one's sha256. The hashes are part of the script, so
   * that any change of the rendered set is a change of the command's `create`, which pulumi-command
   * runs again as an update (a trigger would replace the command instead, and a replacement runs the
   * old command's `delete`); the script also checks the uploaded files against them.
   */
  readonly files: readonly { readonly name: string; readonly sha256: string }[];
  /** The worker's node name: its dataplane is the one that must hold the Services. */
  readonly workerNode: string;
  /**
   * What would have restarted the nodes (each host's server and flavor: a resize reboots it), named
   * in the script: after a reboot the apply runs again as an update and the gate waits for the
   * receiver and the rebuilt dataplane.
   */
  readonly nodesBoot?: string;
}

/**
 * The apply script: check the uploaded manifests, server-side apply in file order, prune scaled
 * Services above N, wait for the pods, then the step gate (infra/step-gate.ts): every scaled Service
 * has a ready endpoint in every family, and the worker's dataplane holds exactly the step's Services.
 * It ends with how long each took after the apply (STEP_LINE_PREFIX).
 */
export function applyScript(s: Pick<Scenario, "workloads" | "receiver" | "services" | "families" | "dataplane">, a: ApplyScriptArgs): string {
  const paths = a.files.map((f) => ({ ...f, path: remoteArtifactPath(`${MANIFEST_DIR}/${f.name}`) }));
  return `set -euo pipefail
${a.nodesBoot ? `# nodes: ${a.nodesBoot}\n` : ""}${stepGateAssignments(s, { workerNode: a.workerNode })}
${shellAssignments({ RECEIVER_NS: s.receiver.namespace, ROLLOUT_TIMEOUT: `${ROLLOUT_TIMEOUT_S}s` })}
${GATE_PRELUDE}

waiting_for="the API server to take the manifests"
${paths.map((f) => `echo ${shellQuote(`${f.sha256}  ${f.path}`)} | sha256sum --check --status || { echo ${shellQuote(`${f.path} is not the manifest this step uploaded (sha256 ${f.sha256})`)} >&2; exit 1; }`).join("\n")}
${paths.map((f) => `kubectl apply --server-side --force-conflicts --field-manager=dataplane-testbed -f ${f.path}`).join("\n")}
# Services of a larger earlier step (svc-NNNNN with NNNNN > KEEP) are pruned: the set of step N is a
# prefix of every larger step's set, so the number in the name decides.
kubectl -n "$SCALED_NS" get services -o name \\
  | awk -F- -v keep="$KEEP" '$NF ~ /^[0-9]+$/ && $NF + 0 > keep' \\
  | xargs -r kubectl -n "$SCALED_NS" delete --wait=false
waiting_for="the scaled Services' backend and the D-ITG receiver to roll out"
kubectl -n "$SCALED_NS" rollout status deployment/scale-backend --timeout="$ROLLOUT_TIMEOUT"
kubectl -n "$RECEIVER_NS" rollout status deployment/${RECEIVER_SERVICE_NAME} --timeout="$ROLLOUT_TIMEOUT"
started="$(now)"

${stepGateBody(s)}
`;
}

/** How long each rollout may take (the backend's pause image, the receiver's d-itg download). */
export const ROLLOUT_TIMEOUT_S = 600;

/** The apply script's own limit: the gate's wait for the largest step, both rollouts, and the applies. */
export function applyBound(s: Pick<Scenario, "families" | "services" | "sweep" | "dataplane">): ScriptBound {
  const largest = Math.max(s.services, ...s.sweep.services);
  return {
    limitS: readinessWaitS(s, largest) + 2 * ROLLOUT_TIMEOUT_S + APPLY_ALLOWANCE_S,
    waitingFor: `the workloads of the step and the ${s.dataplane} dataplane on the worker to hold them`,
  };
}

/** Seconds for the checks and the applies themselves, beyond the waits. */
const APPLY_ALLOWANCE_S = 600;

export function deleteScript(s: Pick<Scenario, "workloads" | "receiver">): string {
  return `${shellAssignments({ SCALED_NS: s.workloads.namespace, RECEIVER_NS: s.receiver.namespace })}
export KUBECONFIG=/etc/kubernetes/admin.conf
kubectl delete namespace "$SCALED_NS" "$RECEIVER_NS" --ignore-not-found --wait=false || true
`;
}

export function serviceCounts(set: ServiceSet): ServiceCounts {
  return { total: set.scaled.length, nodePort: set.counts.nodePort, clusterIp: set.counts.clusterIp };
}

/** Where a path's client sends from: the client host, or a pod (what `testbed campaign` execs into). */
export type DitgPathClient =
  | { readonly kind: "external"; readonly host: "client" }
  | {
      readonly kind: "pod";
      readonly namespace: string;
      readonly deployment: string;
      /** Management address of the pod's node (worker 1), where its sender logs land. */
      readonly nodeAddress: string;
      readonly podLogDir: string;
      readonly nodeLogDir: string;
      /** The connection-setup probe inside the pod (the node's build, mounted at the same path). */
      readonly setupProbe: string;
    };

/** One path as the stack serves it (stack output `ditgPaths`, one entry per listed path). */
export interface DitgPath {
  readonly description: string;
  /** The Service the client addresses. */
  readonly service: { readonly namespace: string; readonly name: string; readonly type: "NodePort" | "ClusterIP"; readonly externalTrafficPolicy?: "Local" | "Cluster" };
  /** Per family: where the client sends (worker 1's NodePort address, or the Service's ClusterIP) and on which ports. */
  readonly endpoints: Partial<Record<Family, DitgEndpoint>>;
  /** The path's receiver: its Deployment, the management address of its node, its log directories. */
  readonly receiver: DitgReceiver;
  readonly client: DitgPathClient;
}

/** Seconds a path's receiver Service may take to have a ready endpoint in every family, once its pods run. */
export const PATH_ENDPOINT_WAIT_S = 300;

/** What the apply of a further path's objects needs besides the scenario. */
export interface PathApplyArgs {
  /** The path's manifest file, as uploaded, with its sha256. */
  readonly file: { readonly name: string; readonly sha256: string };
  /** Each Deployment of the path with the node it must run on. */
  readonly placement: readonly { readonly deployment: string; readonly node: string }[];
  /** What would have restarted the nodes (as ApplyScriptArgs.nodesBoot). */
  readonly nodesBoot?: string;
  readonly waitS?: number;
  readonly pollS?: number;
}

/**
 * The apply of one further path (infra: its own command, so that dropping the path from
 * testbed:paths removes its objects): check the uploaded file, server-side apply, wait for each
 * Deployment to roll out and check it runs on its worker, then wait until the receiver Service has
 * a ready endpoint in every family. Ends with `path PATH ready`.
 */
export function pathApplyScript(s: Pick<Scenario, "receiver" | "families">, path: Exclude<ServicePath, "nodeport-local">, a: PathApplyArgs): string {
  const file = remoteArtifactPath(`${MANIFEST_DIR}/${a.file.name}`);
  const waitS = a.waitS ?? PATH_ENDPOINT_WAIT_S;
  const pollS = a.pollS ?? STEP_POLL_S;
  return `set -euo pipefail
${a.nodesBoot ? `# nodes: ${a.nodesBoot}\n` : ""}${shellAssignments({
  PATH_NAME: path,
  RECEIVER_NS: s.receiver.namespace,
  FILE: file,
  FILE_SHA256: a.file.sha256,
  SERVICE: PATH_RECEIVER_NAMES[path],
  FAMILIES: s.families.length,
  PLACEMENT: a.placement.map((p) => `${p.deployment}=${p.node}`).join(" "),
  ROLLOUT_TIMEOUT: `${ROLLOUT_TIMEOUT_S}s`,
  WAIT_S: waitS,
  POLL_S: pollS,
})}
export KUBECONFIG=${ADMIN_KUBECONFIG}
waiting_for="the API server to take the path's manifest"
trap 'echo "stopped while waiting for $waiting_for" >&2; exit 124' TERM
echo "$FILE_SHA256  $FILE" | sha256sum --check --status || { echo "$FILE is not the manifest this step uploaded (sha256 $FILE_SHA256)" >&2; exit 1; }
kubectl apply --server-side --force-conflicts --field-manager=dataplane-testbed -f "$FILE"
for pair in $PLACEMENT; do
  deployment="\${pair%%=*}"
  node="\${pair#*=}"
  waiting_for="deployment $deployment of the $PATH_NAME path to roll out"
  kubectl -n "$RECEIVER_NS" rollout status "deployment/$deployment" --timeout="$ROLLOUT_TIMEOUT"
  on="$(kubectl -n "$RECEIVER_NS" get pods -l "app.kubernetes.io/name=$deployment" -o jsonpath='{.items[*].spec.nodeName}')"
  if [ "$on" != "$node" ]; then
    echo "the pod of $deployment runs on '$on'; the $PATH_NAME path places it on $node" >&2
    exit 1
  fi
done
waiting_for="a ready endpoint of Service $SERVICE in each of its $FAMILIES families"
deadline=$(( $(date +%s) + WAIT_S ))
while :; do
  ready="$(kubectl -n "$RECEIVER_NS" get endpointslices -l "kubernetes.io/service-name=$SERVICE" -o jsonpath='${ENDPOINT_READINESS_JSONPATH}' \\
    | awk -v service="$SERVICE" '$1 == service && $3 ~ /true/ && !($2 in seen) { seen[$2] = 1; n++ } END { print n + 0 }')" || ready=0
  if [ "$ready" -ge "$FAMILIES" ]; then break; fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "after \${WAIT_S} s Service $SERVICE has a ready endpoint in $ready of its $FAMILIES families" >&2
    exit 1
  fi
  sleep "$POLL_S"
done
echo "path $PATH_NAME ready"
`;
}

/** The limit of a path's apply: each rollout, the endpoint wait, and the applies. */
export function pathApplyBound(path: Exclude<ServicePath, "nodeport-local">): ScriptBound {
  const deployments = PATHS[path].client.kind === "pod" ? 2 : 1;
  return { limitS: deployments * ROLLOUT_TIMEOUT_S + PATH_ENDPOINT_WAIT_S + 300, waitingFor: `the ${path} path's receiver${deployments > 1 ? " and client" : ""} to run on their workers` };
}

/** Removes a path's objects (its receiver, its Service, its client pod): the path left testbed:paths. */
export function pathDeleteScript(s: Pick<Scenario, "receiver">, path: Exclude<ServicePath, "nodeport-local">): string {
  const targets = [`deployment/${PATH_RECEIVER_NAMES[path]}`, `service/${PATH_RECEIVER_NAMES[path]}`, ...(PATHS[path].client.kind === "pod" ? [`deployment/${PATH_CLIENT_NAME}`] : [])];
  return `${shellAssignments({ RECEIVER_NS: s.receiver.namespace })}
export KUBECONFIG=${ADMIN_KUBECONFIG}
kubectl -n "$RECEIVER_NS" delete ${targets.join(" ")} --ignore-not-found --wait=false || true
`;
}

/** A path whose client is not a pod mounts no probe. */
const SETUP_PROBE_UNUSED = "";

export interface WorkloadsArgs {
  readonly scenario: Scenario;
  readonly master: HostAccess;
  /** Worker 1: where NodePort traffic arrives, the backend and the paper's receiver run. */
  readonly worker: HostAccess;
  /** Every worker, worker 1 first (testbed:workers); default: worker 1 alone. */
  readonly workers?: readonly NamedHost[];
  /** The cluster's last bootstrap step: nodes Ready, dataplane installed. */
  readonly clusterReady: pulumi.Resource;
  /** The worker's node name, whose dataplane must have programmed the Services. */
  readonly workerNode: pulumi.Output<string>;
  /** Every worker's node name, worker 1 first; needed with more than one worker (pods name their node). */
  readonly workerNodes?: pulumi.Output<string[]>;
  /**
   * Where the connection-setup probe is on worker 1 (infra/setup-probe.ts), resolved once it is
   * built there; needed when a path's client is a pod, which mounts it.
   */
  readonly setupProbeOnWorker?: pulumi.Output<string>;
}

export class Workloads extends pulumi.ComponentResource {
  readonly serviceCounts: ServiceCounts;
  readonly ditgEndpoints: pulumi.Output<Partial<Record<Family, DitgEndpoint>>>;
  readonly ditgReceiver: pulumi.Output<DitgReceiver>;
  /** Every path of testbed:paths, once its receiver (and client) run where the path puts them. */
  readonly ditgPaths: pulumi.Output<Partial<Record<ServicePath, DitgPath>>>;
  /** The apply step: the measurement runs after it. */
  readonly applied: command.remote.Command;
  /** When this step became measurable, in seconds after the apply. */
  readonly step: pulumi.Output<StepReadiness>;

  constructor(name: string, args: WorkloadsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("testbed:workloads:Workloads", name, {}, opts);
    const s = args.scenario;
    const set = buildServiceSet(s);
    const workers: readonly NamedHost[] = args.workers ?? [{ name: "worker", access: args.worker }];
    if (workers.length !== s.workers) throw new Error(`the workloads were given ${workers.length} workers; testbed:workers is ${s.workers}`);
    // One worker: the pods need no node name (workerAffinity). More: they name their node.
    let nodes: pulumi.Output<WorkerNodes | undefined> = pulumi.output(undefined);
    if (s.workers > 1) {
      if (!args.workerNodes) throw new Error(`testbed:workers ${s.workers}: the workloads need the workers' node names`);
      nodes = args.workerNodes;
    }
    const files = manifestFileNames(set);
    const rendered = nodes.apply((n) => renderManifests(s, set, n));
    const connection = pulumi.secret(pulumi.output(args.master.connection));

    // The scaled Services' file grows with N (about 5 MB at 10000): the state keeps its hash only.
    const uploads = files.map((file, i) =>
      (file === SCALED_SERVICES_MANIFEST ? uploadArtifactByHash : uploadArtifact)(
        `${name}-${file.replace(/\.yaml$/, "")}`,
        { connection, artifactPath: `${MANIFEST_DIR}/${file}`, content: rendered.apply((r) => r[i]!.yaml) },
        { parent: this, dependsOn: [args.clusterReady], deletedWith: args.master.server },
      ),
    );
    const hashed = rendered.apply((r) => r.map((f) => ({ name: f.name, sha256: contentHash(f.yaml) })));
    const nodesBoot = pulumi
      .all([args.master.boot, pulumi.all(workers.map((w) => w.access.boot))])
      .apply(([masterBoot, workerBoots]) => [`master ${masterBoot}`, ...workers.map((w, i) => `${w.name} ${workerBoots[i]}`)].join("; "));
    const script = pulumi
      .all([args.workerNode, hashed, nodesBoot])
      .apply(([workerNode, h, boot]) => asRootCommand(applyScript(s, { files: h, workerNode, nodesBoot: boot }), applyBound(s)));
    const cleanup: ScriptBound = { limitS: 300, waitingFor: "the workloads' namespaces to be deleted" };
    this.applied = new command.remote.Command(
      `${name}-apply`,
      {
        connection,
        create: script,
        // Only when the workloads leave the program (or the stack is destroyed with the master kept).
        delete: asRootCommand(deleteScript(s), cleanup),
      },
      { parent: this, dependsOn: uploads, deletedWith: args.master.server, customTimeouts: commandTimeouts(applyBound(s)) },
    );
    this.step = this.applied.stdout.apply(parseStepReadiness);

    this.serviceCounts = serviceCounts(set);
    const datacenterOf = (w: HostAccess): Partial<Record<Family, pulumi.Output<string>>> => w.addresses.datacenter ?? {};
    const managementOf = (w: NamedHost): pulumi.Output<string> => {
      const m = w.access.addresses.management ?? {};
      const address = m.ipv4 ?? m.ipv6;
      if (!address) throw new Error(`the ${w.name} has no management address: the receiver's logs could not be fetched`);
      return address;
    };
    // Where the client sends one family's flows to a path's receiver: on a NodePort path, worker 1's
    // data-center address and the signaling NodePorts; on a ClusterIP path, the ClusterIP and the
    // pod's signaling ports. Each with the ports of the pod's second ITGRecv.
    const endpointOf = (path: ServicePath, address: string): DitgEndpoint => {
      const [first, second] = RECEIVER_INSTANCES.map((i) => pathReceiverPorts(s, path, i));
      const signaling = (p: PathReceiverPorts) => p.signalingNodePort ?? p.signalingPort;
      return { address, signalingPort: signaling(first!), dataPort: first!.dataPort, protocols: ["TCP", "UDP"], alternate: { signalingPort: signaling(second!), dataPort: second!.dataPort } };
    };
    const nodePortEndpoints = (path: ServicePath): pulumi.Output<Partial<Record<Family, DitgEndpoint>>> => {
      const endpoints: Partial<Record<Family, pulumi.Output<DitgEndpoint>>> = {};
      for (const family of s.families) {
        const address = datacenterOf(args.worker)[family];
        if (!address) continue;
        endpoints[family] = address.apply((a) => endpointOf(path, a));
      }
      return pulumi.output(endpoints) as pulumi.Output<Partial<Record<Family, DitgEndpoint>>>;
    };
    this.ditgEndpoints = nodePortEndpoints("nodeport-local");
    const receiverOn = (w: NamedHost, deployment: string) =>
      managementOf(w).apply((nodeAddress): DitgReceiver => ({ namespace: s.receiver.namespace, deployment, nodeAddress, podLogDir: RECEIVER_LOG_DIR, nodeLogDir: RECEIVER_NODE_LOG_DIR }));
    this.ditgReceiver = receiverOn(workers[0]!, RECEIVER_SERVICE_NAME);

    // Each further path: its own manifest and apply, so that leaving testbed:paths removes it.
    const paths: Partial<Record<ServicePath, pulumi.Output<DitgPath>>> = {};
    for (const path of s.paths) {
      const p = PATHS[path];
      const spec = pathReceiverService(s, path);
      const service = { namespace: spec.namespace, name: spec.name, type: spec.type, ...(spec.externalTrafficPolicy ? { externalTrafficPolicy: spec.externalTrafficPolicy } : {}) };
      if (path === "nodeport-local") {
        paths[path] = pulumi
          .all([this.ditgEndpoints, this.ditgReceiver, this.applied.stdout])
          .apply(([endpoints, receiver]): DitgPath => ({ description: p.description, service, endpoints, receiver, client: { kind: "external", host: "client" } }));
        continue;
      }
      const probe = p.client.kind === "pod" ? args.setupProbeOnWorker : pulumi.output(SETUP_PROBE_UNUSED);
      if (!probe) throw new Error(`the ${path} path's client pod mounts the connection-setup probe: the workloads need where it is built on worker 1`);
      const file = pulumi.all([nodes, probe]).apply(([n, probePath]) => renderManifestFile(pathManifestObjects(s, path, { nodes: n, setupProbePath: probePath })));
      const upload = uploadArtifact(
        `${name}-${pathManifestName(path).replace(/\.yaml$/, "")}`,
        { connection, artifactPath: `${MANIFEST_DIR}/${pathManifestName(path)}`, content: file.apply((f) => f.yaml) },
        { parent: this, dependsOn: [this.applied], deletedWith: args.master.server },
      );
      const placement = nodes.apply((n) => [
        { deployment: PATH_RECEIVER_NAMES[path], node: n![p.endpointWorker - 1]! },
        ...(p.client.kind === "pod" ? [{ deployment: PATH_CLIENT_NAME, node: n![p.client.worker - 1]! }] : []),
      ]);
      const bound = pathApplyBound(path);
      const applied = new command.remote.Command(
        `${name}-path-${path}`,
        {
          connection,
          create: pulumi
            .all([file, placement, nodesBoot])
            .apply(([f, where, boot]) => asRootCommand(pathApplyScript(s, path, { file: { name: f.name, sha256: contentHash(f.yaml) }, placement: where, nodesBoot: boot }), bound)),
          // Only when the path leaves testbed:paths; a whole teardown deletes the namespace instead.
          delete: asRootCommand(pathDeleteScript(s, path), cleanup),
        },
        { parent: this, dependsOn: [upload, this.applied], deletedWith: args.master.server, customTimeouts: commandTimeouts(bound) },
      );
      const endpointWorker = workers[p.endpointWorker - 1]!;
      const endpoints =
        spec.type === "NodePort"
          ? nodePortEndpoints(path)
          : pulumi.output(Object.fromEntries(s.families.map((f) => [f, endpointOf(path, spec.clusterIPs[f]!)])) as Partial<Record<Family, DitgEndpoint>>);
      const client: pulumi.Output<DitgPathClient> =
        p.client.kind === "pod"
          ? pulumi.all([managementOf(workers[p.client.worker - 1]!), probe]).apply(([nodeAddress, setupProbe]) => ({
              kind: "pod" as const,
              namespace: s.receiver.namespace,
              deployment: PATH_CLIENT_NAME,
              nodeAddress,
              podLogDir: CLIENT_LOG_DIR,
              nodeLogDir: CLIENT_NODE_LOG_DIR,
              setupProbe,
            }))
          : pulumi.output({ kind: "external" as const, host: "client" as const });
      // Read from the path's apply: the output says where to send once the path is ready.
      paths[path] = pulumi
        .all([endpoints, receiverOn(endpointWorker, PATH_RECEIVER_NAMES[path]), client, applied.stdout])
        .apply(([e, receiver, c]): DitgPath => ({ description: p.description, service, endpoints: e, receiver, client: c }));
    }
    this.ditgPaths = pulumi.output(paths) as pulumi.Output<Partial<Record<ServicePath, DitgPath>>>;
    this.registerOutputs({ serviceCounts: this.serviceCounts, ditgEndpoints: this.ditgEndpoints, ditgReceiver: this.ditgReceiver, ditgPaths: this.ditgPaths, step: this.step });
  }
}
