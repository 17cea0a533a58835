// The lab's servers and their ports. Ports are resources of their own so that addresses, security
// groups, address pairs and the link cap are declared before a server boots, and so that the order
// of a server's NICs (hence the guest's interface names) is the order of ATTACHMENTS.
import * as pulumi from "@pulumi/pulumi";
import * as openstack from "@pulumi/openstack";
import { HOST_METADATA_KEY, ROLE_METADATA_KEY, type HostName, type HostRole, type LabNetwork } from "../hosts.js";
import type { LabPlan } from "./address-plan.js";
import type { NicMacs } from "./cloud-init.js";
import { portSecurityGroups, type SecurityGroupName } from "./security-rules.js";


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
  readonly userData: Readonly<Record<HostName, (macs: NicMacs) => string>>;
  /** The management uplink: servers install packages on first boot, which needs it in place. */
  readonly uplink: pulumi.Resource;
}

export class LabServers extends pulumi.ComponentResource {
  readonly servers: Readonly<Record<HostName, openstack.compute.Instance>>;
  /** Each server's boot identity (HostAccess.boot): its id and its flavor. */
  readonly boot: Readonly<Record<HostName, pulumi.Output<string>>>;
  readonly ports: Readonly<Record<HostName, Partial<Record<LabNetwork, openstack.networking.Port>>>>;

  constructor(name: string, args: LabServersArgs, opts?: pulumi.ComponentResourceOptions) {
    super("testbed:openstack:Servers", name, {}, opts);
    const servers = {} as Record<HostName, openstack.compute.Instance>;
    const ports = {} as Record<HostName, Partial<Record<LabNetwork, openstack.networking.Port>>>;

    for (const { name: host, role } of args.plan.hosts) {
      const hostPorts: Partial<Record<LabNetwork, openstack.networking.Port>> = {};
      ports[host] = hostPorts;
      const own = args.plan.ports.filter((p) => p.host === host).sort((a, b) => a.nic - b.nic);
      for (const p of own) {
        const capped = p.measured && args.qos !== undefined;
        hostPorts[p.network] = new openstack.networking.Port(
          `${name}-${host}-${p.network}`,
          {
            name: `testbed-${host}-${p.network}`,
            networkId: args.networkIds[p.network],
            fixedIps: p.fixedIps.map((f) => ({ subnetId: args.subnetIds[p.network][f.family]!, ipAddress: f.address })),
            securityGroupIds: portSecurityGroups(host, p.network).map((g) => args.securityGroupIds[g]),
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
      for (const p of own.filter((q) => q.network !== "management")) macs[p.network] = hostPorts[p.network]!.macAddress;
      const render = args.userData[host];
      if (!render) throw new Error(`no user data for the ${host}`);
      const userData = pulumi.all(macs).apply((m) => render(m as NicMacs));
      // Every worker boots from the worker's flavor: the workers after the first are sized as the paper's one.
      const flavor = args.flavors[role];
      servers[host] = new openstack.compute.Instance(
        `${name}-${host}`,
        {
          name: `testbed-${host}`,
          ...("name" in flavor ? { flavorName: flavor.name } : { flavorId: flavor.id }),
          imageName: args.image,
          keyPair: args.keyPairName,
          availabilityZone: args.availabilityZone,
          networks: own.map((p) => ({ port: hostPorts[p.network]!.id })),
          userData,
          // network_data.json (static IPv6 addresses and routes) is read at cloud-init's local stage,
          // before any network is up; the config drive has it without a metadata-service round trip.
          configDrive: true,
          metadata: { [ROLE_METADATA_KEY]: role, ...(host !== role ? { [HOST_METADATA_KEY]: host } : {}) },
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
      args.plan.hosts.map(({ name: host, role }) => {
        const flavor = args.flavors[role];
        const server = servers[host]!;
        // From the server's outputs, so a check that names it runs after the server's update (a resize).
        const ref = "name" in flavor ? server.flavorName.apply((n) => `flavor ${n ?? flavor.name}`) : pulumi.output(flavor.id).apply((id) => `flavor-id ${id}`);
        return [host, pulumi.all([server.id, ref]).apply(([id, f]) => `server ${id} ${f}`)];
      }),
    ) as Record<HostName, pulumi.Output<string>>;
    this.ports = ports;
    this.registerOutputs({ serverIds: Object.fromEntries(args.plan.hosts.map((h) => [h.name, servers[h.name]!.id])) });
  }
}
