// Cilium's kube-proxy replacement serves the Services at the tc hook; no kube-proxy at all.
import type { ClusterDataplane } from "./index.js";
import { DATAPLANE_EXEC_TIMEOUT_S, podOnWorker } from "./worker.js";

/** The agent's Prometheus port (the chart's default), set in the Cilium values and read by the programming profile. */
export const CILIUM_METRICS_PORT = 9962;

export const ebpf: ClusterDataplane = {
  name: "ebpf",
  kubeProxyMode: undefined,
  ciliumReplacesKubeProxy: true,
  // NodePort with externalTrafficPolicy Local: ClusterIP, 0.0.0.0:NodePort and nodeIP:NodePort, the
  // last two twice (external and internal scope), each frontend 1 slot plus 1 per backend.
  lbEntriesPerService: 10,
  serviceIdsPerNodePort: 5,
  activeCheck: `if kubectl -n kube-system get daemonset kube-proxy >/dev/null 2>&1; then
  echo "kube-proxy is deployed, but dataplane ebpf replaces it" >&2
  exit 1
fi`,
  // The agent's own service table (what it wrote into its BPF maps): ClusterIP frontends with a
  // backend, each with the Service's namespace and name (the API's ServiceSpec flags).
  programmedClusterIps: `${podOnWorker("k8s-app=cilium")}
list="$(mktemp)"
trap 'rm -f "$list"' EXIT
if ! timeout ${DATAPLANE_EXEC_TIMEOUT_S} kubectl -n kube-system exec "$pod" -c cilium-agent -- cilium-dbg service list -o json >"$list"; then
  echo "cilium-dbg service list in $pod failed" >&2
  exit 1
fi
python3 -c '
import json, sys
for service in json.load(open(sys.argv[1])):
    spec = service.get("spec") or {}
    flags = spec.get("flags") or {}
    if flags.get("type") == "ClusterIP" and spec.get("backend-addresses"):
        print(spec["frontend-address"]["ip"], "%s/%s" % (flags.get("namespace", ""), flags.get("name", "")))
' "$list"`,
  // Cilium keeps connections in its own BPF CT maps, not in nf_conntrack: the agent flushes them.
  // Run on the node, the agent's container is reached through the CRI (kubeadm's nodes have crictl).
  forgetConnections: `agent="$(timeout 60 crictl --runtime-endpoint unix:///run/containerd/containerd.sock ps --name '^cilium-agent$' --state running -q | head -n 1)"
if [ -z "$agent" ]; then
  echo "no running cilium-agent container on $(hostname)" >&2
  exit 1
fi
if ! out="$(timeout 120 crictl --runtime-endpoint unix:///run/containerd/containerd.sock exec "$agent" cilium-dbg bpf ct flush global 2>&1)"; then
  echo "cilium-dbg bpf ct flush global failed on $(hostname): $out" >&2
  exit 1
fi`,
  // The agent's metrics (cilium-values.ts turns them on: prometheus.enabled, its port 9962 on the node):
  // each Service or endpoint event from its change to the maps written (on by default since 1.16), and
  // each bpf(2) call (asked for in prometheus.metrics).
  controlPlane: {
    name: "the Cilium agent",
    podLabel: "k8s-app=cilium",
    metricsUrl: `http://127.0.0.1:${CILIUM_METRICS_PORT}/metrics`,
    metrics: { programming: "cilium_service_implementation_delay", calls: "cilium_bpf_syscall_duration_seconds" },
  },
};
