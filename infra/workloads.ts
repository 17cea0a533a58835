// The workloads of one sweep step on the cluster: the scaled Services, their backend and the D-ITG
// receiver. The whole rendered set is applied as one unit by kubectl on the master (server-side
// apply), not as one Pulumi resource per object: at 10000 Services a resource per Service would put
// tens of thousands of entries into the state and make every `pulumi up` take hours, while here the
// state holds one upload per manifest file and one apply command, whatever N is.
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import type { Family } from "../scenario/cidr.js";
import type { Scenario } from "../scenario/schema.js";
import { renderManifests, SCALED_SERVICES_MANIFEST } from "../workloads/manifests.js";
import { RECEIVER_LOG_DIR, RECEIVER_NODE_LOG_DIR } from "../workloads/receiver.js";
import { buildServiceSet, RECEIVER_SERVICE_NAME } from "../workloads/service-set.js";
import type { ServiceSet } from "../workloads/service-model.js";
import { readinessWaitS } from "./cluster/readiness.js";
import { asRootCommand, commandTimeouts, shellAssignments, shellQuote, type ScriptBound } from "./cluster/shell.js";
import type { HostAccess } from "./hosts.js";
import { contentHash, remoteArtifactPath, uploadArtifact, uploadArtifactByHash } from "./remote-files.js";
import { GATE_PRELUDE, parseStepReadiness, stepGateAssignments, stepGateBody, type StepReadiness } from "./step-gate.js";

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

export interface WorkloadsArgs {
  readonly scenario: Scenario;
  readonly master: HostAccess;
  readonly worker: HostAccess;
  /** The cluster's last bootstrap step: nodes Ready, dataplane installed. */
  readonly clusterReady: pulumi.Resource;
  /** The worker's node name, whose dataplane must have programmed the Services. */
  readonly workerNode: pulumi.Output<string>;
}

export class Workloads extends pulumi.ComponentResource {
  readonly serviceCounts: ServiceCounts;
  readonly ditgEndpoints: pulumi.Output<Partial<Record<Family, DitgEndpoint>>>;
  readonly ditgReceiver: pulumi.Output<DitgReceiver>;
  /** The apply step: the measurement runs after it. */
  readonly applied: command.remote.Command;
  /** When this step became measurable, in seconds after the apply. */
  readonly step: pulumi.Output<StepReadiness>;

  constructor(name: string, args: WorkloadsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("testbed:workloads:Workloads", name, {}, opts);
    const s = args.scenario;
    const set = buildServiceSet(s);
    const files = renderManifests(s, set);
    const connection = pulumi.secret(pulumi.output(args.master.connection));

    // The scaled Services' file grows with N (about 5 MB at 10000): the state keeps its hash only.
    const uploads = files.map((f) =>
      (f.name === SCALED_SERVICES_MANIFEST ? uploadArtifactByHash : uploadArtifact)(
        `${name}-${f.name.replace(/\.yaml$/, "")}`,
        { connection, artifactPath: `${MANIFEST_DIR}/${f.name}`, content: f.yaml },
        { parent: this, dependsOn: [args.clusterReady], deletedWith: args.master.server },
      ),
    );
    const hashed = files.map((f) => ({ name: f.name, sha256: contentHash(f.yaml) }));
    const script = pulumi
      .all([args.workerNode, args.master.boot, args.worker.boot])
      .apply(([workerNode, masterBoot, workerBoot]) =>
        asRootCommand(applyScript(s, { files: hashed, workerNode, nodesBoot: `master ${masterBoot}; worker ${workerBoot}` }), applyBound(s)),
      );
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
    const workerAddresses = args.worker.addresses.datacenter ?? {};
    const endpoints: Partial<Record<Family, pulumi.Output<DitgEndpoint>>> = {};
    for (const family of s.families) {
      const address = workerAddresses[family];
      if (!address) continue;
      endpoints[family] = address.apply(
        (a): DitgEndpoint => ({ address: a, signalingPort: s.receiver.signalingNodePort, dataPort: s.receiver.dataPort, protocols: ["TCP", "UDP"] }),
      );
    }
    this.ditgEndpoints = pulumi.output(endpoints) as pulumi.Output<Partial<Record<Family, DitgEndpoint>>>;
    const management = args.worker.addresses.management ?? {};
    const workerManagement = management.ipv4 ?? management.ipv6;
    if (!workerManagement) throw new Error("the worker has no management address: the receiver's logs could not be fetched");
    this.ditgReceiver = workerManagement.apply(
      (nodeAddress): DitgReceiver => ({
        namespace: s.receiver.namespace,
        deployment: RECEIVER_SERVICE_NAME,
        nodeAddress,
        podLogDir: RECEIVER_LOG_DIR,
        nodeLogDir: RECEIVER_NODE_LOG_DIR,
      }),
    );
    this.registerOutputs({ serviceCounts: this.serviceCounts, ditgEndpoints: this.ditgEndpoints, ditgReceiver: this.ditgReceiver, step: this.step });
  }
}
