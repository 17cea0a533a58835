// Cilium's kube-proxy replacement serves the Services at the tc hook; no kube-proxy at all.
import type { ClusterDataplane } from "./index.js";
import { podOnWorker } from "./index.js";

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
  // The agent's own service table (what it wrote into its BPF maps): ClusterIP frontends with a backend.
  programmedClusterIps: `${podOnWorker("k8s-app=cilium")}
kubectl -n kube-system exec "$pod" -c cilium-agent -- cilium-dbg service list -o json | python3 -c '
import json, sys
for service in json.load(sys.stdin):
    spec = service.get("spec") or {}
    if (spec.get("flags") or {}).get("type") == "ClusterIP" and spec.get("backend-addresses"):
        print(spec["frontend-address"]["ip"])
'`,
};
