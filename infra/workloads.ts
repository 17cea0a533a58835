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
import { buildServiceSet, RECEIVER_SERVICE_NAME, SCALED_BACKEND_LABELS } from "../workloads/service-set.js";
import type { ServiceSet } from "../workloads/service-model.js";
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

/** Where the receiver runs and writes its logs, as `testbed campaign` needs it (measure/cloud-backend.ts). */
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

/** The apply script: server-side apply in file order, prune scaled Services above N, wait for the pods. */
export function applyScript(s: Pick<Scenario, "workloads" | "receiver" | "services">, files: readonly string[]): string {
  const selector = Object.entries(SCALED_BACKEND_LABELS)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  return `set -euo pipefail
${shellAssignments({ SCALED_NS: s.workloads.namespace, RECEIVER_NS: s.receiver.namespace, KEEP: s.services, SELECTOR: selector })}
export KUBECONFIG=/etc/kubernetes/admin.conf
${files.map((f) => `kubectl apply --server-side --force-conflicts --field-manager=dataplane-testbed -f ${remoteArtifactPath(`${MANIFEST_DIR}/${f}`)}`).join("\n")}
# Services of a larger earlier step (svc-NNNNN with NNNNN > KEEP) are pruned: the set of step N is a
# prefix of every larger step's set, so the number in the name decides.
kubectl -n "$SCALED_NS" get services -o name \\
  | awk -F- -v keep="$KEEP" '$NF ~ /^[0-9]+$/ && $NF + 0 > keep' \\
  | xargs -r kubectl -n "$SCALED_NS" delete --wait=false
kubectl -n "$SCALED_NS" rollout status deployment/scale-backend --timeout=10m
kubectl -n "$RECEIVER_NS" rollout status deployment/${RECEIVER_SERVICE_NAME} --timeout=10m
# The scaled Services must have their endpoint before a step is measured (no endpoints = other rules).
kubectl -n "$SCALED_NS" get pods -l "$SELECTOR" -o jsonpath='{.items[0].status.podIP}' | grep -q .
echo "applied $(kubectl -n "$SCALED_NS" get services --no-headers | wc -l) scaled Services"
`;
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
}

export class Workloads extends pulumi.ComponentResource {
  readonly serviceCounts: ServiceCounts;
  readonly ditgEndpoints: pulumi.Output<Partial<Record<Family, DitgEndpoint>>>;
  readonly ditgReceiver: pulumi.Output<DitgReceiver>;
  /** The apply step: the measurement runs after it. */
  readonly applied: command.remote.Command;

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
    // One hash over every file: any change in the set (N, ports, image) re-applies the whole unit.
    const setHash = contentHash(files.map((f) => `${f.name}\n${f.yaml}`).join("\n"));
    this.applied = new command.remote.Command(
      `${name}-apply`,
      {
        connection,
        create: asRootCommand(applyScript(s, files.map((f) => f.name))),
        delete: asRootCommand(deleteScript(s)),
        triggers: [setHash],
      },
      { parent: this, dependsOn: uploads, deletedWith: args.master.server, customTimeouts: { create: "30m", update: "30m" } },
    );

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
    this.registerOutputs({ serviceCounts: this.serviceCounts, ditgEndpoints: this.ditgEndpoints, ditgReceiver: this.ditgReceiver });
  }
}
