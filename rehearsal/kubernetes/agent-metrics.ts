// The metrics the rehearsal's dataplane agent serves in place of kube-proxy's or the Cilium agent's
// (infra/cluster/dataplanes: ControlPlane.metrics), observed from what the worker's lab dataplane did:
// the durations its writes took and the times from each Service change to its write. Histograms with
// the real ones' bucket bounds where the project knows them (kube-proxy's pkg/proxy/metrics), the
// Prometheus client's default bounds otherwise, printed in the text exposition format. A restarted
// agent starts a new set, as a new process does.

/** kube-proxy's bounds: ExponentialBuckets(0.001, 2, 15) for syncs; 0.25 s to 5 min for network programming. */
const KUBE_PROXY_BUCKETS: Readonly<Record<string, readonly number[]>> = {
  kubeproxy_sync_proxy_rules_duration_seconds: Array.from({ length: 15 }, (_, i) => 0.001 * 2 ** i),
  kubeproxy_network_programming_duration_seconds: [
    0.25,
    0.5,
    ...Array.from({ length: 59 }, (_, i) => 1 + i),
    ...Array.from({ length: 12 }, (_, i) => 60 + 5 * i),
    ...Array.from({ length: 7 }, (_, i) => 120 + 30 * i),
  ],
};
/** The Prometheus Go client's DefBuckets. */
const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface Histogram {
  readonly bounds: readonly number[];
  readonly counts: number[];
  count: number;
  sum: number;
}

export class AgentMetrics {
  private readonly histograms = new Map<string, Histogram>();

  /** Every named histogram exists from the start, empty, as a process registers its metrics. */
  constructor(names: readonly string[]) {
    for (const name of names) {
      const bounds = KUBE_PROXY_BUCKETS[name] ?? DEFAULT_BUCKETS;
      this.histograms.set(name, { bounds, counts: bounds.map(() => 0), count: 0, sum: 0 });
    }
  }

  observe(name: string, seconds: number): void {
    const h = this.histograms.get(name);
    if (!h) throw new Error(`metrics: no histogram ${name}; registered: ${[...this.histograms.keys()].join(", ")}`);
    h.bounds.forEach((le, i) => {
      if (seconds <= le) h.counts[i]!++;
    });
    h.count++;
    h.sum += seconds;
  }

  /** The text exposition of every histogram. */
  text(): string {
    const lines: string[] = [];
    for (const [name, h] of this.histograms) {
      lines.push(`# TYPE ${name} histogram`);
      h.bounds.forEach((le, i) => lines.push(`${name}_bucket{le="${le}"} ${h.counts[i]}`));
      lines.push(`${name}_bucket{le="+Inf"} ${h.count}`, `${name}_sum ${h.sum}`, `${name}_count ${h.count}`);
    }
    return `${lines.join("\n")}\n`;
  }
}
