// The whole testbed as one component: the OpenStack lab, the Kubernetes cluster with its dataplane,
// the workloads and the optional measurement, each a component of its own.
import * as pulumi from "@pulumi/pulumi";
import type { Scenario } from "../scenario/schema.js";

export interface TestbedArgs {
  readonly scenario: Scenario;
  readonly sshPrivateKey: pulumi.Output<string>;
}

export class Testbed extends pulumi.ComponentResource {
  constructor(name: string, args: TestbedArgs, opts?: pulumi.ComponentResourceOptions) {
    super("testbed:index:Testbed", name, {}, opts);
    void args;
    this.registerOutputs({});
  }
}
