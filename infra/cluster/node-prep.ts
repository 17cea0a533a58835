// Node preparation: what cloud-init does on the master and the worker before any cluster step runs.
// containerd (systemd cgroup driver), kubelet/kubeadm/kubectl pinned to the scenario's version from
// pkgs.k8s.io, kernel modules and sysctls for both families, swap off; Helm on the master only.
// The cluster's remote commands wait for the marker this writes, so a half-prepared node never
// reaches `kubeadm`.
//
// Default versions (testbed:kubernetes.version, testbed:cilium.version, testbed:cilium.helmVersion):
// - Kubernetes 1.32.9: pkgs.k8s.io's v1.32 line carries it as 1.32.9-1.1. 1.32 is the newest line
//   Cilium 1.17 is tested against, and kubelet before 1.35 runs on Ubuntu 20.04's cgroup v1 untold.
// - Cilium 1.17.18: the last line that supports kernel 5.4 (1.18 needs 5.10).
// - containerd: Ubuntu 20.04's own package, not pinned (the archive keeps only its newest build),
//   held once installed; the installed version is reported in the stack output `versions`.
// - Helm 3.18.6, a Helm 3 release checked against the digest get.helm.sh publishes beside it.
import type { Scenario } from "../../scenario/schema.js";
import type { CloudInitPart } from "../hosts.js";
import { shellAssignments } from "./shell.js";

export type NodeRole = "master" | "worker";

/** Written last by the preparation script; its lines are `name=version` of what it installed. */
export const NODE_PREP_MARKER = "/var/lib/testbed/node-prep.done";
export const NODE_PREP_SCRIPT = "/usr/local/sbin/testbed-node-prep";
export const CONTAINERD_CONFIG = "/etc/containerd/config.toml";
export const CONTAINERD_SOCKET = "unix:///var/run/containerd/containerd.sock";

/** "1.32.9" -> "v1.32": the pkgs.k8s.io repository holds one minor line per path. */
export function kubernetesRepoLine(version: string): string {
  const m = /^(\d+)\.(\d+)\.\d+$/.exec(version);
  if (!m) throw new Error(`kubernetes.version "${version}": accepted: MAJOR.MINOR.PATCH, e.g. 1.32.9`);
  return `v${m[1]}.${m[2]}`;
}

export function kubernetesRepoUrl(version: string): string {
  return `https://pkgs.k8s.io/core:/stable:/${kubernetesRepoLine(version)}/deb/`;
}

const MODULES = ["overlay", "br_netfilter"];

/** Forwarding for both families (pods and Services are dual-stack); bridged traffic through netfilter for kube-proxy. */
const SYSCTLS: Readonly<Record<string, string>> = {
  "net.ipv4.ip_forward": "1",
  "net.ipv6.conf.all.forwarding": "1",
  "net.bridge.bridge-nf-call-iptables": "1",
  "net.bridge.bridge-nf-call-ip6tables": "1",
};

/**
 * containerd 1.x configuration (format version 2). Only what differs from containerd's defaults:
 * the systemd cgroup driver, which must match kubelet's `cgroupDriver: systemd` (two cgroup managers
 * on one hierarchy make the node unstable under load), and the pause image, which the preparation
 * script aligns with the one the installed kubeadm expects.
 */
export function containerdConfig(): string {
  return [
    "# Written by the testbed's node preparation. Unlisted settings keep containerd's defaults.",
    "version = 2",
    "",
    '[plugins."io.containerd.grpc.v1.cri"]',
    "  # Replaced by the pause image of the installed kubeadm (`kubeadm config images list`).",
    '  sandbox_image = "registry.k8s.io/pause:3.10"',
    "",
    '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
    '  runtime_type = "io.containerd.runc.v2"',
    "",
    '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
    "  SystemdCgroup = true",
    "",
  ].join("\n");
}

export function modulesLoadConfig(): string {
  return `${MODULES.join("\n")}\n`;
}

export function sysctlConfig(): string {
  return `${Object.entries(SYSCTLS)
    .map(([k, v]) => `${k} = ${v}`)
    .join("\n")}\n`;
}

/** The preparation script (bash). Safe to run again: every step converges. */
export function nodePrepScript(s: Pick<Scenario, "kubernetes" | "cilium">, role: NodeRole): string {
  const vars = shellAssignments({
    K8S_VERSION: s.kubernetes.version,
    K8S_REPO: kubernetesRepoUrl(s.kubernetes.version),
    ROLE: role,
    HELM_VERSION: s.cilium.helmVersion,
    MARKER: NODE_PREP_MARKER,
    CONTAINERD_CONFIG,
  });
  return `#!/usr/bin/env bash
# Prepares a Kubernetes node of the testbed (run once by cloud-init; safe to run again).
set -euo pipefail
${vars}
export DEBIAN_FRONTEND=noninteractive

# Unattended upgrades hold the dpkg lock for minutes after boot: wait for it instead of failing.
apt_get() { apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold -y -q "$@"; }

# kubelet refuses to start while swap is on (failSwapOn).
swapoff -a
sed -ri '/\\sswap\\s/s/^([^#])/#\\1/' /etc/fstab

# Modules and sysctls come from the files cloud-init wrote; apply them now, not at the next boot.
systemctl restart systemd-modules-load.service
sysctl --system >/dev/null

apt_get update
apt_get install apt-transport-https ca-certificates curl gpg containerd conntrack socat ebtables ethtool

install -d -m 0755 /etc/apt/keyrings
curl -fsSL --retry 5 --connect-timeout 20 --max-time 300 "\${K8S_REPO}Release.key" | gpg --batch --yes --dearmor -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
echo "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] \${K8S_REPO} /" >/etc/apt/sources.list.d/kubernetes.list
apt_get update

# The repository names packages MAJOR.MINOR.PATCH-REVISION (e.g. 1.32.9-1.1): take the newest revision of the patch.
pkg_version="$(apt-cache madison kubeadm | awk -v want="\${K8S_VERSION}-" 'index($3, want) == 1 && !found { print $3; found = 1 }')"
if [ -z "$pkg_version" ]; then
  echo "kubernetes.version \${K8S_VERSION}: no kubeadm package \${K8S_VERSION}-* in \${K8S_REPO}; it offers:" >&2
  apt-cache madison kubeadm | awk '{ print "  " $3 }' >&2
  exit 1
fi
apt_get install --allow-change-held-packages --allow-downgrades "kubelet=\${pkg_version}" "kubeadm=\${pkg_version}" "kubectl=\${pkg_version}"
# Held: an unattended upgrade must not restart the runtime or change versions between measurements.
apt-mark hold kubelet kubeadm kubectl containerd >/dev/null

pause_image="$(kubeadm config images list --kubernetes-version "v\${K8S_VERSION}" | grep '/pause:')"
sed -ri "s|^(\\s*sandbox_image = ).*|\\1\\"\${pause_image}\\"|" "$CONTAINERD_CONFIG"
systemctl restart containerd
systemctl enable kubelet

if [ "$ROLE" = master ]; then
  # Helm installs Cilium from the master, which reaches the API server without leaving the lab.
  arch="$(dpkg --print-architecture)"
  tarball="helm-v\${HELM_VERSION}-linux-\${arch}.tar.gz"
  workdir="$(mktemp -d)"
  trap 'rm -rf "$workdir"' EXIT
  curl -fsSL --retry 5 --connect-timeout 20 --max-time 300 -o "$workdir/$tarball" "https://get.helm.sh/$tarball"
  curl -fsSL --retry 5 --connect-timeout 20 --max-time 300 -o "$workdir/$tarball.sha256sum" "https://get.helm.sh/$tarball.sha256sum"
  (cd "$workdir" && sha256sum --check --quiet "$tarball.sha256sum")
  tar -xzf "$workdir/$tarball" -C "$workdir"
  install -m 0755 "$workdir/linux-\${arch}/helm" /usr/local/bin/helm
fi

install -d -m 0755 "$(dirname "$MARKER")"
{
  echo "kubernetes=\${pkg_version}"
  echo "containerd=$(dpkg-query -W -f='\${Version}' containerd)"
  echo "kernel=$(uname -r)"
  echo "cgroup=$(stat -fc %T /sys/fs/cgroup)"
  if [ "$ROLE" = master ]; then echo "helm=$(helm version --template '{{.Version}}')"; fi
} >"$MARKER.tmp"
mv "$MARKER.tmp" "$MARKER"
`;
}

/** The cloud-init fragment for a Kubernetes node; the OpenStack layer merges it into the host's user data. */
export function renderNodePrep(s: Pick<Scenario, "kubernetes" | "cilium">, role: NodeRole): CloudInitPart {
  return {
    write_files: [
      { path: "/etc/modules-load.d/kubernetes.conf", content: modulesLoadConfig(), permissions: "0644" },
      { path: "/etc/sysctl.d/90-kubernetes.conf", content: sysctlConfig(), permissions: "0644" },
      { path: CONTAINERD_CONFIG, content: containerdConfig(), permissions: "0644" },
      { path: NODE_PREP_SCRIPT, content: nodePrepScript(s, role), permissions: "0755" },
    ],
    runcmd: [[NODE_PREP_SCRIPT]],
  };
}
