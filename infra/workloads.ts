// The workloads of one sweep step on the cluster: the scaled Services, their backend and the D-ITG
// receiver. The whole rendered set is applied as one unit by kubectl on the master (server-side
// apply), not as one Pulumi resource per object: at 10000 Services a resource per Service would put
// tens of thousands of entries into the state and make every `pulumi up` take hours, while here the
// state holds one upload per manifest file and one apply command, whatever N is.
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import type { Family } from "../scenario/cidr.js";
import type { Scenario } from "../scenario/schema.js";
import { renderManifests } from "../workloads/manifests.js";
import { RECEIVER_LOG_DIR, RECEIVER_NODE_LOG_DIR } from "../workloads/receiver.js";
import { buildServiceSet, RECEIVER_SERVICE_NAME } from "../workloads/service-set.js";
import type { ServiceSet } from "../workloads/service-model.js";
import { clusterDataplane } from "./cluster/dataplanes/index.js";
import { readinessWaitS, applyTimeout } from "./cluster/readiness.js";
import { asRootCommand, shellAssignments } from "./cluster/shell.js";
import type { HostAccess } from "./hosts.js";
import { contentHash, remoteArtifactPath, uploadArtifact } from "./remote-files.js";

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
  /** Manifest files, applied in this order. */
  readonly files: readonly string[];
  /** The worker's node name: its dataplane is the one that must have programmed the Services. */
  readonly workerNode: string;
  /**
   * sha256 over every manifest. It is part of the script, so that any change of the rendered set is
   * a change of the command's `create`, which pulumi-command runs again as an update; a trigger
   * would replace the command instead, and a replacement runs the old command's `delete`.
   */
  readonly setHash: string;
}

/** The line the apply script ends with; `parseStepReadiness` reads it. */
export const STEP_LINE_PREFIX = "step ";

/**
 * The apply script: server-side apply in file order, prune scaled Services above N, wait for the
 * pods, then for proof that the step is what it claims to be: every scaled Service has a ready
 * endpoint in every family, and the worker's dataplane forwards every scaled ClusterIP. It ends
 * with how long each took after the apply (STEP_LINE_PREFIX).
 */
export function applyScript(s: Pick<Scenario, "workloads" | "receiver" | "services" | "families" | "dataplane">, a: ApplyScriptArgs): string {
  return `set -euo pipefail
# manifests: ${a.setHash}
${shellAssignments({
  SCALED_NS: s.workloads.namespace,
  RECEIVER_NS: s.receiver.namespace,
  KEEP: s.services,
  FAMILIES: s.families.length,
  WORKER_NODE: a.workerNode,
  WAIT_S: readinessWaitS(s, s.services),
})}
export KUBECONFIG=/etc/kubernetes/admin.conf
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# The ClusterIPs the worker's dataplane forwards to a backend (the ${s.dataplane} dataplane's own view).
# (Not indented: the dataplane's snippet may hold a program in a language that minds indentation.)
programmed_cluster_ips() {
${clusterDataplane(s.dataplane).programmedClusterIps}
}
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

${a.files.map((f) => `kubectl apply --server-side --force-conflicts --field-manager=dataplane-testbed -f ${remoteArtifactPath(`${MANIFEST_DIR}/${f}`)}`).join("\n")}
# Services of a larger earlier step (svc-NNNNN with NNNNN > KEEP) are pruned: the set of step N is a
# prefix of every larger step's set, so the number in the name decides.
kubectl -n "$SCALED_NS" get services -o name \\
  | awk -F- -v keep="$KEEP" '$NF ~ /^[0-9]+$/ && $NF + 0 > keep' \\
  | xargs -r kubectl -n "$SCALED_NS" delete --wait=false
kubectl -n "$SCALED_NS" rollout status deployment/scale-backend --timeout=10m
kubectl -n "$RECEIVER_NS" rollout status deployment/${RECEIVER_SERVICE_NAME} --timeout=10m
applied="$(now)"
deadline=$(( $(date +%s) + WAIT_S ))

# 1. Every scaled Service has a ready endpoint in every family. Until then kube-proxy writes REJECT
#    rules for the ones without, which is not the rule set the step claims to measure.
want=$((KEEP * FAMILIES))
while :; do
  ready="$(kubectl -n "$SCALED_NS" get endpointslices -o jsonpath='{range .items[*]}{.metadata.labels.kubernetes\\.io/service-name}{" "}{.addressType}{" "}{.endpoints[*].conditions.ready}{"\\n"}{end}' \\
    | awk '$3 ~ /true/ { seen[$1 " " $2] = 1 } END { print length(seen) }')"
  if [ "$ready" -ge "$want" ]; then break; fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "after \${WAIT_S} s only $ready of $want (Service, family) pairs have a ready endpoint; kube-controller-manager writes them at its --kube-api-qps" >&2
    exit 1
  fi
  sleep 5
done
endpoints_ready="$(since "$applied")"

# 2. The worker's dataplane forwards every scaled ClusterIP: read from its own rules or maps.
kubectl -n "$SCALED_NS" get services -o jsonpath='{range .items[*]}{range .spec.clusterIPs[*]}{@}{"\\n"}{end}{end}' | sort -u >"$work/expected"
count="$(kubectl -n "$SCALED_NS" get services --no-headers | wc -l)"
if [ "$count" -ne "$KEEP" ]; then
  echo "namespace $SCALED_NS holds $count Services after the apply, the step asks for $KEEP" >&2
  exit 1
fi
while :; do
  programmed_cluster_ips | sort -u >"$work/programmed"
  missing="$(comm -23 "$work/expected" "$work/programmed" | wc -l)"
  if [ "$missing" -eq 0 ]; then break; fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "after \${WAIT_S} s the ${s.dataplane} dataplane on $WORKER_NODE still misses $missing of $(wc -l <"$work/expected") scaled ClusterIPs, e.g. $(comm -23 "$work/expected" "$work/programmed" | head -n 3 | tr '\\n' ' ')" >&2
    exit 1
  fi
  sleep 5
done
programmed="$(since "$applied")"
echo "${STEP_LINE_PREFIX}services=$KEEP endpointsReadyAfterS=$endpoints_ready programmedAfterS=$programmed"
`;
}

/** When a step became measurable: seconds after the apply (the apply script's last line). */
export interface StepReadiness {
  readonly services: number;
  readonly endpointsReadyAfterS: number;
  readonly programmedAfterS: number;
}

export function parseStepReadiness(stdout: string): StepReadiness {
  const line = stdout.split("\n").find((l) => l.startsWith(STEP_LINE_PREFIX));
  const field = (name: string) => {
    const m = new RegExp(`\\b${name}=([0-9.]+)`).exec(line ?? "");
    if (!m) throw new Error(`the apply step printed no "${STEP_LINE_PREFIX}... ${name}=..." line; its output ends: ${stdout.trim().split("\n").slice(-3).join(" / ")}`);
    return Number(m[1]);
  };
  return { services: field("services"), endpointsReadyAfterS: field("endpointsReadyAfterS"), programmedAfterS: field("programmedAfterS") };
}

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

    const uploads = files.map((f) =>
      uploadArtifact(
        `${name}-${f.name.replace(/\.yaml$/, "")}`,
        { connection, artifactPath: `${MANIFEST_DIR}/${f.name}`, content: f.yaml },
        { parent: this, dependsOn: [args.clusterReady], deletedWith: args.master.server },
      ),
    );
    // One hash over every file: any change in the set (N, ports, image) re-applies the whole unit,
    // as an update of the one command (see ApplyScriptArgs.setHash).
    const setHash = contentHash(files.map((f) => `${f.name}\n${f.yaml}`).join("\n"));
    const script = args.workerNode.apply((workerNode) => asRootCommand(applyScript(s, { files: files.map((f) => f.name), workerNode, setHash })));
    const timeout = applyTimeout(s);
    this.applied = new command.remote.Command(
      `${name}-apply`,
      {
        connection,
        create: script,
        // Only when the workloads leave the program (or the stack is destroyed with the master kept).
        delete: asRootCommand(deleteScript(s)),
      },
      { parent: this, dependsOn: uploads, deletedWith: args.master.server, customTimeouts: { create: timeout, update: timeout } },
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
