// The OpenStack lab of the paper: client, router VM, master and worker on a client network and a
// data-center network, plus a management network with a bastion, the lab's only public address.
// Resources use the default openstack provider, which reads the stack's `openstack:*` config
// (authUrl, cloud, region, ...) and falls back to the OS_* environment variables of an openrc or
// clouds.yaml; nothing here names a cloud.
import * as pulumi from "@pulumi/pulumi";
import * as openstack from "@pulumi/openstack";
import type { Family } from "../../scenario/cidr.js";
import type { Scenario } from "../../scenario/schema.js";
import * as command from "@pulumi/command";
import { HOST_ROLES, patientConnection, type CloudInitPart, type HostAccess, type HostName, type HostRole, type LabNetwork, type NamedHost } from "../hosts.js";
import { LabAccess } from "./access.js";
import { labPlan, type LabPlan } from "./address-plan.js";
import { renderUserData, type NicMacs } from "./cloud-init.js";
import { hostExpectations, hostReadyBound, hostReadyScript } from "./host-ready.js";
import { asRootCommand, commandTimeouts } from "../cluster/shell.js";
import { cpuQuotaExtraSpecs, LabFlavors } from "./flavors.js";
import { LabNetworks } from "./network.js";
import { bandwidthLimits, LinkQos } from "./qos.js";
import { securityGroupPlans, type SecurityGroupPlan } from "./security-rules.js";
import { LabServers, type LabServersArgs } from "./servers.js";

export interface OpenStackLabArgs {
  readonly scenario: Scenario;
  /** testbed:sshPrivateKey; every connection built from it is a secret. */
  readonly sshPrivateKey: pulumi.Input<string>;
  /** The Pulumi stack: part of the names the cloud wants unique (key pair, created flavors). */
  readonly stack: string;
  /** What other layers add to the user data of each host of a role (e.g. node preparation on master and workers). */
  readonly cloudInitParts: Partial<Record<HostRole, CloudInitPart[]>>;
  /** renderLab's result, when the caller checked it before declaring anything of its own. */
  readonly rendered?: RenderedLab;
}

/** Addresses per host (the roles', and worker-N for the workers after the first), network and family, as plain data. */
export type HostAddresses = Record<HostName, Partial<Record<LabNetwork, Partial<Record<Family, string>>>>>;

/** Everything the lab derives from its arguments without the cloud; throws on a bad scenario. */
export interface RenderedLab {
  readonly plan: LabPlan;
  readonly securityGroups: SecurityGroupPlan[];
  /** Each host's user data, from the MACs of its data ports (known once Neutron made them). */
  readonly userData: Record<HostName, (macs: NicMacs) => string>;
}

export function renderLab(args: Pick<OpenStackLabArgs, "scenario" | "cloudInitParts">): RenderedLab {
  const s = args.scenario;
  const plan = labPlan(s);
  const securityGroups = securityGroupPlans(s);
  // Checked here, before any resource is declared, so a bad value never leaves half a lab.
  if (s.flavors.create) cpuQuotaExtraSpecs(s.flavors);
  bandwidthLimits(s.linkMbps);
  for (const role of Object.keys(args.cloudInitParts)) {
    if (!(HOST_ROLES as readonly string[]).includes(role)) {
      throw new Error(`cloud-init parts for "${role}": accepted: one of ${HOST_ROLES.join(", ")}`);
    }
  }
  const userData = Object.fromEntries(
    plan.hosts.map(({ name, role }) => [name, (macs: NicMacs) => renderUserData(s, plan, name, macs, args.cloudInitParts[role] ?? [])]),
  ) as Record<HostName, (macs: NicMacs) => string>;
  // Rendered once now with stand-in MACs, so a part that cannot render fails before any resource.
  const standIn: NicMacs = { client: "02:00:00:00:00:01", datacenter: "02:00:00:00:00:02" };
  for (const { name } of plan.hosts) userData[name]!(standIn);
  return { plan, securityGroups, userData };
}

/** Seconds a new server may take to answer SSH (the readiness check dials until then). */
const SSH_BOOT_WAIT_S = 600;

function familyOfAddress(address: string): Family {
  return address.includes(":") ? "ipv6" : "ipv4";
}

export class OpenStackLab extends pulumi.ComponentResource {
  /** How the layers above reach and address each role's host (`worker`: worker 1). */
  readonly hosts: Readonly<Record<HostRole, HostAccess>>;
  /** Every worker, worker 1 (hosts.worker) first (testbed:workers). */
  readonly workers: readonly NamedHost[];
  /** The bastion's floating IP: the one address of the lab reachable from outside. */
  readonly bastionAddress: pulumi.Output<string>;
  readonly hostAddresses: pulumi.Output<HostAddresses>;
  readonly plan: LabPlan;

  constructor(name: string, args: OpenStackLabArgs, opts?: pulumi.ComponentResourceOptions) {
    const rendered = args.rendered ?? renderLab(args);
    super("testbed:openstack:Lab", name, {}, opts);
    const s = args.scenario;
    const { plan } = rendered;

    const networks = new LabNetworks(`${name}-net`, { plan, externalNetwork: s.openstack.externalNetwork }, { parent: this });
    const access = new LabAccess(
      `${name}-access`,
      { groups: rendered.securityGroups, sshPublicKey: s.sshPublicKey, keyPairName: `testbed-${args.stack}` },
      { parent: this },
    );
    // The link cap through Neutron (linkShaping neutron): an existing policy is attached as it is
    // (a project member may), otherwise the stack creates one (admin only). Guest shaping lives
    // in the hosts' cloud-init instead.
    const qos =
      s.linkShaping !== "neutron" || s.linkMbps === 0
        ? undefined
        : s.openstack.qosPolicyId !== undefined
          ? { policyId: pulumi.output(s.openstack.qosPolicyId), rules: [] }
          : new LinkQos(`${name}-qos`, { linkMbps: s.linkMbps }, { parent: this });
    const created = s.flavors.create ? new LabFlavors(`${name}-flavors`, { scenario: s, stack: args.stack }, { parent: this }) : undefined;
    const flavors = Object.fromEntries(
      HOST_ROLES.map((r) => [r, created ? { id: created.ids[r] } : { name: s.hosts[r].flavor }]),
    ) as LabServersArgs["flavors"];

    const servers = new LabServers(
      `${name}-servers`,
      {
        plan,
        networkIds: networks.networkIds,
        subnetIds: networks.subnetIds,
        securityGroupIds: access.securityGroupIds,
        qos,
        flavors,
        keyPairName: access.keyPairName,
        image: s.openstack.image,
        availabilityZone: s.openstack.availabilityZone,
        userData: rendered.userData,
        uplink: networks.uplink,
      },
      { parent: this },
    );

    // The bastion's management port holds the lab's only floating IP. The association needs the
    // router's interface on that subnet, or Neutron answers ExternalGatewayForFloatingIPNotFound.
    const bastionPort = servers.ports.bastion.management;
    if (!bastionPort) throw new Error("the bastion has no management port");
    const floatingIp = new openstack.networking.FloatingIp(
      `${name}-bastion-address`,
      { pool: s.openstack.externalNetwork, description: "testbed bastion: SSH from testbed:adminCidr only" },
      { parent: this },
    );
    const association = new openstack.networking.FloatingIpAssociate(
      `${name}-bastion-address-association`,
      { floatingIp: floatingIp.address, portId: bastionPort.id },
      { parent: this, dependsOn: [networks.uplink] },
    );
    // Read from the association, so whoever connects waits until the address is attached.
    this.bastionAddress = association.floatingIp;

    const privateKey = pulumi.secret(args.sshPrivateKey);
    const user = s.openstack.sshUser;
    const hosts = {} as Record<HostName, HostAccess>;
    for (const { name: host, role } of plan.hosts) {
      const addresses: HostAccess["addresses"] = {};
      const interfaces: HostAccess["interfaces"] = {};
      for (const p of plan.ports.filter((q) => q.host === host)) {
        const port = servers.ports[host]![p.network]!;
        const perFamily: Partial<Record<Family, pulumi.Output<string>>> = {};
        for (const fixed of p.fixedIps) {
          // From the port, so that users of an address wait for the port that holds it.
          perFamily[fixed.family] = port.allFixedIps.apply((ips) => {
            const found = ips.find((ip) => familyOfAddress(ip) === fixed.family);
            if (!found) throw new Error(`the ${host}'s ${p.network} port has no ${fixed.family} address`);
            return found;
          });
        }
        for (const guest of p.guestAddresses) perFamily[guest.family] = port.id.apply(() => guest.address);
        addresses[p.network] = perFamily;
        if (p.interfaceName) interfaces[p.network] = p.interfaceName;
      }
      const management = addresses.management?.ipv4;
      if (!management) throw new Error(`the ${host} has no IPv4 management address`);
      // The bastion is reached at its floating IP; every other host at its management address,
      // through the bastion (ProxyJump). The key makes the whole connection a secret.
      const connection =
        role === "bastion"
          ? pulumi.all([this.bastionAddress, privateKey]).apply(([host, key]) => ({ host, user, privateKey: key }))
          : pulumi
              .all([management, this.bastionAddress, privateKey])
              .apply(([host, proxyHost, key]) => ({ host, user, privateKey: key, proxy: { host: proxyHost, user, privateKey: key } }));
      // Nothing runs on a host, or relies on it, before its own bootstrap has been checked there. The
      // check names the host's boot identity: a resize (which reboots it) runs the check again, as an
      // update; a new server replaces it (its trigger), which runs no delete.
      const boot = servers.boot[host]!;
      const server = servers.servers[host]!;
      const bound = hostReadyBound();
      const ready = new command.remote.Command(
        `${name}-${host}-ready`,
        {
          connection: patientConnection(connection),
          create: boot.apply((b) => asRootCommand(hostReadyScript(hostExpectations(s, plan, host), { boot: b }), bound)),
          triggers: [server.id],
        },
        {
          parent: this,
          dependsOn: [server, association],
          deletedWith: server,
          // The connection dials without a limit while the server boots: its wait counts too.
          customTimeouts: commandTimeouts({ limitS: bound.limitS + SSH_BOOT_WAIT_S }),
        },
      );
      hosts[host] = { connection: pulumi.secret(connection), addresses, interfaces, server, ready, boot };
    }
    this.hosts = hosts;
    this.workers = plan.hosts.filter((h) => h.role === "worker").map((h) => ({ name: h.name, access: hosts[h.name]! }));
    this.plan = plan;
    const addressesByHost = {} as Record<HostName, HostAccess["addresses"]>;
    for (const { name: host } of plan.hosts) addressesByHost[host] = hosts[host]!.addresses;
    this.hostAddresses = pulumi.output(addressesByHost);

    this.registerOutputs({ bastionAddress: this.bastionAddress, hostAddresses: this.hostAddresses });
  }
}
