// kube-proxy in nftables mode serves the Services (verdict maps in its own `kube-proxy` tables);
// Cilium is the CNI only, as in the iptables stack.
import type { ClusterDataplane } from "./index.js";
import { CONNTRACK_FLUSH, DATAPLANE_EXEC_TIMEOUT_S, KUBE_PROXY_CONTROL_PLANE, podOnWorker } from "./worker.js";

export const nftables: ClusterDataplane = {
  name: "nftables",
  kubeProxyMode: "nftables",
  ciliumReplacesKubeProxy: false,
  // As with iptables: Cilium only balances ClusterIP traffic from pods.
  lbEntriesPerService: 2,
  serviceIdsPerNodePort: 1,
  // The mode as configured, then as found on every node: kube-proxy's nftables tables exist and it
  // wrote no KUBE-SERVICES chain (which kube-proxy's iptables mode would have).
  activeCheck: `kubectl -n kube-system rollout status daemonset/kube-proxy --timeout=5m >/dev/null
mode="$(kubectl -n kube-system get configmap kube-proxy -o jsonpath='{.data.config\\.conf}' | awk '$1 == "mode:" { print $2 }')"
if [ "$mode" != nftables ]; then
  echo "kube-proxy runs in mode '$mode', dataplane nftables needs nftables" >&2
  exit 1
fi
for proxy in $(kubectl -n kube-system get pods -l k8s-app=kube-proxy -o name); do
  if ! timeout ${DATAPLANE_EXEC_TIMEOUT_S} kubectl -n kube-system exec "$proxy" -- nft list table ip kube-proxy >/dev/null; then
    echo "$proxy: no nftables table 'ip kube-proxy' on its node" >&2
    exit 1
  fi
  # Read whole, then searched: grep -q on the pipe would stop reading at the match, and under pipefail
  # the writer's SIGPIPE would turn a found chain into a pass.
  nat="$(timeout ${DATAPLANE_EXEC_TIMEOUT_S} kubectl -n kube-system exec "$proxy" -- iptables-save -t nat)"
  if grep -q '^:KUBE-SERVICES' <<<"$nat"; then
    echo "$proxy: its node has a KUBE-SERVICES iptables chain: kube-proxy's iptables mode ran there" >&2
    exit 1
  fi
done`,
  // A Service with a ready endpoint is an element of the service-ips verdict map
  // (address . protocol . port : goto service-HASH-NAMESPACE/NAME/PROTOCOL/PORT); one without is in
  // no-endpoint-services instead (proxier.go). The chain's name names the Service.
  programmedClusterIps: `${podOnWorker("k8s-app=kube-proxy")}
for family in $SERVICE_FAMILIES; do
  case "$family" in
    ipv4) table=ip ;;
    ipv6) table=ip6 ;;
    *) echo "service family '$family': accepted: ipv4, ipv6" >&2; exit 1 ;;
  esac
  timeout ${DATAPLANE_EXEC_TIMEOUT_S} kubectl -n kube-system exec "$pod" -- nft list map "$table" kube-proxy service-ips || { echo "nft list map $table kube-proxy service-ips in $pod failed" >&2; exit 1; }
done | grep -oE '[0-9a-f.:]+ \\. (tcp|udp|sctp) \\. [0-9]+ : goto service-[0-9A-Z]+-[^/ ,}]+/[^/ ,}]+' \\
  | awk '{ service = $NF; sub(/^service-[0-9A-Z]+-/, "", service); print $1, service }'`,
  // Chain names carry NAMESPACE/NAME between the hash and the port: service-HASH-ns/name/tcp/http,
  // endpoint-HASH-ns/name/tcp/http__ADDRESS/PORT (proxier.go servicePortChainNameBase).
  leftoverChains: `${podOnWorker("k8s-app=kube-proxy")}
for family in $SERVICE_FAMILIES; do
  case "$family" in
    ipv4) table=ip ;;
    ipv6) table=ip6 ;;
    *) echo "service family '$family': accepted: ipv4, ipv6" >&2; exit 1 ;;
  esac
  # Chains without their rules, of every table of the family: kube-proxy's are picked by their table.
  timeout ${DATAPLANE_EXEC_TIMEOUT_S} kubectl -n kube-system exec "$pod" -- nft list chains "$table" || { echo "nft list chains $table in $pod failed" >&2; exit 1; }
done | awk -v service="-$SERVICE/" '$1 == "table" { ours = ($3 == "kube-proxy") } ours && $1 == "chain" && index($2, service) > 0 { print $2 }'`,
  forgetConnections: CONNTRACK_FLUSH,
  // kube-proxy's metrics on metricsBindAddress, 127.0.0.1:10249 unless its configuration says otherwise.
  controlPlane: KUBE_PROXY_CONTROL_PLANE,
};
