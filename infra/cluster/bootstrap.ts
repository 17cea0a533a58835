// The scripts of the cluster's remote commands, and the parsers of what they print.
// Order: wait for the node (SSH, cloud-init, node preparation) -> kubeadm init on the master ->
// a join token minted on the master -> kubeadm join on the worker -> Cilium (helm on the master) ->
// every node Ready with the dataplane the stack asks for.
import ipaddr from "ipaddr.js";
import type { Family } from "../../scenario/cidr.js";
import type { Dataplane, PodRouting } from "../../scenario/schema.js";
import { CA_CERT_HASH_PLACEHOLDER, JOIN_TOKEN_PLACEHOLDER, type FamilyAddresses } from "./kubeadm.js";
import { clusterDataplane } from "./dataplanes/index.js";
import { NODE_PREP_MARKER } from "./node-prep.js";
import { shellAssignments, type ScriptBound } from "./shell.js";

/** Where the scripts read and write on a node. */
export interface NodePaths {
  /** kubeadm's admin kubeconfig. */
  readonly adminConf: string;
  /** kubeadm's own output holds the join command with a token: it goes to a root-only log here, never to Pulumi. */
  readonly logDir: string;
  /** Root-only directory for the join configuration with its credentials filled in, and the join key. */
  readonly scratchDir: string;
  /** kubeadm's directory: static pod manifests, kubelet.conf, the cluster CA. */
  readonly kubernetesDir: string;
  /** The master's SSH host key, which the worker pins when it asks for a join token. */
  readonly sshHostKey: string;
  /** The kubeadm binary the join key may run. */
  readonly kubeadm: string;
}

export const NODE_PATHS: NodePaths = {
  adminConf: "/etc/kubernetes/admin.conf",
  logDir: "/var/log/testbed",
  scratchDir: "/root",
  kubernetesDir: "/etc/kubernetes",
  sshHostKey: "/etc/ssh/ssh_host_ed25519_key.pub",
  kubeadm: "/usr/bin/kubeadm",
};
const ADMIN_CONF = NODE_PATHS.adminConf;
/** How long a minted join token lives; the join that asked for it uses it at once. */
export const JOIN_TOKEN_TTL = "15m";

const HEADER = "set -euo pipefail";

/** Seconds kubeadm init or join may take (pulling images, waiting for the control plane). */
export const KUBEADM_TIMEOUT_S = 900;
/** Seconds helm may take to install or upgrade Cilium and wait for its pods (its own --timeout is 15m). */
export const HELM_INSTALL_TIMEOUT_S = 1080;

/**
 * Each cluster step's own time limit (asRootCommand): its inner waits fit inside, so the message of
 * the wait that ran out comes first.
 */
export const BOUNDS = {
  waitForNode: { limitS: 120, waitingFor: "the node preparation's marker" },
  quick: { limitS: 120, waitingFor: "a key or a certificate to be read on the host" },
  kubeadmInit: { limitS: KUBEADM_TIMEOUT_S + 180, waitingFor: "kubeadm init and the control plane" },
  kubeadmJoin: { limitS: KUBEADM_TIMEOUT_S + 300, waitingFor: "the master's join token and kubeadm join" },
  cilium: { limitS: HELM_INSTALL_TIMEOUT_S + 120, waitingFor: "helm to install Cilium and its pods to run" },
  ciliumUninstall: { limitS: 720, waitingFor: "helm to uninstall Cilium" },
  reset: { limitS: 300, waitingFor: "kubeadm reset and the node's cleanup" },
  nodesReady: { limitS: 1500, waitingFor: "every node Ready with the stack's dataplane" },
} as const satisfies Record<string, ScriptBound>;

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
    filters="$(tc filter show dev "$dev" ingress 2>/dev/null || true)"
    if grep -q cil_ <<<"$filters"; then tc qdisc delete dev "$dev" clsact 2>/dev/null || true; fi
  done
  rm -rf /sys/fs/bpf/tc/globals/cilium_* /sys/fs/bpf/cilium
}`;

/**
 * Checks that node preparation finished for the scenario's Kubernetes version (after the host's own
 * readiness check, which waited for cloud-init); prints the marker. `boot` names what would have
 * restarted the node (HostAccess.boot), so that a reboot runs the check again.
 */
export function waitForNodeScript(kubernetesVersion: string, opts: { readonly boot?: string; readonly marker?: string } = {}): string {
  const marker = opts.marker ?? NODE_PREP_MARKER;
  return `${HEADER}
${opts.boot ? `# boot: ${opts.boot}\n` : ""}${shellAssignments({ MARKER: marker, K8S_VERSION: kubernetesVersion })}
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

/**
 * `kubeadm init` from the uploaded configuration; prints admin.conf and nothing else. Run as the
 * command's create and as its update: on a master that already runs a cluster, it re-applies the
 * configuration in place instead (kubeadmReconfigure), so an update never resets the cluster.
 */
export function kubeadmInitScript(args: { configPath: string; configHash: string; kubeProxy: boolean }, paths: NodePaths = NODE_PATHS): string {
  return `${HEADER}
${shellAssignments({ CONFIG: args.configPath, CONFIG_SHA256: args.configHash, LOG: `${paths.logDir}/kubeadm-init.log`, ADMIN_CONF: paths.adminConf, APISERVER_MANIFEST: `${paths.kubernetesDir}/manifests/kube-apiserver.yaml` })}
${NODE_RESET}
${REDACTED_TAIL}
install -d -m 0700 "$(dirname "$LOG")"
if [ -s "$ADMIN_CONF" ] && [ -f "$APISERVER_MANIFEST" ]; then
${indentScript(kubeadmReconfigure(args.kubeProxy))}
else
  # Nothing of an earlier, failed attempt survives: Pulumi recorded no cluster for it.
  reset_node
  if ! timeout ${KUBEADM_TIMEOUT_S} kubeadm init --config "$CONFIG" >"$LOG" 2>&1; then
    echo "kubeadm init failed; the end of $LOG:" >&2
    redacted_tail "$LOG"
    exit 1
  fi
fi
cat "$ADMIN_CONF"`;
}

/**
 * A changed init configuration (the file at $CONFIG, checked against $CONFIG_SHA256) re-applied to
 * the running control plane: the static pods' manifests (kubelet restarts the ones that changed),
 * the kubeadm-config ConfigMap, and kube-proxy's ConfigMap and DaemonSet where the dataplane has
 * kube-proxy. Certificates, etcd and the nodes stay as they are.
 */
function kubeadmReconfigure(kubeProxy: boolean): string {
  const phases = [
    'kubeadm init phase control-plane all --config "$CONFIG"',
    'kubeadm init phase upload-config kubeadm --config "$CONFIG" --kubeconfig "$ADMIN_CONF"',
  ];
  if (kubeProxy) {
    phases.push(
      'kubeadm init phase addon kube-proxy --config "$CONFIG" --kubeconfig "$ADMIN_CONF"',
      "# kube-proxy reads its ConfigMap at start only.",
      'kubectl --kubeconfig "$ADMIN_CONF" -n kube-system rollout restart daemonset/kube-proxy',
    );
  }
  return [
    'echo "$CONFIG_SHA256  $CONFIG" | sha256sum --check --status || { echo "$CONFIG is not the configuration this step uploaded" >&2; exit 1; }',
    "{",
    ...phases.map((l) => `  ${l}`),
    '} >>"$LOG" 2>&1',
  ].join("\n");
}

function indentScript(text: string): string {
  return text
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");
}

/** Tears the cluster down on the master (deletion); a host that is already gone is not an error. */
export function resetNodeScript(): string {
  return `${HEADER}
${NODE_RESET}
reset_node`;
}

/** The comment of worker 1's join key, which names its line in the master's authorized_keys. */
export const JOIN_KEY_COMMENT = "testbed-join";

/**
 * The comment of a worker's join key: worker 1's JOIN_KEY_COMMENT, the others' with their name, so
 * that each worker's authorization replaces its own earlier line and no other worker's.
 */
export function joinKeyComment(host: string): string {
  return host === "worker" ? JOIN_KEY_COMMENT : `${JOIN_KEY_COMMENT}-${host}`;
}

/**
 * The worker's key for minting its own join tokens (created once, kept root-only on the worker);
 * prints the public half for the master's authorized_keys.
 */
export function joinKeyScript(paths: NodePaths = NODE_PATHS, comment: string = JOIN_KEY_COMMENT): string {
  return `${HEADER}
${shellAssignments({ KEY: joinKeyPath(paths) })}
install -d -m 0700 "$(dirname "$KEY")"
if [ ! -f "$KEY" ]; then ssh-keygen -q -t ed25519 -N '' -C ${comment} -f "$KEY"; fi
cat "$KEY.pub"`;
}

function joinKeyPath(paths: NodePaths): string {
  return `${paths.scratchDir}/.ssh/testbed-join`;
}

/** The one thing the worker's join key may do on the master: mint a bootstrap token that lives JOIN_TOKEN_TTL. */
export function joinForcedCommand(paths: NodePaths = NODE_PATHS): string {
  return `sudo -n ${paths.kubeadm} token create --kubeconfig ${paths.adminConf} --ttl ${JOIN_TOKEN_TTL} --description testbed-worker-join --print-join-command`;
}

/**
 * On the master: lets the worker's join key run joinForcedCommand and nothing else (`restrict`
 * turns off forwarding, a terminal and the rest), replacing an earlier key of the same purpose.
 * Prints what the worker needs to trust the answer: the master's SSH host key and the cluster CA's
 * hash (the join checks the CA it discovers against it).
 */
export function joinAuthorizeScript(args: { user: string; publicKey: string; comment?: string }, paths: NodePaths = NODE_PATHS): string {
  const comment = args.comment ?? JOIN_KEY_COMMENT;
  if (!/^[a-z0-9-]+$/.test(comment)) throw new Error(`join key comment "${comment}": accepted: lower-case letters, digits and '-'`);
  return `${HEADER}
${shellAssignments({ LOGIN: args.user, PUBLIC_KEY: args.publicKey.trim(), FORCED: joinForcedCommand(paths), CA: `${paths.kubernetesDir}/pki/ca.crt`, HOST_KEY: paths.sshHostKey })}
case "$PUBLIC_KEY" in
  ssh-ed25519\\ *) ;;
  *) echo "the worker's join key is not an ed25519 public key: $PUBLIC_KEY" >&2; exit 1 ;;
esac
home="$(getent passwd "$LOGIN" | cut -d: -f6)"
keys="$home/.ssh/authorized_keys"
install -d -m 0700 -o "$LOGIN" "$home/.ssh"
touch "$keys"
entry="restrict,command=\\"$FORCED\\" $PUBLIC_KEY"
{ grep -v ' ${comment}$' "$keys" || true; printf '%s\\n' "$entry"; } >"$keys.new"
chown "$LOGIN": "$keys.new"
chmod 0600 "$keys.new"
mv "$keys.new" "$keys"
echo "host-key $(cut -d' ' -f1,2 "$HOST_KEY")"
echo "ca-cert-hash sha256:$(openssl x509 -pubkey -noout -in "$CA" | openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1)"`;
}

/** The master's host key and CA hash, as joinAuthorizeScript prints them. */
export interface JoinTrust {
  readonly hostKey: string;
  readonly caCertHash: string;
}

export function parseJoinTrust(stdout: string): JoinTrust {
  const hostKey = /^host-key (ssh-ed25519 [A-Za-z0-9+/=]+)$/m.exec(stdout)?.[1];
  const caCertHash = /^ca-cert-hash (sha256:[a-f0-9]{64})$/m.exec(stdout)?.[1];
  if (!hostKey || !caCertHash) throw new Error(`the master printed no host key and CA hash for the join: ${stdout.trim().slice(0, 200)}`);
  return { hostKey, caCertHash };
}

/**
 * `kubeadm join` on the worker, with a bootstrap token minted for this very attempt: the worker asks
 * the master over SSH with its join key (joinForcedCommand), so a retried join never holds an
 * expired token. The token and the CA hash go into a root-only copy of the uploaded configuration,
 * removed when the script ends. A worker already joined to this cluster (its CA has the expected
 * hash) is left as it is, so running it again as an update changes nothing.
 */
export function kubeadmJoinScript(args: { configPath: string; user: string; master: string; trust: JoinTrust }, paths: NodePaths = NODE_PATHS): string {
  return `${HEADER}
${shellAssignments({
  CONFIG: args.configPath,
  LOG: `${paths.logDir}/kubeadm-join.log`,
  SCRATCH: paths.scratchDir,
  KEY: joinKeyPath(paths),
  LOGIN: args.user,
  MASTER: args.master,
  MASTER_HOST_KEY: args.trust.hostKey,
  CA_HASH: args.trust.caCertHash,
  KUBELET_CONF: `${paths.kubernetesDir}/kubelet.conf`,
  CA: `${paths.kubernetesDir}/pki/ca.crt`,
})}
${NODE_RESET}
${REDACTED_TAIL}
local_ca_hash() {
  openssl x509 -pubkey -noout -in "$CA" | openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1
}
if [ -s "$KUBELET_CONF" ] && [ -f "$CA" ] && [ "sha256:$(local_ca_hash)" = "$CA_HASH" ]; then
  echo "joined"
  exit 0
fi
install -d -m 0700 "$(dirname "$LOG")"
umask 077
known_hosts="$(mktemp "$SCRATCH/known_hosts.XXXXXX")"
private="$(mktemp "$SCRATCH/kubeadm-join.XXXXXX")"
trap 'rm -f "$private" "$known_hosts"' EXIT
printf '%s %s\\n' "$MASTER" "$MASTER_HOST_KEY" >"$known_hosts"
join_command="$(timeout 120 ssh -T -i "$KEY" -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$known_hosts" -o ConnectTimeout=20 "$LOGIN@$MASTER")"
token="$(printf '%s\\n' "$join_command" | sed -nE 's/.*--token ([a-z0-9]{6}\\.[a-z0-9]{16}).*/\\1/p')"
ca_hash="$(printf '%s\\n' "$join_command" | sed -nE 's/.*--discovery-token-ca-cert-hash (sha256:[a-f0-9]{64}).*/\\1/p')"
if [ -z "$token" ] || [ "$ca_hash" != "$CA_HASH" ]; then
  echo "the master answered no join command for the cluster whose CA hash is $CA_HASH" >&2
  exit 1
fi
reset_node
# Substituted in the shell, not by sed: the credentials never appear in a process's arguments.
config="$(<"$CONFIG")"
config="\${config//${JOIN_TOKEN_PLACEHOLDER}/$token}"
config="\${config//${CA_CERT_HASH_PLACEHOLDER}/$ca_hash}"
printf '%s\\n' "$config" >"$private"
if ! timeout ${KUBEADM_TIMEOUT_S} kubeadm join --config "$private" >"$LOG" 2>&1; then
  echo "kubeadm join failed; the end of $LOG:" >&2
  redacted_tail "$LOG"
  exit 1
fi
echo "joined"`;
}


/**
 * Installs or upgrades the Cilium chart with the uploaded values and waits for its pods. The same
 * script is the command's create and its update: `helm upgrade --install` changes a running Cilium
 * in place. The values' hash and the cluster's identity are part of it, so a change of either is
 * an update of the command, never a replacement (which would run `helm uninstall` first).
 */
export function ciliumInstallScript(args: { version: string; valuesPath: string; valuesHash: string; chartRepo: string; cluster: string }): string {
  return `${HEADER}
# cluster: ${args.cluster}
${shellAssignments({
  KUBECONFIG: ADMIN_CONF,
  CILIUM_VERSION: args.version,
  VALUES: args.valuesPath,
  VALUES_SHA256: args.valuesHash,
  CHART_REPO: args.chartRepo,
})}
export KUBECONFIG
echo "$VALUES_SHA256  $VALUES" | sha256sum --check --status || { echo "$VALUES is not the values file this step uploaded" >&2; exit 1; }
timeout ${HELM_INSTALL_TIMEOUT_S} helm upgrade --install cilium cilium --repo "$CHART_REPO" --version "$CILIUM_VERSION" \\
  --namespace kube-system --values "$VALUES" --wait --timeout 15m
helm get metadata cilium --namespace kube-system`;
}

export function ciliumUninstallScript(): string {
  return `${HEADER}
${shellAssignments({ KUBECONFIG: ADMIN_CONF })}
export KUBECONFIG
timeout 660 helm uninstall cilium --namespace kube-system --wait --timeout 10m`;
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
export function nodesReadyScript(args: { dataplane: Dataplane; podRouting?: PodRouting; nodes: readonly ExpectedNode[]; checks?: Readonly<Record<string, string>> }): string {
  const expected = args.nodes.map((n) => n.addresses.map(canonicalAddress).join(",")).join(" ");
  const dataplane = clusterDataplane(args.dataplane);
  // What the check runs against (cluster, join, Cilium version and values), named in the script so
  // that a change of any is a change of the command, which runs the check again as an update.
  const against = Object.entries(args.checks ?? {}).map(([k, v]) => `# ${k}: ${v}\n`).join("");
  return `${HEADER}
${against}${shellAssignments({
  KUBECONFIG: ADMIN_CONF,
  EXPECTED_NODE_IPS: expected,
  NODE_COUNT: args.nodes.length,
  WANT_KPR: dataplane.ciliumReplacesKubeProxy ? "True" : "False",
  // cilium-dbg status: "Routing:   Network: Tunnel [vxlan]   Host: Legacy", or "Network: Native".
  WANT_ROUTING: (args.podRouting ?? "tunnel") === "tunnel" ? "Tunnel" : "Native",
})}
export KUBECONFIG
kubectl wait --for=condition=Ready nodes --all --timeout=10m >/dev/null
kubectl -n kube-system rollout status daemonset/cilium --timeout=5m >/dev/null
# The ${dataplane.name} dataplane, and no other, serves the Services.
${dataplane.activeCheck}
for pod in $(kubectl -n kube-system get pods -l k8s-app=cilium -o name); do
  status="$(timeout 120 kubectl -n kube-system exec "$pod" -c cilium-agent -- cilium-dbg status)"
  if ! grep -qE "^KubeProxyReplacement:[[:space:]]+$WANT_KPR" <<<"$status"; then
    echo "$pod does not report KubeProxyReplacement $WANT_KPR" >&2
    exit 1
  fi
  if ! grep -qE "^Routing:[[:space:]]+Network: $WANT_ROUTING" <<<"$status"; then
    echo "$pod does not route pods between the nodes as the stack asks (Network: $WANT_ROUTING): $(grep -E '^Routing:' <<<"$status" || echo 'no Routing line')" >&2
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
