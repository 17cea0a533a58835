// The lab's three networks with their subnets, and the Neutron router that gives the management
// network (only) its uplink: the bastion's floating IP and the hosts' package downloads.
import * as pulumi from "@pulumi/pulumi";
import * as openstack from "@pulumi/openstack";
import type { Family } from "../../scenario/cidr.js";
import type { LabNetwork } from "../hosts.js";
import { LAB_NETWORKS, type LabPlan } from "./address-plan.js";

export interface LabNetworksArgs {
  readonly plan: LabPlan;
  /** Name of the external network the Neutron router uplinks to (testbed:openstack.externalNetwork). */
  readonly externalNetwork: string;
}

export class LabNetworks extends pulumi.ComponentResource {
  readonly networkIds: Readonly<Record<LabNetwork, pulumi.Output<string>>>;
  readonly subnetIds: Readonly<Record<LabNetwork, Partial<Record<Family, pulumi.Output<string>>>>>;
  /** The management subnet's router interface: a floating IP and first-boot package installs need it. */
  readonly uplink: openstack.networking.RouterInterface;

  constructor(name: string, args: LabNetworksArgs, opts?: pulumi.ComponentResourceOptions) {
    super("testbed:openstack:Networks", name, {}, opts);
    const networkIds = {} as Record<LabNetwork, pulumi.Output<string>>;
    const subnetIds = {} as Record<LabNetwork, Partial<Record<Family, pulumi.Output<string>>>>;
    const subnets = new Map<string, openstack.networking.Subnet>();

    for (const network of LAB_NETWORKS) {
      const net = new openstack.networking.Network(`${name}-${network}`, { name: `testbed-${network}`, adminStateUp: true }, { parent: this });
      networkIds[network] = net.id;
      subnetIds[network] = {};
      for (const sn of args.plan.subnets.filter((s) => s.network === network)) {
        const subnet = new openstack.networking.Subnet(
          `${name}-${network}-${sn.family}`,
          {
            name: `testbed-${network}-${sn.family}`,
            networkId: net.id,
            ipVersion: sn.family === "ipv4" ? 4 : 6,
            cidr: sn.cidr,
            ...(sn.gatewayIp ? { gatewayIp: sn.gatewayIp } : { noGateway: true }),
            enableDhcp: sn.enableDhcp,
            allocationPools: [sn.allocationPool],
            // Inline rather than SubnetRoute resources: the routes must exist before any port, since
            // nova copies them into network_data.json when a server is created.
            hostRoutes: sn.hostRoutes.map((r) => ({ destinationCidr: r.destinationCidr, nextHop: r.nextHop })),
            dnsNameservers: [...sn.dnsNameservers],
          },
          { parent: this },
        );
        subnets.set(`${network}/${sn.family}`, subnet);
        subnetIds[network][sn.family] = subnet.id;
      }
    }

    const external = openstack.networking.getNetworkOutput({ name: args.externalNetwork, external: true }, { parent: this });
    const router = new openstack.networking.Router(
      `${name}-router`,
      { name: "testbed-uplink", adminStateUp: true, externalNetworkId: external.id },
      { parent: this },
    );
    const management = subnets.get("management/ipv4");
    if (!management) throw new Error("the lab plan has no IPv4 management subnet");
    this.uplink = new openstack.networking.RouterInterface(
      `${name}-router-management`,
      { routerId: router.id, subnetId: management.id },
      { parent: this },
    );
    this.networkIds = networkIds;
    this.subnetIds = subnetIds;
    this.registerOutputs({ networkIds, subnetIds, routerId: router.id });
  }
}
