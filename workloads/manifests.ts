// Kubernetes manifests of the workloads: namespaces, the scaled Services' backend, the scaled
// Services (one multi-document file) and the D-ITG receiver. Pure and deterministic: the same
// scenario and Service set give the same bytes.
import { stringify } from "yaml";
import type { IDeployment } from "kubernetes-models/apps/v1";
import type { IAffinity, IContainer, INamespace, IPodSpec, IService } from "kubernetes-models/v1";
import type { Family } from "../scenario/cidr.js";
import { ENTRY_WORKER, PATHS, type ServicePath } from "../scenario/paths.js";
import { RECEIVER_INSTANCES, type Scenario } from "../scenario/schema.js";
import {
  LIBSCTP_DEBIAN_VERSION,
  DITG_DEBIAN_VERSION,
  PACKAGE_DIR,
  RECEIVER_LOG_DIR,
  RECEIVER_NODE_LOG_DIR,
  packageFetchScript,
  receiverStartScript,
  signalingListenCheck,
} from "./receiver.js";
import {
  PATH_CLIENT_LABELS,
  PATH_CLIENT_NAME,
  PATH_RECEIVER_NAMES,
  pathReceiverLabels,
  pathReceiverPorts,
  pathReceiverService,
  SCALED_BACKEND_LABELS,
  SCALED_SERVICE_PORT,
} from "./service-set.js";
import type { ServiceSet, ServiceSpec } from "./service-model.js";

/** Image of the scaled Services' backend: the pause container that kubeadm nodes already hold. */
export const BACKEND_IMAGE = "registry.k8s.io/pause:3.10";

const PART_OF = { "app.kubernetes.io/part-of": "dataplane-testbed" } as const;

const API_FAMILY: Record<Family, "IPv4" | "IPv6"> = { ipv4: "IPv4", ipv6: "IPv6" };

/**
 * Keeps a pod off the control-plane node. The paper's cluster has one worker, so this pins the
 * backend and the receiver to it without knowing its name; both then sit where the NodePort
 * traffic arrives, as ETP=Local needs.
 */
const ON_WORKER: IAffinity = {
  nodeAffinity: {
    requiredDuringSchedulingIgnoredDuringExecution: {
      nodeSelectorTerms: [{ matchExpressions: [{ key: "node-role.kubernetes.io/control-plane", operator: "DoesNotExist" }] }],
    },
  },
};

/** The node names of the workers, worker 1 first, as the cluster reports them (its node table). */
export type WorkerNodes = readonly string[];

/**
 * The affinity that puts a pod on the n-th worker (1-based). With one worker, "not the control
 * plane" is that worker and the manifests need no node name (ON_WORKER, the paper's cluster); with
 * more, the pod names its node (kubernetes.io/hostname, which kubelet sets to the node's name).
 */
export function workerAffinity(s: Pick<Scenario, "workers">, worker: number, nodes?: WorkerNodes): IAffinity {
  if (s.workers === 1 && worker === 1) return ON_WORKER;
  const node = nodes?.[worker - 1];
  if (!node) {
    throw new Error(`a pod placed on worker ${worker} needs the worker's node name; ${nodes === undefined ? "none were given" : `the cluster reported ${nodes.length}`} (testbed:workers ${s.workers})`);
  }
  return {
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [{ matchExpressions: [{ key: "kubernetes.io/hostname", operator: "In", values: [node] }] }],
      },
    },
  };
}

export type ManifestObject = INamespace | IService | IDeployment;

export interface ManifestFile {
  /** File name, ending in .yaml; the array's order is the order to apply. */
  readonly name: string;
  readonly objects: readonly ManifestObject[];
}

function namespaceObject(name: string): INamespace {
  return { apiVersion: "v1", kind: "Namespace", metadata: { name, labels: { ...PART_OF } } };
}

/** A ServiceSpec as a Kubernetes Service object; families in the scenario's order. */
export function serviceObject(spec: ServiceSpec, families: readonly Family[]): IService {
  const present = families.filter((f) => spec.clusterIPs[f] !== undefined);
  const clusterIPs = present.map((f) => spec.clusterIPs[f]!);
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: spec.name, namespace: spec.namespace, labels: { ...PART_OF } },
    spec: {
      type: spec.type,
      selector: { ...spec.selector },
      ipFamilyPolicy: present.length > 1 ? "RequireDualStack" : "SingleStack",
      ipFamilies: present.map((f) => API_FAMILY[f]),
      clusterIP: clusterIPs[0],
      clusterIPs,
      ...(spec.externalTrafficPolicy ? { externalTrafficPolicy: spec.externalTrafficPolicy } : {}),
      ports: spec.ports.map((p) => ({
        name: p.name,
        protocol: p.protocol,
        port: p.port,
        targetPort: p.targetPort,
        ...(p.nodePort !== undefined ? { nodePort: p.nodePort } : {}),
      })),
    },
  };
}

/**
 * The one always-Ready pod that every scaled Service selects (no readiness probe: Ready once
 * started), on worker 1: where NodePort traffic arrives, so that externalTrafficPolicy Local finds
 * its endpoint there and the worker's dataplane holds the full rule set the paper measured.
 */
export function backendDeployment(s: Pick<Scenario, "workloads"> & Partial<Pick<Scenario, "workers">>, affinity: IAffinity = ON_WORKER): IDeployment {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "scale-backend", namespace: s.workloads.namespace, labels: { ...PART_OF } },
    spec: {
      replicas: 1,
      selector: { matchLabels: { ...SCALED_BACKEND_LABELS } },
      template: {
        metadata: { labels: { ...SCALED_BACKEND_LABELS, ...PART_OF } },
        spec: {
          affinity,
          automountServiceAccountToken: false,
          // Service links would put 7 variables per Service of the namespace into the pod: at 10 000
          // Services the container's environment no longer fits.
          enableServiceLinks: false,
          terminationGracePeriodSeconds: 0,
          containers: [
            {
              name: "pause",
              image: BACKEND_IMAGE,
              ports: [{ name: SCALED_SERVICE_PORT.name, containerPort: SCALED_SERVICE_PORT.targetPort, protocol: "TCP" }],
              resources: { requests: { cpu: "1m", memory: "8Mi" }, limits: { memory: "32Mi" } },
            },
          ],
        },
      },
    },
  };
}

/** The pinned D-ITG a pod runs, named on its Deployment. */
const DITG_ANNOTATION = { "dataplane-testbed/d-itg": `d-itg=${DITG_DEBIAN_VERSION} libsctp1=${LIBSCTP_DEBIAN_VERSION}` } as const;

/** The init container that fetches the pinned D-ITG packages into the pod's `packages` volume (receiver.ts). */
function ditgFetchContainer(image: string): IContainer {
  return { name: "fetch-d-itg", image, command: ["/bin/sh", "-c", packageFetchScript()], volumeMounts: [{ name: "packages", mountPath: PACKAGE_DIR }] };
}

/**
 * One pod of D-ITG (a receiver, or the client pod) as a Deployment: never two at once (one endpoint,
 * one log per flow), on the node `affinity` names, with the pinned D-ITG fetched by an init container.
 */
function ditgDeployment(a: {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly affinity: IAffinity;
  readonly terminationGracePeriodSeconds: number;
  readonly image: string;
  readonly pod: Pick<IPodSpec, "containers" | "volumes">;
}): IDeployment {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: a.name, namespace: a.namespace, labels: { ...PART_OF }, annotations: { ...DITG_ANNOTATION } },
    spec: {
      replicas: 1,
      strategy: { type: "Recreate" },
      selector: { matchLabels: { ...a.labels } },
      template: {
        metadata: { labels: { ...a.labels, ...PART_OF } },
        spec: {
          affinity: a.affinity,
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: a.terminationGracePeriodSeconds,
          restartPolicy: "Always",
          initContainers: [ditgFetchContainer(a.image)],
          containers: a.pod.containers,
          volumes: a.pod.volumes,
        },
      },
    },
  };
}

/**
 * The D-ITG receiver of a path (see receiver.ts for the design: two ITGRecv in one container): the
 * paper's `ditg-receiver` by default, another path's under its own name, labels and data ports, on
 * the node `affinity` names.
 */
export function receiverDeployment(s: Pick<Scenario, "receiver" | "families">, opts: { readonly path?: ServicePath; readonly affinity?: IAffinity } = {}): IDeployment {
  const r = s.receiver;
  const path = opts.path ?? "nodeport-local";
  const labels = pathReceiverLabels(path);
  const check = { exec: { command: ["/bin/sh", "-c", signalingListenCheck(s)] } };
  return ditgDeployment({
    name: PATH_RECEIVER_NAMES[path],
    namespace: r.namespace,
    labels,
    affinity: opts.affinity ?? ON_WORKER,
    terminationGracePeriodSeconds: 10,
    image: r.image,
    pod: {
      containers: [
        {
          name: "itgrecv",
          image: r.image,
          command: ["/bin/sh", "-c", receiverStartScript(s)],
          // Both ITGRecv of the pod (receiver.ts), as its Service names them.
          ports: RECEIVER_INSTANCES.flatMap((instance) => {
            const ports = pathReceiverPorts(s, path, instance);
            const suffix = instance === 0 ? "" : `-${instance + 1}`;
            return [
              { name: `signaling${suffix}`, containerPort: ports.signalingPort, protocol: "TCP" },
              { name: `data-tcp${suffix}`, containerPort: ports.dataPort, protocol: "TCP" },
              { name: `data-udp${suffix}`, containerPort: ports.dataPort, protocol: "UDP" },
            ];
          }),
          // Exec checks only: a TCP probe's reset on the signaling port would kill ITGRecv.
          startupProbe: { ...check, periodSeconds: 2, failureThreshold: 30 },
          readinessProbe: { ...check, periodSeconds: 5, failureThreshold: 1 },
          livenessProbe: { ...check, periodSeconds: 10, failureThreshold: 3 },
          // ITGRecv runs as PID 1 and handles SIGINT only; SIGTERM would wait out the grace period.
          lifecycle: { preStop: { exec: { command: ["/bin/sh", "-c", "kill -INT 1"] } } },
          resources: { requests: { cpu: "100m", memory: "64Mi" } },
          volumeMounts: [
            { name: "packages", mountPath: PACKAGE_DIR },
            { name: "logs", mountPath: RECEIVER_LOG_DIR },
          ],
        },
      ],
      volumes: [
        { name: "packages", emptyDir: {} },
        { name: "logs", hostPath: { path: RECEIVER_NODE_LOG_DIR, type: "DirectoryOrCreate" } },
      ],
    },
  });
}

/** The file of the scaled Services: the one whose size grows with the step's N. */
export const SCALED_SERVICES_MANIFEST = "scale-services.yaml";

type ManifestScenario = Pick<Scenario, "workloads" | "receiver" | "families"> & Partial<Pick<Scenario, "workers">>;

/**
 * Every object, grouped into files in apply order. An empty sweep step has no Services file. The
 * backend and the paper's receiver are on worker 1; with more than one worker, `nodes` names them.
 */
export function manifestObjects(s: ManifestScenario, set: ServiceSet, nodes?: WorkerNodes): ManifestFile[] {
  const onEntry = workerAffinity({ workers: s.workers ?? 1 }, ENTRY_WORKER, nodes);
  const objects: Record<string, () => ManifestObject[]> = {
    "namespaces.yaml": () => [...new Set([s.workloads.namespace, s.receiver.namespace])].map(namespaceObject),
    "scale-backend.yaml": () => [backendDeployment(s, onEntry)],
    [SCALED_SERVICES_MANIFEST]: () => set.scaled.map((spec) => serviceObject(spec, s.families)),
    "ditg-receiver.yaml": () => [receiverDeployment(s, { affinity: onEntry }), serviceObject(set.receiver, s.families)],
  };
  return manifestFileNames(set).map((name) => ({ name, objects: objects[name]!() }));
}

/** The files of manifestObjects, in apply order; known before the nodes are (uploads are declared per file). */
export function manifestFileNames(set: ServiceSet): string[] {
  return ["namespaces.yaml", "scale-backend.yaml", ...(set.scaled.length > 0 ? [SCALED_SERVICES_MANIFEST] : []), "ditg-receiver.yaml"];
}

/** The file of a path beyond the paper's: its own, applied and removed with the path (infra/workloads.ts). */
export function pathManifestName(path: ServicePath): string {
  return `ditg-${path}.yaml`;
}

/** Where the client pod writes its D-ITG sender logs inside the pod... */
export const CLIENT_LOG_DIR = "/logs";
/** ...and on its node (a hostPath), where `testbed campaign` fetches them over the management network. */
export const CLIENT_NODE_LOG_DIR = "/var/lib/dataplane-testbed/ditg-client-logs";

/** The process the client pod keeps running: the worker's hop probes find the pod by it (and the pod's hostname). */
export const CLIENT_POD_PROCESS = "sleep";

/**
 * The client pod's start: D-ITG installed from the init container's packages (as the receiver
 * does), then nothing but staying up; the campaign runs ITGSend and the probe in it (kubectl exec).
 * `sleep` as PID 1 ignores SIGTERM: the pod has no grace period to wait out.
 */
export function clientStartScript(): string {
  return ["set -eu", "if ! command -v ITGSend >/dev/null 2>&1; then", `  dpkg -i ${PACKAGE_DIR}/*.deb >/dev/null`, "fi", `exec ${CLIENT_POD_PROCESS} infinity`, ""].join("\n");
}

/** Exit 0 once the client pod has its tools: ITGSend and the connection-setup probe at `probePath`. */
export function clientReadyCheck(probePath: string): string {
  return `command -v ITGSend >/dev/null 2>&1 && [ -x ${probePath} ]`;
}

/**
 * The clusterip path's client: a pod on worker 1 with D-ITG (fetched by an init container, as the
 * receiver's) and the connection-setup probe the stack built on that worker (infra/setup-probe.ts),
 * mounted from the node at the same path. Its sender logs land on the node (CLIENT_NODE_LOG_DIR).
 */
export function clientDeployment(s: Pick<Scenario, "receiver">, a: { readonly affinity: IAffinity; readonly setupProbePath: string }): IDeployment {
  const r = s.receiver;
  const check = { exec: { command: ["/bin/sh", "-c", clientReadyCheck(a.setupProbePath)] } };
  return ditgDeployment({
    name: PATH_CLIENT_NAME,
    namespace: r.namespace,
    labels: PATH_CLIENT_LABELS,
    affinity: a.affinity,
    terminationGracePeriodSeconds: 0,
    image: r.image,
    pod: {
      containers: [
        {
          name: "ditg-client",
          image: r.image,
          command: ["/bin/sh", "-c", clientStartScript()],
          startupProbe: { ...check, periodSeconds: 2, failureThreshold: 30 },
          readinessProbe: { ...check, periodSeconds: 10, failureThreshold: 1 },
          resources: { requests: { cpu: "100m", memory: "64Mi" } },
          volumeMounts: [
            { name: "packages", mountPath: PACKAGE_DIR },
            { name: "logs", mountPath: CLIENT_LOG_DIR },
            { name: "setup-probe", mountPath: a.setupProbePath, readOnly: true },
          ],
        },
      ],
      volumes: [
        { name: "packages", emptyDir: {} },
        { name: "logs", hostPath: { path: CLIENT_NODE_LOG_DIR, type: "DirectoryOrCreate" } },
        // Built on the node by the stack before this pod is applied: a missing file keeps the pod pending.
        { name: "setup-probe", hostPath: { path: a.setupProbePath, type: "File" } },
      ],
    },
  });
}

/**
 * The objects of a path beyond the paper's, in apply order: its receiver on the path's endpoint
 * worker and its receiver Service, and, for a path whose client is a pod, that pod on its worker.
 */
export function pathManifestObjects(
  s: Pick<Scenario, "receiver" | "families" | "kubernetes" | "workers">,
  path: Exclude<ServicePath, "nodeport-local">,
  a: { readonly nodes?: WorkerNodes; readonly setupProbePath: string },
): ManifestFile {
  const p = PATHS[path];
  const objects: ManifestObject[] = [
    receiverDeployment(s, { path, affinity: workerAffinity(s, p.endpointWorker, a.nodes) }),
    serviceObject(pathReceiverService(s, path), s.families),
  ];
  if (p.client.kind === "pod") objects.push(clientDeployment(s, { affinity: workerAffinity(s, p.client.worker, a.nodes), setupProbePath: a.setupProbePath }));
  return { name: pathManifestName(path), objects };
}

/** One file's objects as multi-document YAML. */
export function renderManifestFile(file: ManifestFile): { name: string; yaml: string } {
  return { name: file.name, yaml: file.objects.map((o) => stringify(o, { lineWidth: 0, aliasDuplicateObjects: false })).join("---\n") };
}

/** The manifests as multi-document YAML files. */
export function renderManifests(s: ManifestScenario, set: ServiceSet, nodes?: WorkerNodes): { name: string; yaml: string }[] {
  return manifestObjects(s, set, nodes).map(renderManifestFile);
}
