// Flavors of the lab's hosts: the existing ones named in testbed:hosts.<role>.flavor, or, with
// testbed:flavors.create (admin rights), one per role with the paper's sizing and its clock cap.
import * as pulumi from "@pulumi/pulumi";
import * as openstack from "@pulumi/openstack";
import { CONFIG_NAMESPACE, type Scenario } from "../../scenario/schema.js";
import { HOST_ROLES, type HostRole } from "../hosts.js";

/** libvirt refuses a CPU quota below 1 ms per period. */
export const MIN_CPU_QUOTA_US = 1000;

/**
 * The paper ran its VMs at 1500 MHz. A cloud cannot set a vCPU's clock, but libvirt's CFS quota can
 * give each vCPU thread the same share of a faster host core: quota = period * cap / host clock.
 * Nova passes `quota:*` extra specs to libvirt's <cputune>, where the quota applies per vCPU.
 */
export function cpuQuotaExtraSpecs(f: Scenario["flavors"]): Record<string, string> {
  if (f.hostCpuMHz === undefined) {
    throw new Error(`${CONFIG_NAMESPACE}:flavors.hostCpuMHz is missing; accepted: the compute hosts' clock in MHz, e.g. 3000`);
  }
  const quota = Math.floor((f.cpuPeriodUs * f.cpuCapMHz) / f.hostCpuMHz);
  if (quota < MIN_CPU_QUOTA_US) {
    throw new Error(
      `${CONFIG_NAMESPACE}:flavors.cpuPeriodUs ${f.cpuPeriodUs} gives a CPU quota of ${quota} µs for ${f.cpuCapMHz} of ${f.hostCpuMHz} MHz; accepted: a period long enough for a quota of at least ${MIN_CPU_QUOTA_US} µs`,
    );
  }
  return { "quota:cpu_period": String(f.cpuPeriodUs), "quota:cpu_quota": String(quota) };
}

/** The flavor a created one is called: the stack in the name, since flavor names are cloud-wide. */
export function createdFlavorName(stack: string, role: HostRole): string {
  return `testbed-${stack}-${role}`;
}

export interface LabFlavorsArgs {
  readonly scenario: Pick<Scenario, "hosts" | "flavors">;
  readonly stack: string;
}

/** One private flavor per role, sized as testbed:hosts.<role> says and capped as testbed:flavors says. */
export class LabFlavors extends pulumi.ComponentResource {
  /**
   * By id: nova lists only public flavors unless asked otherwise, so a lookup by name would miss
   * these private ones.
   */
  readonly ids: Readonly<Record<HostRole, pulumi.Output<string>>>;

  constructor(name: string, args: LabFlavorsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("testbed:openstack:Flavors", name, {}, opts);
    const extraSpecs = cpuQuotaExtraSpecs(args.scenario.flavors);
    const ids = {} as Record<HostRole, pulumi.Output<string>>;
    for (const role of HOST_ROLES) {
      const host = args.scenario.hosts[role];
      const flavor = new openstack.compute.Flavor(
        `${name}-${role}`,
        {
          name: createdFlavorName(args.stack, role),
          vcpus: host.vcpus,
          ram: host.ramMiB,
          disk: host.diskGiB,
          extraSpecs,
          // Private: only the lab's (admin) credentials, which created it, boot from it.
          isPublic: false,
        },
        { parent: this },
      );
      ids[role] = flavor.id;
    }
    this.ids = ids;
    this.registerOutputs({ ids });
  }
}
