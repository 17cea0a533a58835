// How the dataplanes' snippets reach the worker: its dataplane pods through `kubectl exec` from the
// master, its connection tracking on the node itself. Apart from index.ts, which imports every module.

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
