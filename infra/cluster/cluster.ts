// The Kubernetes cluster on the testbed's master and worker, with the stack's Service dataplane.
// Remote commands through the bastion: wait for each node -> kubeadm init -> join token -> kubeadm
// join -> Cilium -> every node Ready; then a Kubernetes provider from the kubeconfig that init read.
import * as command from "@pulumi/command";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { Family } from "../../scenario/cidr.js";
import { podRouting, type Dataplane, type PodRouting, type Scenario } from "../../scenario/schema.js";
import type { HostAccess, NamedHost } from "../hosts.js";
import { contentHash, remoteArtifactPath, uploadArtifact } from "../remote-files.js";
import {
  BOUNDS,
  ciliumInstallScript,
  ciliumUninstallScript,
  kubeadmInitScript,
  joinAuthorizeScript,
  joinKeyComment,
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
  apiAdvertiseAddress,
  kubeadmJoinArtifact,
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
  /** Worker 1, the paper's one worker. */
  readonly worker: HostAccess;
  /** The workers after the first (worker-2, ...), each joined as worker 1 is (testbed:workers). */
  readonly moreWorkers?: readonly NamedHost[];
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
  /** How pod traffic crosses between the nodes (testbed:podRouting or its default), checked on every agent. */
  readonly podRouting: PodRouting;
  /** The last bootstrap step: Kubernetes objects of other layers depend on it through the provider. */
  readonly ready: command.remote.Command;
  /** The SSH forward to keep open while Pulumi or kubectl talk to the cluster (loopback endpoints). */
  readonly apiTunnel: pulumi.Output<string> | undefined;

  constructor(name: string, args: KubernetesClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("testbed:cluster:KubernetesCluster", name, {}, opts);
    const s = args.scenario;
    const { master, worker } = args;
    this.dataplane = s.dataplane;
    this.podRouting = podRouting(s);
    const masterConnection = pulumi.secret(pulumi.output(master.connection));
    const masterServer = serverIdentity(master.server);
    // Worker 1 first: every worker joins the same way, each with resources named after it
    // (worker 1's keep the names of the paper's one worker, so adding workers replaces nothing).
    const workers: NamedHost[] = [{ name: "worker", access: worker }, ...(args.moreWorkers ?? [])];
    const named = (base: string, host: string) => (host === "worker" ? `${name}-${base}` : `${name}-${base}-${host}`);
    const workerAddresses = workers.map((w) => familyAddresses(w.access, "datacenter"));

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
    const expectedNodes: pulumi.Output<ExpectedNode[]> = pulumi.all([addresses, pulumi.all(workerAddresses)]).apply(([a, perWorker]) => [
      { role: "master", addresses: perFamily(s, a.masterDatacenter, "the master on the data-center network") },
      ...workers.map((w, i) => ({ role: w.name, addresses: perFamily(s, perWorker[i]!, `the ${w.name} on the data-center network`) })),
    ]);

    const initYaml = addresses.apply((a) => renderKubeadmInit(s, a));
    // Each worker's join file names its own node IPs (kubelet --node-ip).
    const joinYamls = workers.map((_, i) => pulumi.all([addresses, workerAddresses[i]!]).apply(([a, own]) => renderKubeadmJoin(s, { ...a, workerDatacenter: own })));
    const datacenterDevices = [{ name: "master", access: master }, ...workers].map((h) => {
      const nic = h.access.interfaces.datacenter;
      if (!nic) throw new Error(`the ${h.name} has no data-center NIC name; Cilium's devices need it`);
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
    const waitFor = (role: string, host: HostAccess) =>
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
    const workerWaits = workers.map((w) => waitFor(w.name, w.access));

    const upload = (key: string, connection: pulumi.Input<command.types.input.remote.ConnectionArgs>, artifactPath: string, content: pulumi.Input<string>, after: pulumi.Resource, server: pulumi.Resource) =>
      uploadArtifact(key, { connection, artifactPath, content }, { parent: this, dependsOn: [after], deletedWith: server });
    const initFile = upload(`${name}-kubeadm-init-config`, masterConnection, KUBEADM_INIT_ARTIFACT, initYaml, masterWait, master.server);
    const joinFiles = workers.map((w, i) =>
      upload(named("kubeadm-join-config", w.name), pulumi.secret(pulumi.output(w.access.connection)), kubeadmJoinArtifact(w.name), joinYamls[i]!, workerWaits[i]!, w.access.server),
    );
    const valuesFile = upload(`${name}-cilium-values`, masterConnection, CILIUM_VALUES_ARTIFACT, valuesYaml, masterWait, master.server);

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

    // 3. Each worker's join key, and the master's permission for it to mint join tokens, nothing
    // else. 4. kubeadm join, with a token the worker mints for this attempt (a retry never holds an
    // expired one). A worker already in this cluster is left as it is. The authorizations run one
    // after the other: each rewrites the master's authorized_keys.
    const joins: command.remote.Command[] = [];
    let previousAuthorize: command.remote.Command | undefined;
    workers.forEach((w, i) => {
      const connection = pulumi.secret(pulumi.output(w.access.connection));
      const server = serverIdentity(w.access.server);
      const comment = joinKeyComment(w.name);
      const joinKey = new command.remote.Command(
        named("join-key", w.name),
        { connection, create: asRootCommand(joinKeyScript(undefined, comment), BOUNDS.quick), triggers: [server] },
        { parent: this, dependsOn: [workerWaits[i]!], ignoreChanges: ["connection"], deletedWith: w.access.server, customTimeouts: commandTimeouts(BOUNDS.quick) },
      );
      const joinAuthorize = new command.remote.Command(
        named("join-authorize", w.name),
        {
          connection: masterConnection,
          create: joinKey.stdout.apply((publicKey) =>
            asRootCommand(joinAuthorizeScript({ user: s.openstack.sshUser, publicKey, ...(w.name === "worker" ? {} : { comment }) }), BOUNDS.quick),
          ),
          triggers: [masterServer],
        },
        {
          parent: this,
          dependsOn: [init, joinKey, ...(previousAuthorize ? [previousAuthorize] : [])],
          ignoreChanges: ["connection"],
          deletedWith: master.server,
          customTimeouts: commandTimeouts(BOUNDS.quick),
        },
      );
      previousAuthorize = joinAuthorize;
      joins.push(
        new command.remote.Command(
          named("kubeadm-join", w.name),
          {
            connection,
            create: pulumi
              .all([joinAuthorize.stdout, addresses])
              .apply(([trust, a]) =>
                asRootCommand(
                  kubeadmJoinScript({
                    configPath: remoteArtifactPath(kubeadmJoinArtifact(w.name)),
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
            triggers: [init.id, server],
          },
          {
            parent: this,
            dependsOn: [joinAuthorize, joinFiles[i]!],
            ignoreChanges: ["connection"],
            deleteBeforeReplace: true,
            deletedWith: w.access.server,
            customTimeouts: commandTimeouts(BOUNDS.kubeadmJoin),
          },
        ),
      );
    });

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
        dependsOn: [...joins, valuesFile],
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
          .all([expectedNodes, init.id, valuesHash, master.boot, pulumi.all(joins.map((j) => j.id)), pulumi.all(workers.map((w) => w.access.boot))])
          .apply(([nodes, cluster, hash, masterBoot, joined, workerBoots]) =>
            asRootCommand(
              nodesReadyScript({
                dataplane: s.dataplane,
                podRouting: this.podRouting,
                nodes,
                checks: {
                  cluster,
                  join: joined[0]!,
                  cilium: s.cilium.version,
                  values: hash,
                  "master boot": masterBoot,
                  "worker boot": workerBoots[0]!,
                  // The workers after the first, each by its join and its boot identity.
                  ...Object.fromEntries(workers.slice(1).flatMap((w, i) => [[`${w.name} join`, joined[i + 1]!], [`${w.name} boot`, workerBoots[i + 1]!]])),
                },
              }),
              BOUNDS.nodesReady,
            ),
          ),
      },
      { parent: this, dependsOn: [cilium, ...joins], ignoreChanges: ["connection"], deletedWith: master.server, customTimeouts: commandTimeouts(BOUNDS.nodesReady) },
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
    this.versions = pulumi.all([masterWait.stdout, workerWaits[0]!.stdout]).apply(([m, w]) => {
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

    this.registerOutputs({
      kubeconfig: this.kubeconfig,
      nodes: this.nodes,
      versions: this.versions,
      dataplane: this.dataplane,
      podRouting: this.podRouting,
      apiTunnel: this.apiTunnel,
    });
  }
}
