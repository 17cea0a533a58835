// The Kubernetes cluster on the testbed's master and worker, with the stack's Service dataplane.
// Remote commands through the bastion: wait for each node -> kubeadm init -> join token -> kubeadm
// join -> Cilium -> every node Ready; then a Kubernetes provider from the kubeconfig that init read.
import * as command from "@pulumi/command";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { Family } from "../../scenario/cidr.js";
import type { Dataplane, Scenario } from "../../scenario/schema.js";
import type { HostAccess } from "../hosts.js";
import { contentHash, remoteArtifactPath, uploadArtifact } from "../remote-files.js";
import {
  BOUNDS,
  ciliumInstallScript,
  ciliumUninstallScript,
  kubeadmInitScript,
  joinAuthorizeScript,
  joinKeyScript,
  kubeadmJoinScript,
  parseJoinTrust,
  nodesReadyScript,
  parseNodePrepMarker,
  parseNodeTable,
  resetNodeScript,
  waitForNodeScript,
  type ClusterNode,
  type ExpectedNode,
} from "./bootstrap.js";
import {
  CILIUM_CHART_REPO,
  CILIUM_VALUES_ARTIFACT,
  SERVICE_ID_LIMIT,
  largestServiceCount,
  renderCiliumValuesYaml,
  serviceIdEstimate,
} from "./cilium-values.js";
import {
  API_SERVER_PORT,
  KUBEADM_INIT_ARTIFACT,
  KUBEADM_JOIN_ARTIFACT,
  apiAdvertiseAddress,
  perFamily,
  renderKubeadmInit,
  renderKubeadmJoin,
  type ClusterAddresses,
  type FamilyAddresses,
} from "./kubeadm.js";
import { clusterDataplane } from "./dataplanes/index.js";
import { apiServerUrl, apiTunnelCommand, isLoopback, kubeconfigWithServer, parseEndpoint } from "./kubeconfig.js";
import { asRootCommand, commandTimeouts } from "./shell.js";

export interface KubernetesClusterArgs {
  readonly scenario: Scenario;
  readonly master: HostAccess;
  readonly worker: HostAccess;
  /** The bastion's public address, for the SSH forward that reaches the API server from outside. */
  readonly bastionAddress?: pulumi.Input<string>;
}

export interface InstalledVersions {
  /** The kubelet/kubeadm/kubectl package installed from pkgs.k8s.io, e.g. 1.32.9-1.1. */
  readonly kubernetes: string;
  /** Ubuntu's containerd package (held after installation). */
  readonly containerd: string;
  readonly cilium: string;
  readonly helm: string;
  readonly kernel: string;
}


/** The resolved addresses of one host on one network. */
function familyAddresses(host: HostAccess, network: "management" | "datacenter"): pulumi.Output<FamilyAddresses> {
  const byFamily = host.addresses[network] ?? {};
  return pulumi.all(byFamily as Record<Family, pulumi.Output<string>>) as pulumi.Output<FamilyAddresses>;
}

/** A stable identity of the server, so that a replaced host re-runs its one-shot steps. */
function serverIdentity(server: pulumi.Resource): pulumi.Output<string> {
  return server instanceof pulumi.CustomResource ? server.id : pulumi.output("");
}

export class KubernetesCluster extends pulumi.ComponentResource {
  /** admin kubeconfig with a reachable server (secret). */
  readonly kubeconfig: pulumi.Output<string>;
  /** Created from the kubeconfig only once every node is Ready. */
  readonly provider: k8s.Provider;
  readonly nodes: pulumi.Output<ClusterNode[]>;
  readonly versions: pulumi.Output<InstalledVersions>;
  readonly dataplane: Dataplane;
  /** The last bootstrap step: Kubernetes objects of other layers depend on it through the provider. */
  readonly ready: command.remote.Command;
  /** The SSH forward to keep open while Pulumi or kubectl talk to the cluster (loopback endpoints). */
  readonly apiTunnel: pulumi.Output<string> | undefined;

  constructor(name: string, args: KubernetesClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("testbed:cluster:KubernetesCluster", name, {}, opts);
    const s = args.scenario;
    const { master, worker } = args;
    this.dataplane = s.dataplane;
    const masterConnection = pulumi.secret(pulumi.output(master.connection));
    const workerConnection = pulumi.secret(pulumi.output(worker.connection));
    const masterServer = serverIdentity(master.server);
    const workerServer = serverIdentity(worker.server);

    // Where the Pulumi host reaches the API server; the certificate must name it too.
    const endpoint = parseEndpoint(s.kubernetes.apiEndpoint);
    const addresses: pulumi.Output<ClusterAddresses> = pulumi
      .all([familyAddresses(master, "management"), familyAddresses(master, "datacenter"), familyAddresses(worker, "datacenter")])
      .apply(([masterManagement, masterDatacenter, workerDatacenter]) => ({
        masterManagement,
        masterDatacenter,
        workerDatacenter,
        extraCertSans: [endpoint.host],
      }));
    const expectedNodes: pulumi.Output<ExpectedNode[]> = addresses.apply((a) => [
      { role: "master", addresses: perFamily(s, a.masterDatacenter, "the master on the data-center network") },
      { role: "worker", addresses: perFamily(s, a.workerDatacenter, "the worker on the data-center network") },
    ]);

    const initYaml = addresses.apply((a) => renderKubeadmInit(s, a));
    const joinYaml = addresses.apply((a) => renderKubeadmJoin(s, a));
    const datacenterDevices = [master, worker].map((h, i) => {
      const nic = h.interfaces.datacenter;
      if (!nic) throw new Error(`the ${i === 0 ? "master" : "worker"} has no data-center NIC name; Cilium's devices need it`);
      return nic;
    });
    const serviceIds = serviceIdEstimate(s);
    if (serviceIds > SERVICE_ID_LIMIT) {
      void pulumi.log.warn(
        `about ${serviceIds} Cilium service IDs for ${largestServiceCount(s)} Services in ${s.families.join(" and ")} (limit ${SERVICE_ID_LIMIT}); ` +
          "the largest steps may fail with \"no service ID available\": narrow testbed:kubernetes.nodePortRange, use one family, or lower the sweep",
        this,
      );
    }
    const valuesYaml = addresses.apply((a) =>
      renderCiliumValuesYaml(s, { apiServerHost: apiAdvertiseAddress(s, a), apiServerPort: API_SERVER_PORT, datacenterDevices }),
    );

    // Every step below is created once and then only ever updated: a changed input (a script, a
    // values file's hash, a version) runs the step's create or update script again on the running
    // cluster. Triggers name only the identity of what a step runs on (the server, the cluster), so
    // a replacement, and the `delete` it runs, happens only with a new host (tests: lifecycle).

    // 1. Each node: its host is ready (lab readiness check), node preparation finished for this
    // version. It names the host's boot identity: after a resize (a reboot) it runs again, as an update.
    const waitFor = (role: "master" | "worker", host: HostAccess) =>
      new command.remote.Command(
        `${name}-${role}-wait`,
        {
          connection: pulumi.secret(pulumi.output(host.connection)),
          create: host.boot.apply((boot) => asRootCommand(waitForNodeScript(s.kubernetes.version, { boot }), BOUNDS.waitForNode)),
          triggers: [serverIdentity(host.server)],
        },
        { parent: this, dependsOn: [host.ready], deletedWith: host.server, ignoreChanges: ["connection"], customTimeouts: commandTimeouts(BOUNDS.waitForNode) },
      );
    const masterWait = waitFor("master", master);
    const workerWait = waitFor("worker", worker);

    const upload = (key: string, connection: pulumi.Input<command.types.input.remote.ConnectionArgs>, artifactPath: string, content: pulumi.Input<string>, after: pulumi.Resource, server: pulumi.Resource) =>
      uploadArtifact(`${name}-${key}`, { connection, artifactPath, content }, { parent: this, dependsOn: [after], deletedWith: server });
    const initFile = upload("kubeadm-init-config", masterConnection, KUBEADM_INIT_ARTIFACT, initYaml, masterWait, master.server);
    const joinFile = upload("kubeadm-join-config", workerConnection, KUBEADM_JOIN_ARTIFACT, joinYaml, workerWait, worker.server);
    const valuesFile = upload("cilium-values", masterConnection, CILIUM_VALUES_ARTIFACT, valuesYaml, masterWait, master.server);

    // 2. kubeadm init; on a running cluster the same script re-applies a changed configuration in
    // place. Its stdout is admin.conf, so it is secret and never logged.
    const kubeProxy = clusterDataplane(s.dataplane).kubeProxyMode !== undefined;
    const initScript = initYaml.apply((yaml) =>
      asRootCommand(kubeadmInitScript({ configPath: remoteArtifactPath(KUBEADM_INIT_ARTIFACT), configHash: contentHash(yaml), kubeProxy }), BOUNDS.kubeadmInit),
    );
    const init = new command.remote.Command(
      `${name}-kubeadm-init`,
      {
        connection: masterConnection,
        create: initScript,
        delete: `${asRootCommand(resetNodeScript(), BOUNDS.reset)} || true`,
        logging: "stderr",
        // Its stdout is admin.conf: pulumi-command would hand it to the next run's environment
        // (PULUMI_COMMAND_STDOUT), where a process listing or a log could show it.
        addPreviousOutputInEnv: false,
        triggers: [masterServer],
      },
      {
        parent: this,
        dependsOn: [initFile],
        additionalSecretOutputs: ["stdout"],
        ignoreChanges: ["connection"],
        // One cluster per host: a new master is reset before the new cluster is made.
        deleteBeforeReplace: true,
        deletedWith: master.server,
        customTimeouts: commandTimeouts(BOUNDS.kubeadmInit),
      },
    );

    // 3. The worker's join key, and the master's permission for it to mint join tokens, nothing else.
    const joinKey = new command.remote.Command(
      `${name}-join-key`,
      { connection: workerConnection, create: asRootCommand(joinKeyScript(), BOUNDS.quick), triggers: [workerServer] },
      { parent: this, dependsOn: [workerWait], ignoreChanges: ["connection"], deletedWith: worker.server, customTimeouts: commandTimeouts(BOUNDS.quick) },
    );
    const joinAuthorize = new command.remote.Command(
      `${name}-join-authorize`,
      {
        connection: masterConnection,
        create: joinKey.stdout.apply((publicKey) => asRootCommand(joinAuthorizeScript({ user: s.openstack.sshUser, publicKey }), BOUNDS.quick)),
        triggers: [masterServer],
      },
      { parent: this, dependsOn: [init, joinKey], ignoreChanges: ["connection"], deletedWith: master.server, customTimeouts: commandTimeouts(BOUNDS.quick) },
    );

    // 4. kubeadm join, with a token the worker mints for this attempt (a retry never holds an
    // expired one). A worker already in this cluster is left as it is.
    const join = new command.remote.Command(
      `${name}-kubeadm-join`,
      {
        connection: workerConnection,
        create: pulumi
          .all([joinAuthorize.stdout, addresses])
          .apply(([trust, a]) =>
            asRootCommand(
              kubeadmJoinScript({
                configPath: remoteArtifactPath(KUBEADM_JOIN_ARTIFACT),
                user: s.openstack.sshUser,
                master: apiAdvertiseAddress(s, a),
                trust: parseJoinTrust(trust),
              }),
              BOUNDS.kubeadmJoin,
            ),
          ),
        delete: `${asRootCommand(resetNodeScript(), BOUNDS.reset)} || true`,
        logging: "stderr",
        // A new cluster (a new master) or a new worker: the worker joins afresh.
        triggers: [init.id, workerServer],
      },
      {
        parent: this,
        dependsOn: [joinAuthorize, joinFile],
        ignoreChanges: ["connection"],
        deleteBeforeReplace: true,
        deletedWith: worker.server,
        customTimeouts: commandTimeouts(BOUNDS.kubeadmJoin),
      },
    );

    // 5. Cilium, from the master: a new version or new values upgrade it in place.
    const valuesHash = valuesYaml.apply(contentHash);
    const ciliumScript = pulumi.all([valuesHash, init.id]).apply(([hash, cluster]) =>
      asRootCommand(
        ciliumInstallScript({
          version: s.cilium.version,
          valuesPath: remoteArtifactPath(CILIUM_VALUES_ARTIFACT),
          valuesHash: hash,
          chartRepo: CILIUM_CHART_REPO,
          cluster,
        }),
        BOUNDS.cilium,
      ),
    );
    const cilium = new command.remote.Command(
      `${name}-cilium`,
      {
        connection: masterConnection,
        create: ciliumScript,
        delete: `${asRootCommand(ciliumUninstallScript(), BOUNDS.ciliumUninstall)} || true`,
      },
      {
        parent: this,
        dependsOn: [join, valuesFile],
        ignoreChanges: ["connection"],
        deletedWith: master.server,
        customTimeouts: commandTimeouts(BOUNDS.cilium),
      },
    );

    // 6. Every node Ready, on its data-center addresses, with the stack's dataplane. The check names
    // what it runs against, the nodes' boot identities included: after a resize (a reboot) it waits
    // for kubelet and the dataplane again, as an update.
    this.ready = new command.remote.Command(
      `${name}-nodes-ready`,
      {
        connection: masterConnection,
        create: pulumi
          .all([expectedNodes, init.id, join.id, valuesHash, master.boot, worker.boot])
          .apply(([nodes, cluster, joined, hash, masterBoot, workerBoot]) =>
            asRootCommand(
              nodesReadyScript({
                dataplane: s.dataplane,
                nodes,
                checks: { cluster, join: joined, cilium: s.cilium.version, values: hash, "master boot": masterBoot, "worker boot": workerBoot },
              }),
              BOUNDS.nodesReady,
            ),
          ),
      },
      { parent: this, dependsOn: [cilium, join], ignoreChanges: ["connection"], deletedWith: master.server, customTimeouts: commandTimeouts(BOUNDS.nodesReady) },
    );

    // Resolves only after the readiness check, so nothing uses the cluster before it is usable.
    this.kubeconfig = pulumi.secret(
      pulumi.all([init.stdout, this.ready.stdout]).apply(([adminConf]) => kubeconfigWithServer(adminConf, apiServerUrl(endpoint.host, endpoint.port))),
    );
    this.apiTunnel =
      isLoopback(endpoint.host) && args.bastionAddress !== undefined
        ? pulumi
            .all([addresses, args.bastionAddress])
            .apply(([a, bastion]) =>
              apiTunnelCommand({ local: endpoint, apiServer: apiAdvertiseAddress(s, a), apiPort: API_SERVER_PORT, user: s.openstack.sshUser, bastion }),
            )
        : undefined;
    this.provider = new k8s.Provider(
      `${name}-k8s`,
      // If the VMs go first at teardown, Kubernetes objects are dropped from the state, not waited for.
      { kubeconfig: this.kubeconfig, deleteUnreachable: true },
      { parent: this, dependsOn: [this.ready] },
    );

    this.nodes = pulumi.all([this.ready.stdout, expectedNodes]).apply(([table, expected]) => parseNodeTable(table, expected));
    this.versions = pulumi.all([masterWait.stdout, workerWait.stdout]).apply(([m, w]) => {
      const onMaster = parseNodePrepMarker(m);
      const onWorker = parseNodePrepMarker(w);
      return {
        kubernetes: onWorker.kubernetes ?? "",
        containerd: onWorker.containerd ?? "",
        cilium: s.cilium.version,
        helm: onMaster.helm ?? "",
        kernel: onWorker.kernel ?? "",
      };
    });

    this.registerOutputs({ kubeconfig: this.kubeconfig, nodes: this.nodes, versions: this.versions, dataplane: this.dataplane, apiTunnel: this.apiTunnel });
  }
}
