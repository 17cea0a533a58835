// Cloud-init user data of each host, as pure functions: what every host gets, what its role adds,
// and the parts other layers contribute (CloudInitPart, merged in order, lists concatenated).
// The result is one #cloud-config document; tests run cloud-init's own schema validator and
// shellcheck over it.
import { Document, isSeq, stringify, visit } from "yaml";
import type { Scenario } from "../../scenario/schema.js";
import type { CloudInitPart, HostRole } from "../hosts.js";
import { REMOTE_ARTIFACT_ROOT } from "../remote-files.js";
import type { LabPlan } from "./address-plan.js";

/** chrony: D-ITG's one-way meter (owdm) needs synchronised clocks; tcpdump: looking at the path. */
export const COMMON_PACKAGES = ["chrony", "tcpdump"] as const;
/** D-ITG (ITGSend/ITGRecv/ITGDec) from Ubuntu's universe. */
export const CLIENT_PACKAGES = ["d-itg"] as const;

export const ROUTER_SYSCTL_FILE = "/etc/sysctl.d/60-testbed-forwarding.conf";
export const ROUTER_NETPLAN_FILE = "/etc/netplan/60-testbed-router.yaml";

/** Everything every host gets. */
export function commonPart(s: Pick<Scenario, "openstack">): CloudInitPart {
  return {
    packages: [...COMMON_PACKAGES],
    write_files: [
      {
        // Ubuntu starts unattended-upgrades right after boot and it holds the dpkg lock for minutes;
        // later installs wait for it instead of failing.
        path: "/etc/apt/apt.conf.d/99-testbed-dpkg-lock-timeout",
        content: 'DPkg::Lock::Timeout "600";\n',
      },
      {
        // No background upgrades on a measurement host: they take CPU during runs and can restart
        // services (containerd, kubelet) mid-campaign. Replaces Ubuntu's file of the same name.
        path: "/etc/apt/apt.conf.d/20auto-upgrades",
        content: 'APT::Periodic::Update-Package-Lists "0";\nAPT::Periodic::Unattended-Upgrade "0";\n',
      },
    ],
    runcmd: [
      // Where the program uploads rendered files; owned by the SSH user, who uploads without sudo.
      ["install", "-d", "-m", "0755", REMOTE_ARTIFACT_ROOT],
      ["chown", `${s.openstack.sshUser}:`, REMOTE_ARTIFACT_ROOT],
    ],
  };
}

/** Sysctl lines of the router VM: forwarding in every family the lab carries. */
export function routerSysctls(s: Pick<Scenario, "families">): Record<string, string> {
  const sysctls: Record<string, string> = {};
  if (s.families.includes("ipv4")) sysctls["net.ipv4.ip_forward"] = "1";
  if (s.families.includes("ipv6")) sysctls["net.ipv6.conf.all.forwarding"] = "1";
  return sysctls;
}

/**
 * The router VM: forwarding sysctls, and its IPv6 next-hop addresses on the data networks (see
 * address-plan.ts for why those are the guest's own). The netplan file amends the definitions
 * cloud-init wrote from network_data.json (same interface ids), so the addresses survive reboots.
 */
export function routerPart(s: Pick<Scenario, "families">, plan: LabPlan): CloudInitPart {
  const sysctls = routerSysctls(s);
  const sysctlFile = [
    "# The router VM forwards between the client and the data-center network.",
    ...Object.entries(sysctls).map(([k, v]) => `${k} = ${v}`),
    "",
  ].join("\n");
  const ethernets: Record<string, { addresses: string[] }> = {};
  for (const port of plan.ports.filter((p) => p.role === "router")) {
    for (const a of port.guestAddresses) {
      const prefix = plan.subnets.find((sn) => sn.network === port.network && sn.family === a.family)!.cidr.split("/")[1];
      (ethernets[port.interfaceName] ??= { addresses: [] }).addresses.push(`${a.address}/${prefix}`);
    }
  }
  const files: NonNullable<CloudInitPart["write_files"]>[number][] = [{ path: ROUTER_SYSCTL_FILE, content: sysctlFile }];
  const runcmd: (string | string[])[] = [["sysctl", "-p", ROUTER_SYSCTL_FILE]];
  if (Object.keys(ethernets).length > 0) {
    files.push({
      path: ROUTER_NETPLAN_FILE,
      content: `# The router VM's IPv6 next hops on the data networks (allowed address pairs of its ports).\n${stringify({ network: { version: 2, ethernets } }, { lineWidth: 0 })}`,
      permissions: "0600",
    });
    runcmd.push(["netplan", "apply"]);
  }
  return { write_files: files, runcmd };
}

/** The client: D-ITG's sender. */
export function clientPart(): CloudInitPart {
  return { packages: [...CLIENT_PACKAGES] };
}

/** What the OpenStack layer itself puts on a host of this role. */
export function labParts(s: Pick<Scenario, "openstack" | "families">, plan: LabPlan, role: HostRole): CloudInitPart[] {
  const parts = [commonPart(s)];
  if (role === "router") parts.push(routerPart(s, plan));
  if (role === "client") parts.push(clientPart());
  return parts;
}

/**
 * Parts in order, lists concatenated (packages once each). Two parts writing one path would leave
 * the file to whichever runs last, so that is refused.
 */
export function mergeCloudInitParts(parts: readonly CloudInitPart[]): CloudInitPart {
  const packages: string[] = [];
  const files: NonNullable<CloudInitPart["write_files"]>[number][] = [];
  const bootcmd: NonNullable<CloudInitPart["bootcmd"]>[number][] = [];
  const runcmd: NonNullable<CloudInitPart["runcmd"]>[number][] = [];
  for (const part of parts) {
    for (const p of part.packages ?? []) if (!packages.includes(p)) packages.push(p);
    for (const f of part.write_files ?? []) {
      if (files.some((g) => g.path === f.path)) throw new Error(`two cloud-init parts write ${f.path}; accepted: one part per file`);
      files.push(f);
    }
    bootcmd.push(...(part.bootcmd ?? []));
    runcmd.push(...(part.runcmd ?? []));
  }
  return {
    ...(packages.length > 0 ? { packages } : {}),
    ...(files.length > 0 ? { write_files: files } : {}),
    ...(bootcmd.length > 0 ? { bootcmd } : {}),
    ...(runcmd.length > 0 ? { runcmd } : {}),
  };
}

/** One #cloud-config document. */
export function renderCloudConfig(part: CloudInitPart): string {
  const doc: Record<string, unknown> = {};
  // Packages come from the mirror's current index, not the image's stale one.
  if (part.packages?.length) Object.assign(doc, { package_update: true, packages: part.packages });
  if (part.write_files?.length) doc.write_files = part.write_files;
  if (part.bootcmd?.length) doc.bootcmd = part.bootcmd;
  if (part.runcmd?.length) doc.runcmd = part.runcmd;
  const yaml = new Document(doc);
  // A command given as argv reads best on one line: `- [sysctl, -p, FILE]`.
  visit(yaml, {
    Seq(_, node, path) {
      if (isSeq(path[path.length - 1])) node.flow = true;
    },
  });
  return `#cloud-config\n${yaml.toString({ lineWidth: 0, flowCollectionPadding: false })}`;
}

/** A host's user data: the lab's parts for its role, then the parts other layers give. */
export function renderUserData(
  s: Pick<Scenario, "openstack" | "families">,
  plan: LabPlan,
  role: HostRole,
  extra: readonly CloudInitPart[] = [],
): string {
  return renderCloudConfig(mergeCloudInitParts([...labParts(s, plan, role), ...extra]));
}
