// How the dataplanes' snippets reach the worker: its dataplane pods through `kubectl exec` from the
// master, its connection tracking and its control plane's metrics on the node itself. Apart from
// index.ts, which imports every module.
import type { ControlPlane } from "./index.js";

/** Seconds one `kubectl exec` into a dataplane's pod may take before the read counts as failed. */
export const DATAPLANE_EXEC_TIMEOUT_S = 120;

/** The pod of a DaemonSet's label on the worker, for `kubectl exec` (bash, sets $pod). */
export function podOnWorker(label: string): string {
  return `pod="$(kubectl -n kube-system get pods -l ${label} --field-selector spec.nodeName="$WORKER_NODE" -o name | head -n 1)"
if [ -z "$pod" ]; then
  echo "no ${label} pod on node $WORKER_NODE" >&2
  exit 1
fi`;
}

/** kube-proxy's node-side conntrack flush, both families (the tool's default family is IPv4 only). */
export const CONNTRACK_FLUSH = `for family in ipv4 ipv6; do
  if ! out="$(timeout 60 conntrack -F -f "$family" 2>&1)"; then
    echo "conntrack -F -f $family failed on $(hostname): $out" >&2
    exit 1
  fi
done`;

/**
 * kube-proxy (both modes): its pods, and the histograms of its metrics endpoint (kubeadm leaves
 * metricsBindAddress at its default, 127.0.0.1:10249): the duration of each sync of the rules, and
 * of each endpoint change from its trigger time until the rules hold it.
 */
export const KUBE_PROXY_CONTROL_PLANE: ControlPlane = {
  name: "kube-proxy",
  podLabel: "k8s-app=kube-proxy",
  metricsUrl: "http://127.0.0.1:10249/metrics",
  metrics: { sync: "kubeproxy_sync_proxy_rules_duration_seconds", programming: "kubeproxy_network_programming_duration_seconds" },
};
