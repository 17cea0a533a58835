// kubeadm configuration files (v1beta4) for the master (init) and the worker (join).
// Node IPs sit on the data-center network, where the measured traffic arrives; the API server
// listens on the management network, so control traffic never shares the measured path and the
// worker reaches the API over a network every host has.
import { stringify } from "yaml";
import type { Family } from "../../scenario/cidr.js";
import type { Scenario } from "../../scenario/schema.js";
import { clusterDataplane } from "./dataplanes/index.js";
import { CONTAINERD_SOCKET } from "./node-prep.js";

export const KUBEADM_API = "kubeadm.k8s.io/v1beta4";
export const API_SERVER_PORT = 6443;

/** Where the rendered files live under the artifact root (and under `plan --out`). */
export const KUBEADM_INIT_ARTIFACT = "kubeadm/init.yaml";
export const KUBEADM_JOIN_ARTIFACT = "kubeadm/join.yaml";

/** A worker's join file: worker 1's KUBEADM_JOIN_ARTIFACT, the others' named after them (their node IPs differ). */
export function kubeadmJoinArtifact(host: string): string {
  return host === "worker" ? KUBEADM_JOIN_ARTIFACT : `kubeadm/join-${host}.yaml`;
}

/**
 * The join file is uploaded without credentials: the worker fills these in from a freshly minted
 * token it reads on standard input, into a root-only copy that is removed after the join.
 */
export const JOIN_TOKEN_PLACEHOLDER = "@JOIN_TOKEN@";
export const CA_CERT_HASH_PLACEHOLDER = "@CA_CERT_HASH@";

export type FamilyAddresses = Partial<Record<Family, string>>;

/** The addresses the cluster is built from, as plain strings (the component resolves them). */
export interface ClusterAddresses {
  /** The master on the management network: API server advertise address and certificate names. */
  readonly masterManagement: FamilyAddresses;
  /** Node IPs (kubelet --node-ip) on the data-center network. */
  readonly masterDatacenter: FamilyAddresses;
  readonly workerDatacenter: FamilyAddresses;
  /** More names or addresses the API server certificate must carry (where the Pulumi host reaches it). */
  readonly extraCertSans?: readonly string[];
}

type KubeadmScenario = Pick<Scenario, "dataplane" | "families" | "kubernetes">;

/** One value per scenario family, in the scenario's order (the first family is the cluster's primary). */
export function perFamily(s: Pick<Scenario, "families">, values: FamilyAddresses, what: string): string[] {
  return s.families.map((f) => {
    const v = values[f];
    if (!v) throw new Error(`${what} has no ${f} address, but testbed:families lists ${f}; accepted: an address of every listed family`);
    return v;
  });
}

/** The API server's address: the master's management address of the primary family. */
export function apiAdvertiseAddress(s: Pick<Scenario, "families">, a: Pick<ClusterAddresses, "masterManagement">): string {
  return perFamily(s, a.masterManagement, "the master on the management network")[0]!;
}

/** host:port, with brackets around an IPv6 address. */
export function hostPort(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

const extraArg = (name: string, value: string) => ({ name, value });

/**
 * kube-controller-manager's client rate towards the API server. Its defaults (20/s, burst 30) make
 * the EndpointSlice and Endpoints controllers write 10000 dual-stack Services' objects in about a
 * quarter of an hour (readiness.ts), during which kube-proxy programs REJECT rules for Services that
 * have no endpoints yet: a rule set other than the one a step measures.
 */
export const CONTROLLER_MANAGER_API_QPS = 200;
export const CONTROLLER_MANAGER_API_BURST = 400;
/** EndpointSlice workers (default 5): enough in flight to use the raised rate. */
export const ENDPOINT_SLICE_SYNCS = 20;

function nodeRegistration(nodeIps: string[]) {
  return {
    criSocket: CONTAINERD_SOCKET,
    // Multi-NIC hosts: without it kubelet takes the default-route address (the management NIC),
    // and NodePort frontends, Cilium's devices and the node's InternalIPs would disagree.
    kubeletExtraArgs: [extraArg("node-ip", nodeIps.join(","))],
  };
}

/** The documents of kubeadm/init.yaml, as objects (tests parse the YAML back and compare). */
export function kubeadmInitDocuments(s: KubeadmScenario, a: ClusterAddresses): Record<string, unknown>[] {
  const advertise = apiAdvertiseAddress(s, a);
  const certSans = [...new Set([...Object.values(a.masterManagement).filter((v): v is string => !!v), ...(a.extraCertSans ?? [])])];
  const podSubnets = perFamily(s, s.kubernetes.podSubnets, "testbed:kubernetes.podSubnets").join(",");
  const serviceSubnets = perFamily(s, s.kubernetes.serviceSubnets, "testbed:kubernetes.serviceSubnets").join(",");

  const init = {
    apiVersion: KUBEADM_API,
    kind: "InitConfiguration",
    localAPIEndpoint: { advertiseAddress: advertise, bindPort: API_SERVER_PORT },
    nodeRegistration: nodeRegistration(perFamily(s, a.masterDatacenter, "the master on the data-center network")),
  };

  const cluster: Record<string, unknown> = {
    apiVersion: KUBEADM_API,
    kind: "ClusterConfiguration",
    kubernetesVersion: `v${s.kubernetes.version}`,
    networking: { podSubnet: podSubnets, serviceSubnet: serviceSubnets },
    apiServer: {
      certSANs: certSans,
      // The paper's Service counts exceed the default 2768 NodePorts; the range is the scenario's.
      extraArgs: [extraArg("service-node-port-range", s.kubernetes.nodePortRange)],
    },
  };
  cluster.controllerManager = {
    extraArgs: [
      extraArg("kube-api-qps", String(CONTROLLER_MANAGER_API_QPS)),
      extraArg("kube-api-burst", String(CONTROLLER_MANAGER_API_BURST)),
      extraArg("concurrent-service-endpoint-syncs", String(ENDPOINT_SLICE_SYNCS)),
    ],
  };
  const dataplane = clusterDataplane(s.dataplane);
  if (dataplane.kubeProxyMode === undefined) {
    // The dataplane replaces kube-proxy. `proxy.disabled` (unlike --skip-phases) is stored in the
    // kubeadm-config ConfigMap, so a later `kubeadm upgrade` does not bring kube-proxy back.
    cluster.proxy = { disabled: true };
  }

  const kubelet: Record<string, unknown> = {
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    // Must match containerd's SystemdCgroup = true.
    cgroupDriver: "systemd",
  };
  if (s.kubernetes.failCgroupV1 !== undefined) {
    // kubelet 1.35+ refuses cgroup v1 (Ubuntu 20.04's default) unless told otherwise.
    kubelet.failCgroupV1 = s.kubernetes.failCgroupV1;
  }

  const docs: Record<string, unknown>[] = [init, cluster, kubelet];
  if (dataplane.kubeProxyMode !== undefined) {
    docs.push({
      apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
      kind: "KubeProxyConfiguration",
      // Stated, not defaulted: the stack measures exactly this mode.
      mode: dataplane.kubeProxyMode,
      // Traffic from these ranges is pod traffic (kube-proxy's local-traffic detector).
      clusterCIDR: podSubnets,
    });
  }
  return docs;
}

/** The documents of kubeadm/join.yaml, with the credentials as placeholders. */
export function kubeadmJoinDocuments(s: KubeadmScenario, a: ClusterAddresses): Record<string, unknown>[] {
  return [
    {
      apiVersion: KUBEADM_API,
      kind: "JoinConfiguration",
      discovery: {
        bootstrapToken: {
          apiServerEndpoint: hostPort(apiAdvertiseAddress(s, a), API_SERVER_PORT),
          token: JOIN_TOKEN_PLACEHOLDER,
          caCertHashes: [CA_CERT_HASH_PLACEHOLDER],
        },
      },
      nodeRegistration: nodeRegistration(perFamily(s, a.workerDatacenter, "the worker on the data-center network")),
    },
  ];
}

function multiDocument(header: string, docs: Record<string, unknown>[]): string {
  const comment = header
    .split("\n")
    .map((l) => `# ${l}`)
    .join("\n");
  return `${comment}\n${docs.map((d) => `---\n${stringify(d, { lineWidth: 0 })}`).join("")}`;
}

export function renderKubeadmInit(s: KubeadmScenario, a: ClusterAddresses): string {
  return multiDocument(
    `kubeadm init --config for the master (dataplane: ${s.dataplane}).`,
    kubeadmInitDocuments(s, a),
  );
}

export function renderKubeadmJoin(s: KubeadmScenario, a: ClusterAddresses): string {
  return multiDocument(
    `kubeadm join --config for the worker. ${JOIN_TOKEN_PLACEHOLDER} and ${CA_CERT_HASH_PLACEHOLDER} are filled in on the\nworker from a token minted for this join; the credentials never appear in a plan or a log.`,
    kubeadmJoinDocuments(s, a),
  );
}
