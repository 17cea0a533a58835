// The lab's servers and their ports. Ports are resources of their own so that addresses, security
// groups, address pairs and the link cap are declared before a server boots, and so that the order
// of a server's NICs (hence the guest's interface names) is the order of ATTACHMENTS.
import * as pulumi from "@pulumi/pulumi";
import * as openstack from "@pulumi/openstack";
import { HOST_ROLES, type HostRole, type LabNetwork } from "../hosts.js";
import type { LabPlan } from "./address-plan.js";
import type { NicMacs } from "./cloud-init.js";
import { portSecurityGroups, type SecurityGroupName } from "./security-rules.js";

/** Server metadata key naming the host's role; `testbed plan` names cloud-init files by it. */
export const ROLE_METADATA_KEY = "testbed-role";

export interface LabServersArgs {
  readonly plan: LabPlan;
  readonly networkIds: Readonly<Record<LabNetwork, pulumi.Input<string>>>;
  readonly subnetIds: Readonly<Record<LabNetwork, Partial<Record<"ipv4" | "ipv6", pulumi.Input<string>>>>>;
  readonly securityGroupIds: Readonly<Record<SecurityGroupName, pulumi.Input<string>>>;
  /** The link cap for the measured ports; absent when testbed:linkMbps is 0. */
  readonly qos?: { readonly policyId: pulumi.Input<string>; readonly rules: readonly pulumi.Resource[] };
  /** Each role's flavor: an existing one by name, or a created one by id. */
  readonly flavors: Readonly<Record<HostRole, { readonly name: string } | { readonly id: pulumi.Input<string> }>>;
  readonly keyPairName: pulumi.Input<string>;
  /** testbed:openstack.image, by name. */
  readonly image: string;
  readonly availabilityZone?: string;
  /** Each host's user data from the MACs Neutron gave its data ports (the guest names its NICs by them). */
  readonly userData: Readonly<Record<HostRole, (macs: NicMacs) => string>>;
  /** The management uplink: servers install packages on first boot, which needs it in place. */
  readonly uplink: pulumi.Resource;
}

export class LabServers extends pulumi.ComponentResource {
  readonly servers: Readonly<Record<HostRole, openstack.compute.Instance>>;
  /** Each server's boot identity (HostAccess.boot): its id and its flavor. */
  readonly boot: Readonly<Record<HostRole, pulumi.Output<string>>>;
  readonly ports: Readonly<Record<HostRole, Partial<Record<LabNetwork, openstack.networking.Port>>>>;

  constructor(name: string, args: LabServersArgs, opts?: pulumi.ComponentResourceOptions) {
    super("testbed:openstack:Servers", name, {}, opts);
    const servers = {} as Record<HostRole, openstack.compute.Instance>;
    const ports = {} as Record<HostRole, Partial<Record<LabNetwork, openstack.networking.Port>>>;

    for (const role of HOST_ROLES) {
      ports[role] = {};
      const own = args.plan.ports.filter((p) => p.role === role).sort((a, b) => a.nic - b.nic);
      for (const p of own) {
        const capped = p.measured && args.qos !== undefined;
        ports[role][p.network] = new openstack.networking.Port(
          `${name}-${role}-${p.network}`,
          {
            name: `testbed-${role}-${p.network}`,
            networkId: args.networkIds[p.network],
            fixedIps: p.fixedIps.map((f) => ({ subnetId: args.subnetIds[p.network][f.family]!, ipAddress: f.address })),
            securityGroupIds: portSecurityGroups(role, p.network).map((g) => args.securityGroupIds[g]),
            // Port security stays on (anti-spoofing and security groups); the pairs name exactly the
            // foreign addresses this port carries.
            ...(p.allowedAddressPairs.length > 0 ? { allowedAddressPairs: p.allowedAddressPairs.map((ipAddress) => ({ ipAddress })) } : {}),
            ...(capped ? { qosPolicyId: args.qos!.policyId } : {}),
            adminStateUp: true,
          },
          // A capped port waits for its rules: the first packet already meets the full cap.
          { parent: this, ...(capped ? { dependsOn: [...args.qos!.rules] } : {}) },
        );
      }
      const macs: Partial<Record<LabNetwork, pulumi.Output<string>>> = {};
      for (const p of own.filter((q) => q.network !== "management")) macs[p.network] = ports[role][p.network]!.macAddress;
      const userData = pulumi.all(macs).apply((m) => args.userData[role](m as NicMacs));
      servers[role] = new openstack.compute.Instance(
        `${name}-${role}`,
        {
          name: `testbed-${role}`,
          ...("name" in args.flavors[role] ? { flavorName: args.flavors[role].name } : { flavorId: args.flavors[role].id }),
          imageName: args.image,
          keyPair: args.keyPairName,
          availabilityZone: args.availabilityZone,
          networks: own.map((p) => ({ port: ports[role][p.network]!.id })),
          userData,
          // network_data.json (static IPv6 addresses and routes) is read at cloud-init's local stage,
          // before any network is up; the config drive has it without a metadata-service round trip.
          configDrive: true,
          metadata: { [ROLE_METADATA_KEY]: role },
        },
        {
          parent: this,
          dependsOn: [args.uplink],
          // New user data replaces the server; its ports can serve one server at a time.
          deleteBeforeReplace: true,
        },
      );
    }
    this.servers = servers;
    this.boot = Object.fromEntries(
      HOST_ROLES.map((role) => {
        const flavor = args.flavors[role];
        // From the server's outputs, so a check that names it runs after the server's update (a resize).
        const ref = "name" in flavor ? servers[role].flavorName.apply((n) => `flavor ${n ?? flavor.name}`) : pulumi.output(flavor.id).apply((id) => `flavor-id ${id}`);
        return [role, pulumi.all([servers[role].id, ref]).apply(([id, f]) => `server ${id} ${f}`)];
      }),
    ) as Record<HostRole, pulumi.Output<string>>;
    this.ports = ports;
    this.registerOutputs({ serverIds: Object.fromEntries(HOST_ROLES.map((r) => [r, servers[r].id])) });
  }
}
