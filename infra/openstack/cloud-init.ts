// Cloud-init user data of each host, as pure functions: what every host gets, what its role adds,
// and the parts other layers contribute (CloudInitPart, merged in order, lists concatenated).
// The result is one #cloud-config document; tests run cloud-init's own schema validator and
// shellcheck over it.
import { Document, isSeq, visit } from "yaml";
import { shapingCommands } from "../../scenario/link-cap.js";
import { CONFIG_NAMESPACE, type Scenario } from "../../scenario/schema.js";
import { roleOf, type CloudInitPart, type HostName, type HostRole, type LabNetwork } from "../hosts.js";
import { REMOTE_ARTIFACT_ROOT } from "../remote-files.js";
import { MEASURED_PORTS, type LabPlan } from "./address-plan.js";

/** chrony: D-ITG's one-way meter (owdm) needs synchronised clocks; tcpdump: looking at the path. */
export const COMMON_PACKAGES = ["chrony", "tcpdump"] as const;
/**
 * The client: D-ITG (ITGSend/ITGRecv/ITGDec, Ubuntu's universe), and a C compiler with the C
 * library's headers for the connection-setup probe, which the stack builds there from its source.
 */
export const CLIENT_PACKAGES = ["d-itg", "gcc", "libc6-dev"] as const;
/**
 * The worker: what the hop probes need to be compiled and loaded on the node itself (clang for the
 * BPF objects, gcc and the C library's and the kernel's UAPI headers for their loaders, tc from
 * iproute2), and conntrack, with which the kube-proxy dataplanes forget the connections they track.
 */
export const WORKER_PACKAGES = ["clang", "gcc", "libc6-dev", "linux-libc-dev", "iproute2", "conntrack"] as const;
/**
 * bpftool, which loads and attaches the connect call's cgroup hooks on the client node of clusterip
 * (tc loads only tc programs): Ubuntu ships it in the tools package of the running kernel, whose
 * name cloud-init's package list cannot spell, so a command installs it.
 */
export const WORKER_KERNEL_TOOLS_COMMAND = 'apt-get install -y "linux-tools-$(uname -r)"';

/**
 * What each role's readiness check finds once cloud-init is done (commands on PATH, files): a
 * package that failed to install stops the host there, not in the middle of a campaign.
 */
export const ROLE_TOOLS: Partial<Record<HostRole, { readonly commands: readonly string[]; readonly files: readonly string[] }>> = {
  client: { commands: ["ITGSend", "ITGDec", "cc"], files: ["/usr/include/stdio.h"] },
  worker: { commands: ["clang", "gcc", "tc", "conntrack", "bpftool"], files: ["/usr/include/stdio.h", "/usr/include/linux/bpf.h"] },
};

/** What the host's own bootstrap leaves behind, read by the readiness check (host-ready.ts). */
export const HOST_STATE_DIR = "/var/lib/testbed";
/** Written by the boot-time checks and the host setup when they fail: the reason, for the readiness check. */
export const BOOTSTRAP_FAILED_FILE = `${HOST_STATE_DIR}/bootstrap-failed`;
/** Written last by the host setup: every data NIC named, forwarding and the link cap in place. */
export const HOST_READY_MARKER = `${HOST_STATE_DIR}/host-ready`;
export const HOST_SETUP_SCRIPT = "/usr/local/sbin/testbed-host-setup";
/** `MAC NAME [ADDRESS/PREFIX ...]` per data NIC: what the host setup renames and configures. */
export const NIC_TABLE_FILE = "/etc/testbed/nics";
/** Amends cloud-init's own netplan definitions of the data NICs (same ids): set-name, extra addresses. */
export const NIC_NETPLAN_FILE = "/etc/netplan/60-testbed-nics.yaml";
export const ROUTER_SYSCTL_FILE = "/etc/sysctl.d/60-testbed-forwarding.conf";
export const LINK_CAP_SCRIPT = "/usr/local/sbin/testbed-link-cap";
export const LINK_CAP_UNIT = "testbed-link-cap.service";

/** MAC addresses of a host's data ports, as Neutron assigned them. */
export type NicMacs = Partial<Record<LabNetwork, string>>;

/** The names a host's bootstrap downloads from; its first boot checks that they resolve. */
export function bootstrapHostnames(s: Pick<Scenario, "receiver">, role: HostRole): string[] {
  const names: string[] = [];
  if (role === "master" || role === "worker") names.push("pkgs.k8s.io", "registry.k8s.io", "quay.io");
  if (role === "master") names.push("get.helm.sh", "helm.cilium.io");
  if (role === "worker") {
    // The receiver's image and the Debian archive its init container fetches d-itg from.
    const first = s.receiver.image.split("/")[0]!;
    const registry = first.includes(".") || first.includes(":") ? first.replace(/:\d+$/, "") : "registry-1.docker.io";
    names.push(registry === "docker.io" ? "registry-1.docker.io" : registry, "deb.debian.org");
  }
  return names;
}

/**
 * The first thing a host runs at boot (bootcmd, before packages): every name its bootstrap needs,
 * and the apt mirror's, must resolve. On ML2/OVS clouds a subnet without dns_nameservers gets a
 * dnsmasq with --no-resolv, and without this check apt, pkgs.k8s.io, Helm and image pulls would
 * all fail later and obscurely. The reason goes to BOOTSTRAP_FAILED_FILE for the readiness check.
 */
export function dnsCheckScript(s: Pick<Scenario, "openstack" | "receiver">, role: HostRole): string {
  const names = bootstrapHostnames(s, role).join(" ");
  const resolvers = s.openstack.dnsNameservers.join(", ");
  return `mkdir -p ${HOST_STATE_DIR}
rm -f ${BOOTSTRAP_FAILED_FILE}
mirror="$(sed -nE 's#^(deb|URIs:)[[:space:]]+(\[[^]]*\][[:space:]]+)?[a-z]+://([^/[:space:]]+).*#\\3#p' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)"
unresolved=""
for name in $mirror ${names}; do
  tries=0
  until timeout 10 getent ahosts "$name" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 30 ]; then unresolved="$unresolved $name"; break; fi
    sleep 2
  done
done
if [ -n "$unresolved" ]; then
  echo "testbed: this host resolves none of:$unresolved. Its resolvers come from its subnets, set by ${CONFIG_NAMESPACE}:openstack.dnsNameservers (now: ${resolvers}); set resolvers this cloud can reach and replace the hosts." | tee ${BOOTSTRAP_FAILED_FILE} >&2
fi`;
}

/** Everything every host gets. */
export function commonPart(s: Pick<Scenario, "openstack" | "receiver">, role: HostRole): CloudInitPart {
  return {
    packages: [...COMMON_PACKAGES],
    bootcmd: [dnsCheckScript(s, role)],
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

/** One data NIC as the host setup sees it. */
export interface DataNic {
  readonly mac: string;
  readonly name: string;
  /** Addresses the guest adds itself (the router VM's IPv6 next hops), with their prefix. */
  readonly addresses: readonly string[];
}

const MAC_PATTERN = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** The host's data NICs in NIC order, with the MACs Neutron gave their ports. */
export function dataNics(plan: LabPlan, host: HostName, macs: NicMacs): DataNic[] {
  return plan.ports
    .filter((p) => p.host === host && p.interfaceName !== undefined)
    .sort((a, b) => a.nic - b.nic)
    .map((p) => {
      const mac = macs[p.network]?.toLowerCase();
      if (!mac || !MAC_PATTERN.test(mac)) throw new Error(`the ${host}'s ${p.network} port has no MAC address ("${String(macs[p.network])}")`);
      const prefix = (family: string) => plan.subnets.find((sn) => sn.network === p.network && sn.family === family)!.cidr.split("/")[1];
      return { mac, name: p.interfaceName!, addresses: p.guestAddresses.map((a) => `${a.address}/${prefix(a.family)}`) };
    });
}

/** The host's NICs on the measured path, which the link cap shapes (by their stable names). */
export function cappedNics(plan: LabPlan, host: HostName): string[] {
  return plan.ports
    .filter((p) => p.host === host && MEASURED_PORTS.some((m) => m.role === p.role && m.network === p.network))
    .map((p) => p.interfaceName!);
}

/** Whether the guests shape the measured links themselves (linkShaping guest, a cap above 0). */
export function guestShapes(s: Pick<Scenario, "linkShaping" | "linkMbps">): boolean {
  return s.linkShaping === "guest" && s.linkMbps > 0;
}

/** The link cap on a host's measured NICs: tbf at linkMbps on each NIC's egress, as the local lab does. */
export function linkCapScript(s: Pick<Scenario, "linkMbps">, nics: readonly string[]): string {
  const lines = nics.flatMap((nic) => shapingCommands(nic, "tbf", s.linkMbps).map((argv) => argv.join(" ")));
  return `#!/bin/sh
# The paper capped every link of the measured path at ${s.linkMbps} Mbit/s. Egress shaping on each
# measured NIC caps every hop in both directions: client -> router, router -> worker and back.
set -e
${lines.join("\n")}
`;
}

function linkCapUnit(): string {
  return `[Unit]
Description=testbed: cap the measured links (tc), as the paper's lab
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${LINK_CAP_SCRIPT}

[Install]
WantedBy=multi-user.target
`;
}

/**
 * The lab's own first-boot setup of a host, as one script (runcmd): it names the data NICs by
 * MAC, applies the router's forwarding, starts the link cap, and writes HOST_READY_MARKER last. It
 * stops at the first failure and leaves the reason in BOOTSTRAP_FAILED_FILE.
 *
 * Names: cloud-init writes its netplan from network_data.json with each NIC's kernel name as the
 * definition's id (matched by MAC, `set-name` to that same name). NIC_NETPLAN_FILE uses the same
 * ids, so netplan merges it into those definitions, changing `set-name` (and adding the router's
 * next hops) rather than defining a NIC twice. On later boots udev applies the new names itself.
 */
export function hostSetupScript(s: Pick<Scenario, "families" | "linkShaping" | "linkMbps">, plan: LabPlan, host: HostName): string {
  const steps: string[] = [];
  if (roleOf(host) === "router") steps.push(`sysctl -p ${ROUTER_SYSCTL_FILE} >/dev/null`);
  if (guestShapes(s) && cappedNics(plan, host).length > 0) steps.push(`systemctl enable --now ${LINK_CAP_UNIT}`);
  return `#!/bin/bash
# The testbed's first-boot setup of this host (run once by cloud-init).
set -euo pipefail
fail() {
  echo "testbed host setup: $*" | tee -a ${BOOTSTRAP_FAILED_FILE} >&2
  exit 1
}
trap 'fail "failed at line $LINENO"' ERR
mkdir -p ${HOST_STATE_DIR}

# The kernel name of the NIC with this MAC.
by_mac() {
  local dev
  for dev in /sys/class/net/*; do
    if [ "$(cat "$dev/address" 2>/dev/null)" = "$1" ]; then
      echo "\${dev##*/}"
      return 0
    fi
  done
  return 1
}

if [ ! -e ${NIC_NETPLAN_FILE} ]; then
  umask 077
  netplan_file="$(mktemp)"
  printf 'network:\\n  version: 2\\n  ethernets:\\n' >"$netplan_file"
  renames=()
  while read -r mac name rest; do
    [ -n "$mac" ] || continue
    read -r -a addresses <<<"$rest"
    current="$(by_mac "$mac")" || fail "no NIC has the MAC $mac of the port the $name NIC belongs to"
    printf '    %s:\\n      match: {macaddress: "%s"}\\n      set-name: %s\\n' "$current" "$mac" "$name" >>"$netplan_file"
    if [ "\${#addresses[@]}" -gt 0 ]; then
      list="$(printf '"%s", ' "\${addresses[@]}")"
      printf '      addresses: [%s]\\n' "\${list%, }" >>"$netplan_file"
    fi
    if [ "$current" != "$name" ]; then renames+=("$current" "$name"); fi
  done <${NIC_TABLE_FILE}
  mv "$netplan_file" ${NIC_NETPLAN_FILE}
  set -- "\${renames[@]}"
  while [ "$#" -ge 2 ]; do
    ip link set dev "$1" down
    ip link set dev "$1" name "$2"
    ip link set dev "$2" up
    shift 2
  done
  netplan apply
fi
${steps.join("\n")}
{
  echo "nics=$(awk '{ printf "%s%s", sep, $2; sep = "," }' ${NIC_TABLE_FILE})"
  echo "linkcap=${guestShapes(s) ? `${s.linkMbps}mbit` : "none"}"
} >${HOST_READY_MARKER}
`;
}

/** The NIC table (NIC_TABLE_FILE) of a host. */
export function nicTable(nics: readonly DataNic[]): string {
  return nics.map((n) => [n.mac, n.name, ...n.addresses].join(" ")).join("\n") + (nics.length > 0 ? "\n" : "");
}

/** The lab's setup of a host: data NIC names, the router's forwarding, the link cap. */
export function hostSetupPart(s: Pick<Scenario, "families" | "linkShaping" | "linkMbps">, plan: LabPlan, host: HostName, macs: NicMacs): CloudInitPart {
  const files: NonNullable<CloudInitPart["write_files"]>[number][] = [
    { path: NIC_TABLE_FILE, content: nicTable(dataNics(plan, host, macs)), permissions: "0644" },
    { path: HOST_SETUP_SCRIPT, content: hostSetupScript(s, plan, host), permissions: "0755" },
  ];
  if (roleOf(host) === "router") {
    const sysctls = routerSysctls(s);
    files.push({
      path: ROUTER_SYSCTL_FILE,
      content: ["# The router VM forwards between the client and the data-center network.", ...Object.entries(sysctls).map(([k, v]) => `${k} = ${v}`), ""].join("\n"),
    });
  }
  const capped = cappedNics(plan, host);
  if (guestShapes(s) && capped.length > 0) {
    files.push({ path: LINK_CAP_SCRIPT, content: linkCapScript(s, capped), permissions: "0755" });
    files.push({ path: `/etc/systemd/system/${LINK_CAP_UNIT}`, content: linkCapUnit(), permissions: "0644" });
  }
  return { write_files: files, runcmd: [[HOST_SETUP_SCRIPT]] };
}

/** The client: D-ITG's sender and the probe's compiler. */
export function clientPart(): CloudInitPart {
  return { packages: [...CLIENT_PACKAGES] };
}

/** The worker: the hop probes' tools and conntrack. */
export function workerPart(): CloudInitPart {
  return { packages: [...WORKER_PACKAGES], runcmd: [["sh", "-c", WORKER_KERNEL_TOOLS_COMMAND]] };
}

/** What the OpenStack layer itself puts on a host: what its role gets, and its own NICs and link cap. */
export function labParts(s: Pick<Scenario, "openstack" | "families" | "receiver" | "linkShaping" | "linkMbps">, plan: LabPlan, host: HostName, macs: NicMacs): CloudInitPart[] {
  const role = roleOf(host);
  const parts = [commonPart(s, role), hostSetupPart(s, plan, host, macs)];
  if (role === "client") parts.push(clientPart());
  if (role === "worker") parts.push(workerPart());
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

/** What a host's user data is rendered from; the scenario keys every part reads. */
export type UserDataScenario = Pick<Scenario, "openstack" | "families" | "receiver" | "linkShaping" | "linkMbps">;

/** A host's user data: the lab's parts for the host, then the parts other layers give its role. */
export function renderUserData(s: UserDataScenario, plan: LabPlan, host: HostName, macs: NicMacs, extra: readonly CloudInitPart[] = []): string {
  return renderCloudConfig(mergeCloudInitParts([...labParts(s, plan, host, macs), ...extra]));
}
