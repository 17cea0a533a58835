// Pulumi entry: load and validate the scenario, build the testbed, export what users need.
import { loadConfig } from "./config.js";
import { Testbed } from "./testbed.js";

const { scenario, sshPrivateKey } = loadConfig();
const testbed = new Testbed("testbed", { scenario, sshPrivateKey });

/** The Service dataplane of this stack: "iptables" (kube-proxy) or "ebpf" (Cilium kube-proxy replacement). */
export const dataplane = scenario.dataplane;
/** How many scaled Services the stack deploys. */
export const services = scenario.services;
/** The bastion's floating IP: `ssh -J <sshUser>@<bastionAddress> <sshUser>@<management address>`. */
export const bastionAddress = testbed.bastionAddress;
/** Management addresses of the hosts `testbed campaign` reaches through the bastion. */
export const clientAddress = testbed.hostAddresses.apply((h) => h.client.management?.ipv4 ?? h.client.management?.ipv6);
export const masterAddress = testbed.hostAddresses.apply((h) => h.master.management?.ipv4 ?? h.master.management?.ipv6);
/** Every host's addresses, per network (management, client, datacenter) and family. */
export const hostAddresses = testbed.hostAddresses;
/** kubeconfig of the cluster's admin (secret): `pulumi stack output --show-secrets kubeconfig`. */
export const kubeconfig = testbed.cluster.kubeconfig;
/** The SSH forward to keep open while Pulumi or kubectl reach the API server through the bastion. */
export const kubernetesApiTunnel = testbed.cluster.apiTunnel;
/** The cluster's nodes as the API server reports them: role, name, versions, InternalIPs per family. */
export const nodes = testbed.cluster.nodes;
/** What the nodes run: Kubernetes and containerd packages, Cilium chart, Helm, kernel. */
export const versions = testbed.cluster.versions;
/** Scaled Services of this step by type: NodePort while the range lasts, ClusterIP after. */
export const serviceCounts = testbed.workloads.serviceCounts;
/**
 * When this step became measurable, in seconds after the apply: every scaled Service with a ready
 * endpoint in every family (endpointsReadyAfterS), and the worker's dataplane holding exactly the
 * step's scaled Services (programmedAfterS), with how many it held then (programmedServices, equal
 * to services: the apply fails otherwise). Measurements of the step start after both.
 */
export const step = testbed.workloads.step;
/** Where D-ITG flows go, per family: the worker's NodePort address, signaling and data ports. */
export const ditgEndpoints = testbed.workloads.ditgEndpoints;
/** The receiver's Deployment, its node and log directories: what `testbed campaign` reads logs from. */
export const ditgReceiver = testbed.workloads.ditgReceiver;
/**
 * Every path of testbed:paths (scenario/paths.ts), once its receiver (and client pod) run where the
 * path puts them: `{ [path]: { description, service, endpoints, receiver, client } }`. `endpoints`
 * has ditgEndpoints' shape (per family: address, signalingPort, dataPort, protocols): worker 1's
 * NodePort address for the nodeport paths, the receiver Service's ClusterIP for clusterip.
 * `receiver` has ditgReceiver's shape, on the path's endpoint worker. `client` is
 * `{kind: "external", host: "client"}` (send from the client host, as today), or for clusterip
 * `{kind: "pod", namespace, deployment, nodeAddress, podLogDir, nodeLogDir, setupProbe}`: the pod
 * on worker 1 to run ITGSend and the connection-setup probe in (kubectl exec), its sender logs on
 * that node. The nodeport-local entry repeats ditgEndpoints and ditgReceiver.
 */
export const ditgPaths = testbed.workloads.ditgPaths;
/** How pod traffic crosses between the nodes (testbed:podRouting, or its default): Cilium's VXLAN tunnel, or native routing. */
export const podRouting = testbed.cluster.podRouting;
/**
 * Where the stack built the connection-setup probe (measure/connection-setup-probe.c): on the client,
 * which opens the connections, and on the worker, whose listener `testbed campaign` starts in the
 * receiver pod's network namespace.
 */
export const connectionSetupProbe = testbed.setupProbe.paths;
/**
 * Where the stack built the programming probe (measure/programming-probe.c): on the client, which
 * probes a changed Service through the worker's NodePort, and on the worker, whose listener
 * `testbed campaign` starts in the scaled Services' backend pod (backends/cloud-programming.ts).
 */
export const programmingProbe = testbed.programmingProbe.paths;
/**
 * D-ITG runs from the client, each decoded as `testbed campaign` decodes it (round trips paired with
 * the receiver's log) and judged by its rules, with the profile's metric across runs; only when
 * testbed:measure is set (absent otherwise).
 */
export const measurement = testbed.measurement?.summary;
