// Who may reach what: the security groups of security-rules.ts as Neutron resources, and the key
// pair that lets the SSH user in.
import * as pulumi from "@pulumi/pulumi";
import * as openstack from "@pulumi/openstack";
import type { SecurityGroupName, SecurityGroupPlan } from "./security-rules.js";

export interface LabAccessArgs {
  readonly groups: readonly SecurityGroupPlan[];
  /** testbed:sshPublicKey. */
  readonly sshPublicKey: string;
  /** Key pair names are unique per user across the cloud, so the stack is part of it. */
  readonly keyPairName: string;
}

export class LabAccess extends pulumi.ComponentResource {
  readonly securityGroupIds: Readonly<Record<SecurityGroupName, pulumi.Output<string>>>;
  readonly keyPairName: pulumi.Output<string>;

  constructor(name: string, args: LabAccessArgs, opts?: pulumi.ComponentResourceOptions) {
    super("testbed:openstack:Access", name, {}, opts);
    const ids = {} as Record<SecurityGroupName, pulumi.Output<string>>;
    for (const group of args.groups) {
      const sg = new openstack.networking.SecGroup(
        `${name}-${group.name}`,
        // Neutron's default egress rules stay: hosts download packages and answer through them.
        { name: `testbed-${group.name}`, description: group.description },
        { parent: this },
      );
      ids[group.name] = sg.id;
      group.rules.forEach((rule, i) => {
        new openstack.networking.SecGroupRule(
          `${name}-${group.name}-${i}`,
          {
            securityGroupId: sg.id,
            direction: "ingress",
            ethertype: rule.ethertype,
            protocol: rule.protocol,
            portRangeMin: rule.portRangeMin,
            portRangeMax: rule.portRangeMax,
            ...(rule.remote === "self" ? { remoteGroupId: sg.id } : { remoteIpPrefix: rule.remote.cidr }),
            description: rule.reason,
          },
          { parent: this },
        );
      });
    }
    const keyPair = new openstack.compute.Keypair(`${name}-key`, { name: args.keyPairName, publicKey: args.sshPublicKey }, { parent: this });
    this.securityGroupIds = ids;
    this.keyPairName = keyPair.name;
    this.registerOutputs({ securityGroupIds: ids, keyPairName: this.keyPairName });
  }
}
