// Kubernetes manifests of the workloads: namespaces, the scaled Services' backend, the scaled
// Services (one multi-document file) and the D-ITG receiver. Pure and deterministic: the same
// scenario and Service set give the same bytes.
import { stringify } from "yaml";
import type { IDeployment } from "kubernetes-models/apps/v1";
import type { IAffinity, INamespace, IService } from "kubernetes-models/v1";
import type { Family } from "../scenario/cidr.js";
import type { Scenario } from "../scenario/schema.js";
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
import { RECEIVER_LABELS, SCALED_BACKEND_LABELS, SCALED_SERVICE_PORT } from "./service-set.js";
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

/** The one always-Ready pod that every scaled Service selects (no readiness probe: Ready once started). */
export function backendDeployment(s: Pick<Scenario, "workloads">): IDeployment {
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
          affinity: ON_WORKER,
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

/** The D-ITG receiver (see receiver.ts for the design). */
export function receiverDeployment(s: Pick<Scenario, "receiver" | "families">): IDeployment {
  const r = s.receiver;
  const check = { exec: { command: ["/bin/sh", "-c", signalingListenCheck(s)] } };
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name: "ditg-receiver",
      namespace: r.namespace,
      labels: { ...PART_OF },
      annotations: { "dataplane-testbed/d-itg": `d-itg=${DITG_DEBIAN_VERSION} libsctp1=${LIBSCTP_DEBIAN_VERSION}` },
    },
    spec: {
      replicas: 1,
      // Never two receivers at once: one endpoint, one log per flow.
      strategy: { type: "Recreate" },
      selector: { matchLabels: { ...RECEIVER_LABELS } },
      template: {
        metadata: { labels: { ...RECEIVER_LABELS, ...PART_OF } },
        spec: {
          affinity: ON_WORKER,
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: 10,
          restartPolicy: "Always",
          initContainers: [
            {
              name: "fetch-d-itg",
              image: r.image,
              command: ["/bin/sh", "-c", packageFetchScript()],
              volumeMounts: [{ name: "packages", mountPath: PACKAGE_DIR }],
            },
          ],
          containers: [
            {
              name: "itgrecv",
              image: r.image,
              command: ["/bin/sh", "-c", receiverStartScript(s)],
              ports: [
                { name: "signaling", containerPort: r.signalingPort, protocol: "TCP" },
                { name: "data-tcp", containerPort: r.dataPort, protocol: "TCP" },
                { name: "data-udp", containerPort: r.dataPort, protocol: "UDP" },
              ],
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
      },
    },
  };
}

/** The file of the scaled Services: the one whose size grows with the step's N. */
export const SCALED_SERVICES_MANIFEST = "scale-services.yaml";

/** Every object, grouped into files in apply order. An empty sweep step has no Services file. */
export function manifestObjects(s: Pick<Scenario, "workloads" | "receiver" | "families">, set: ServiceSet): ManifestFile[] {
  const namespaces = [...new Set([s.workloads.namespace, s.receiver.namespace])].map(namespaceObject);
  const files: ManifestFile[] = [
    { name: "namespaces.yaml", objects: namespaces },
    { name: "scale-backend.yaml", objects: [backendDeployment(s)] },
  ];
  if (set.scaled.length > 0) {
    files.push({ name: SCALED_SERVICES_MANIFEST, objects: set.scaled.map((spec) => serviceObject(spec, s.families)) });
  }
  files.push({ name: "ditg-receiver.yaml", objects: [receiverDeployment(s), serviceObject(set.receiver, s.families)] });
  return files;
}

/** The manifests as multi-document YAML files. */
export function renderManifests(
  s: Pick<Scenario, "workloads" | "receiver" | "families">,
  set: ServiceSet,
): { name: string; yaml: string }[] {
  return manifestObjects(s, set).map((file) => ({
    name: file.name,
    yaml: file.objects.map((o) => stringify(o, { lineWidth: 0, aliasDuplicateObjects: false })).join("---\n"),
  }));
}
