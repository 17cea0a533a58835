// The scripts of the cluster's remote commands, and the parsers of what they print.
// Order: wait for the node (SSH, cloud-init, node preparation) -> kubeadm init on the master ->
// a join token minted on the master -> kubeadm join on the worker -> Cilium (helm on the master) ->
// every node Ready with the dataplane the stack asks for.
import ipaddr from "ipaddr.js";
import type { Family } from "../../scenario/cidr.js";
import type { Dataplane } from "../../scenario/schema.js";
import { CA_CERT_HASH_PLACEHOLDER, JOIN_TOKEN_PLACEHOLDER, type FamilyAddresses } from "./kubeadm.js";
import { NODE_PREP_MARKER } from "./node-prep.js";
import { shellAssignments } from "./shell.js";

/** Where the scripts read and write on a node. */
export interface NodePaths {
  /** kubeadm's admin kubeconfig. */
  readonly adminConf: string;
  /** kubeadm's own output holds the join command with a token: it goes to a root-only log here, never to Pulumi. */
  readonly logDir: string;
  /** Root-only directory for the join configuration with its credentials filled in. */
  readonly scratchDir: string;
}

export const NODE_PATHS: NodePaths = { adminConf: "/etc/kubernetes/admin.conf", logDir: "/var/log/testbed", scratchDir: "/root" };
const ADMIN_CONF = NODE_PATHS.adminConf;
/** How long a minted join token lives; the join that uses it runs right after. */
export const JOIN_TOKEN_TTL = "30m";

const HEADER = "set -euo pipefail";

/** Prints the tail of a kubeadm log to stderr with every credential masked. */
const REDACTED_TAIL = `redacted_tail() {
  tail -n 40 "$1" | sed -E 's/(--token|--discovery-token-ca-cert-hash|--certificate-key) [^ ]+/\\1 [redacted]/g' >&2
}`;

/**
 * Returns a node to the state before kubeadm: kubeadm's reset, plus what it leaves behind (CNI
 * configuration, kube-proxy's and Cilium's iptables chains, Cilium's devices, tc programs and pinned
 * maps), so that a node switched from one dataplane to the other keeps nothing of the first.
 */
export const NODE_RESET = `reset_node() {
  if command -v kubeadm >/dev/null; then kubeadm reset --force >/dev/null 2>&1 || true; fi
  rm -rf /etc/cni/net.d/* /var/lib/cni /var/run/cilium
  for ipt in iptables ip6tables; do
    if command -v "$ipt-save" >/dev/null; then
      "$ipt-save" | grep -v -e KUBE -e CILIUM | "$ipt-restore" || true
    fi
  done
  for link in cilium_host cilium_net cilium_vxlan cilium_geneve; do
    ip link delete "$link" 2>/dev/null || true
  done
  for dev in /sys/class/net/*; do
    dev="\${dev##*/}"
    if tc filter show dev "$dev" ingress 2>/dev/null | grep cil_ >/dev/null; then tc qdisc delete dev "$dev" clsact 2>/dev/null || true; fi
  done
  rm -rf /sys/fs/bpf/tc/globals/cilium_* /sys/fs/bpf/cilium
}`;

/** Waits for cloud-init and checks that node preparation finished for the scenario's Kubernetes version; prints the marker. */
export function waitForNodeScript(kubernetesVersion: string, marker: string = NODE_PREP_MARKER): string {
  return `${HEADER}
${shellAssignments({ MARKER: marker, K8S_VERSION: kubernetesVersion })}
# Exit code 2 is "done, with recoverable errors" on newer cloud-init; the marker decides.
cloud-init status --wait >/dev/null || [ $? -eq 2 ]
if [ ! -f "$MARKER" ]; then
  echo "node preparation did not finish; the end of its log:" >&2
  tail -n 40 /var/log/cloud-init-output.log >&2
  exit 1
fi
installed="$(sed -n 's/^kubernetes=//p' "$MARKER")"
case "$installed" in
  "$K8S_VERSION"-*) ;;
  *)
    echo "this node was prepared with Kubernetes $installed, the scenario asks for $K8S_VERSION; replace the host to prepare it again" >&2
    exit 1
    ;;
esac
cat "$MARKER"`;
}

/** `kubeadm init` from the uploaded configuration; prints admin.conf and nothing else. */
export function kubeadmInitScript(configPath: string, paths: NodePaths = NODE_PATHS): string {
  return `${HEADER}
${shellAssignments({ CONFIG: configPath, LOG: `${paths.logDir}/kubeadm-init.log`, ADMIN_CONF: paths.adminConf })}
${NODE_RESET}
${REDACTED_TAIL}
install -d -m 0700 "$(dirname "$LOG")"
# Nothing of an earlier, failed attempt survives: Pulumi recorded no cluster for it.
reset_node
if ! kubeadm init --config "$CONFIG" >"$LOG" 2>&1; then
  echo "kubeadm init failed; the end of $LOG:" >&2
  redacted_tail "$LOG"
  exit 1
fi
cat "$ADMIN_CONF"`;
}

/** Tears the cluster down on the master (deletion); a host that is already gone is not an error. */
export function resetNodeScript(): string {
  return `${HEADER}
${NODE_RESET}
reset_node`;
}

/** Mints a short-lived bootstrap token on the master and prints the join command that carries it. */
export function mintJoinTokenScript(): string {
  return `${HEADER}
${shellAssignments({ KUBECONFIG: ADMIN_CONF, TTL: JOIN_TOKEN_TTL })}
export KUBECONFIG
kubeadm token create --ttl "$TTL" --description "testbed worker join" --print-join-command`;
}

/**
 * `kubeadm join` on the worker. Standard input carries the master's join command; its token and CA
 * hash go into a root-only copy of the uploaded configuration, removed when the script ends.
 */
export function kubeadmJoinScript(configPath: string, paths: NodePaths = NODE_PATHS): string {
  return `${HEADER}
${shellAssignments({ CONFIG: configPath, LOG: `${paths.logDir}/kubeadm-join.log`, SCRATCH: paths.scratchDir })}
${NODE_RESET}
${REDACTED_TAIL}
join_command="$(cat)"
token="$(printf '%s\\n' "$join_command" | sed -nE 's/.*--token ([a-z0-9]{6}\\.[a-z0-9]{16}).*/\\1/p')"
ca_hash="$(printf '%s\\n' "$join_command" | sed -nE 's/.*--discovery-token-ca-cert-hash (sha256:[a-f0-9]{64}).*/\\1/p')"
if [ -z "$token" ] || [ -z "$ca_hash" ]; then
  echo "standard input holds no join command with --token and --discovery-token-ca-cert-hash" >&2
  exit 1
fi
install -d -m 0700 "$(dirname "$LOG")"
reset_node
umask 077
private="$(mktemp "$SCRATCH/kubeadm-join.XXXXXX")"
trap 'rm -f "$private"' EXIT
# Substituted in the shell, not by sed: the credentials never appear in a process's arguments.
config="$(<"$CONFIG")"
config="\${config//${JOIN_TOKEN_PLACEHOLDER}/$token}"
config="\${config//${CA_CERT_HASH_PLACEHOLDER}/$ca_hash}"
printf '%s\\n' "$config" >"$private"
if ! kubeadm join --config "$private" >"$LOG" 2>&1; then
  echo "kubeadm join failed; the end of $LOG:" >&2
  redacted_tail "$LOG"
  exit 1
fi
echo "joined"`;
}

/** Installs or upgrades the Cilium chart with the uploaded values and waits for its pods. */
export function ciliumInstallScript(args: { version: string; valuesPath: string; chartRepo: string }): string {
  return `${HEADER}
${shellAssignments({ KUBECONFIG: ADMIN_CONF, CILIUM_VERSION: args.version, VALUES: args.valuesPath, CHART_REPO: args.chartRepo })}
export KUBECONFIG
helm upgrade --install cilium cilium --repo "$CHART_REPO" --version "$CILIUM_VERSION" \\
  --namespace kube-system --values "$VALUES" --wait --timeout 15m
helm get metadata cilium --namespace kube-system`;
}

export function ciliumUninstallScript(): string {
  return `${HEADER}
${shellAssignments({ KUBECONFIG: ADMIN_CONF })}
export KUBECONFIG
helm uninstall cilium --namespace kube-system --wait --timeout 10m`;
}

/** A node the cluster must have, by the addresses its kubelet was given (--node-ip). */
export interface ExpectedNode {
  readonly role: string;
  readonly addresses: readonly string[];
}

/** RFC 5952 text, as the API server reports node addresses. */
function canonicalAddress(address: string): string {
  return ipaddr.parse(address).toString();
}

const NODE_TABLE_JSONPATH =
  '{range .items[*]}{.metadata.name}{"\\t"}{.status.nodeInfo.kubeletVersion}{"\\t"}{.status.nodeInfo.containerRuntimeVersion}{"\\t"}{range .status.addresses[?(@.type=="InternalIP")]}{.address}{" "}{end}{"\\n"}{end}';

/**
 * Waits until every node is Ready, checks that each expected node carries exactly its data-center
 * addresses and that the Services are served by the stack's dataplane; prints the node table
 * (name, kubelet version, container runtime, InternalIPs) as tab-separated lines.
 */
export function nodesReadyScript(args: { dataplane: Dataplane; nodes: readonly ExpectedNode[] }): string {
  const expected = args.nodes.map((n) => n.addresses.map(canonicalAddress).join(",")).join(" ");
  const dataplaneCheck =
    args.dataplane === "ebpf"
      ? `if kubectl -n kube-system get daemonset kube-proxy >/dev/null 2>&1; then
  echo "kube-proxy is deployed, but dataplane ebpf replaces it" >&2
  exit 1
fi
want_kpr=True`
      : `kubectl -n kube-system rollout status daemonset/kube-proxy --timeout=10m >/dev/null
mode="$(kubectl -n kube-system get configmap kube-proxy -o jsonpath='{.data.config\\.conf}' | awk '$1 == "mode:" { print $2 }')"
if [ "$mode" != iptables ]; then
  echo "kube-proxy runs in mode '$mode', dataplane iptables needs iptables" >&2
  exit 1
fi
want_kpr=False`;
  return `${HEADER}
${shellAssignments({ KUBECONFIG: ADMIN_CONF, EXPECTED_NODE_IPS: expected, NODE_COUNT: args.nodes.length })}
export KUBECONFIG
kubectl wait --for=condition=Ready nodes --all --timeout=15m >/dev/null
kubectl -n kube-system rollout status daemonset/cilium --timeout=10m >/dev/null
${dataplaneCheck}
for pod in $(kubectl -n kube-system get pods -l k8s-app=cilium -o name); do
  status="$(kubectl -n kube-system exec "$pod" -c cilium-agent -- cilium-dbg status)"
  if ! printf '%s\\n' "$status" | grep -E "^KubeProxyReplacement:[[:space:]]+$want_kpr" >/dev/null; then
    echo "$pod does not report KubeProxyReplacement $want_kpr" >&2
    exit 1
  fi
done
table="$(kubectl get nodes -o jsonpath='${NODE_TABLE_JSONPATH}')"
count="$(printf '%s\\n' "$table" | grep -c .)"
if [ "$count" -ne "$NODE_COUNT" ]; then
  echo "the cluster has $count nodes, expected $NODE_COUNT:" >&2
  printf '%s\\n' "$table" >&2
  exit 1
fi
for want in $EXPECTED_NODE_IPS; do
  if ! printf '%s\\n' "$table" | awk -F '\\t' -v want="$want" '{ ips = $4; sub(/ +$/, "", ips); gsub(/ /, ",", ips) } ips == want { found = 1 } END { exit !found }'; then
    echo "no node has exactly the InternalIPs $want (kubelet --node-ip):" >&2
    printf '%s\\n' "$table" >&2
    exit 1
  fi
done
printf '%s\\n' "$table"`;
}

export interface ClusterNode {
  readonly role: string;
  readonly name: string;
  readonly kubeletVersion: string;
  readonly containerRuntime: string;
  readonly addresses: FamilyAddresses;
}

/** Parses the node table of nodesReadyScript and names each node's role by its addresses. */
export function parseNodeTable(stdout: string, expected: readonly ExpectedNode[]): ClusterNode[] {
  const rows = stdout
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((line) => {
      const [name, kubeletVersion, containerRuntime, ips] = line.split("\t");
      if (!name || !kubeletVersion || !containerRuntime || ips === undefined) {
        throw new Error(`node table line "${line}": expected name, kubelet version, runtime and addresses separated by tabs`);
      }
      const list = ips.trim().split(/\s+/).filter(Boolean);
      return { name, kubeletVersion, containerRuntime, list };
    });
  return expected.map((want) => {
    const key = want.addresses.map(canonicalAddress).join(",");
    const row = rows.find((r) => r.list.join(",") === key);
    if (!row) throw new Error(`no node in the table has the ${want.role}'s addresses ${key}`);
    const addresses: Partial<Record<Family, string>> = {};
    for (const a of row.list) addresses[ipaddr.parse(a).kind() === "ipv4" ? "ipv4" : "ipv6"] = a;
    return { role: want.role, name: row.name, kubeletVersion: row.kubeletVersion, containerRuntime: row.containerRuntime, addresses };
  });
}

/** Parses the node preparation marker (`name=version` lines). */
export function parseNodePrepMarker(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return out;
}
