// The whole testbed as one component: the OpenStack lab, the Kubernetes cluster with its dataplane,
// the workloads and the optional measurement, each a component of its own.
import * as pulumi from "@pulumi/pulumi";
import type { Scenario } from "../scenario/schema.js";
import { KubernetesCluster } from "./cluster/cluster.js";
import { renderNodePrep } from "./cluster/node-prep.js";
import { Measurement } from "./measurement.js";
import { parseEndpoint } from "./cluster/kubeconfig.js";
import { OpenStackLab, renderLab, type HostAddresses } from "./openstack/lab.js";
import { PROGRAMMING_PROBE, SetupProbe } from "./setup-probe.js";
import { Workloads } from "./workloads.js";

export interface TestbedArgs {
  readonly scenario: Scenario;
  readonly sshPrivateKey: pulumi.Output<string>;
}

export class Testbed extends pulumi.ComponentResource {
  readonly lab: OpenStackLab;
  /** The bastion's floating IP. */
  readonly bastionAddress: pulumi.Output<string>;
  /** Every host's addresses per network and family. */
  readonly hostAddresses: pulumi.Output<HostAddresses>;
  /** Kubernetes on the master and the worker, with the stack's Service dataplane. */
  readonly cluster: KubernetesCluster;
  /** The scaled Services of this step and the D-ITG receiver. */
  readonly workloads: Workloads;
  /** D-ITG runs from the client and their summary; only with testbed:measure. */
  readonly measurement?: Measurement;
  /** The connection-setup probe, built on the client and on the worker. */
  readonly setupProbe: SetupProbe;
  readonly programmingProbe: SetupProbe;

  constructor(name: string, args: TestbedArgs, opts?: pulumi.ComponentResourceOptions) {
    // Everything that can refuse the scenario runs before the first resource is declared, so a bad
    // value never leaves half a testbed in the state.
    const cloudInitParts = { master: [renderNodePrep(args.scenario, "master")], worker: [renderNodePrep(args.scenario, "worker")] };
    const rendered = renderLab({ scenario: args.scenario, cloudInitParts });
    parseEndpoint(args.scenario.kubernetes.apiEndpoint);
    super("testbed:index:Testbed", name, {}, opts);
    this.lab = new OpenStackLab(
      "lab",
      { scenario: args.scenario, sshPrivateKey: args.sshPrivateKey, stack: pulumi.getStack(), cloudInitParts, rendered },
      { parent: this },
    );
    this.cluster = new KubernetesCluster(
      "cluster",
      {
        scenario: args.scenario,
        master: this.lab.hosts.master,
        worker: this.lab.hosts.worker,
        moreWorkers: this.lab.workers.slice(1),
        bastionAddress: this.lab.bastionAddress,
      },
      { parent: this },
    );
    // Built before the workloads: the clusterip path's client pod mounts worker 1's build.
    // Built on every worker: the remote paths' receivers, whose node runs the listener, are on worker 2.
    this.setupProbe = new SetupProbe("setup-probe", { client: this.lab.hosts.client, worker: this.lab.hosts.worker, moreWorkers: this.lab.workers.slice(1) }, { parent: this });
    const nodeOf = (nodes: readonly { role: string; name: string }[], host: string) => {
      const node = nodes.find((n) => n.role === host);
      if (!node) throw new Error(`the cluster reports no node for the ${host}`);
      return node.name;
    };
    this.workloads = new Workloads(
      "workloads",
      {
        scenario: args.scenario,
        master: this.lab.hosts.master,
        worker: this.lab.hosts.worker,
        workers: this.lab.workers,
        clusterReady: this.cluster.ready,
        workerNode: this.cluster.nodes.apply((nodes) => nodeOf(nodes, "worker")),
        workerNodes: this.cluster.nodes.apply((nodes) => this.lab.workers.map((w) => nodeOf(nodes, w.name))),
        setupProbeOnWorker: this.setupProbe.paths.apply((p) => p.worker),
      },
      { parent: this },
    );
    this.programmingProbe = new SetupProbe("programming-probe", { client: this.lab.hosts.client, worker: this.lab.hosts.worker, probe: PROGRAMMING_PROBE }, { parent: this });
    if (args.scenario.measure) {
      this.measurement = new Measurement(
        "measurement",
        {
          scenario: args.scenario,
          measure: args.scenario.measure,
          client: this.lab.hosts.client,
          router: this.lab.hosts.router,
          worker: this.lab.hosts.worker,
          bastionAddress: this.lab.bastionAddress,
          workloads: this.workloads,
        },
        { parent: this },
      );
    }
    this.bastionAddress = this.lab.bastionAddress;
    this.hostAddresses = this.lab.hostAddresses;
    this.registerOutputs({ bastionAddress: this.bastionAddress, hostAddresses: this.hostAddresses });
  }
}
