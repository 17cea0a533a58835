// kube-proxy in iptables mode serves the Services; Cilium is the CNI only.
import type { ClusterDataplane } from "./index.js";
import { CONNTRACK_FLUSH, DATAPLANE_EXEC_TIMEOUT_S, KUBE_PROXY_CONTROL_PLANE, podOnWorker } from "./worker.js";

export const iptables: ClusterDataplane = {
  name: "iptables",
  kubeProxyMode: "iptables",
  ciliumReplacesKubeProxy: false,
  // Cilium only balances ClusterIP traffic from pods (kube-proxy does NodePorts): 1 frontend + 1 backend.
  lbEntriesPerService: 2,
  serviceIdsPerNodePort: 1,
  activeCheck: `kubectl -n kube-system rollout status daemonset/kube-proxy --timeout=5m >/dev/null
mode="$(kubectl -n kube-system get configmap kube-proxy -o jsonpath='{.data.config\\.conf}' | awk '$1 == "mode:" { print $2 }')"
if [ "$mode" != iptables ]; then
  echo "kube-proxy runs in mode '$mode', dataplane iptables needs iptables" >&2
  exit 1
fi`,
  // A Service with a ready endpoint has a jump from KUBE-SERVICES to its KUBE-SVC chain; one without
  // has a REJECT in the filter table instead (kube-proxy's proxier.go), so the jumps are what counts.
  // The rule's comment names the Service: "NAMESPACE/NAME[:PORT] cluster IP".
  programmedClusterIps: `${podOnWorker("k8s-app=kube-proxy")}
for family in $SERVICE_FAMILIES; do
  case "$family" in
    ipv4) save=iptables-save ;;
    ipv6) save=ip6tables-save ;;
    *) echo "service family '$family': accepted: ipv4, ipv6" >&2; exit 1 ;;
  esac
  timeout ${DATAPLANE_EXEC_TIMEOUT_S} kubectl -n kube-system exec "$pod" -- "$save" -t nat || { echo "$save in $pod failed" >&2; exit 1; }
done | awk '$1 == "-A" && $2 == "KUBE-SERVICES" && / -j KUBE-SVC-/ {
  ip = ""
  for (i = 3; i < NF; i++) if ($i == "-d") { ip = $(i + 1); sub(/\\/[0-9]+$/, "", ip) }
  if (ip == "" || !match($0, /--comment "[^"]*"/)) next
  split(substr($0, RSTART + 11, RLENGTH - 12), words, " ")
  service = words[1]
  sub(/:.*$/, "", service)
  print ip, service
}'`,
  forgetConnections: CONNTRACK_FLUSH,
  // kube-proxy's metrics on metricsBindAddress, 127.0.0.1:10249 unless its configuration says otherwise.
  controlPlane: KUBE_PROXY_CONTROL_PLANE,
};
