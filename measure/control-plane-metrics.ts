// What a dataplane's control plane says of its own syncs: the histograms of its Prometheus endpoint
// (kube-proxy's kubeproxy_sync_proxy_rules_duration_seconds and
// kubeproxy_network_programming_duration_seconds, the Cilium agent's
// cilium_service_implementation_delay and cilium_bpf_syscall_duration_seconds), read before and after
// a Service change, and what they grew by in between: how many syncs or events it counted, their
// summed seconds, and the cumulative buckets, from which quantiles are estimated as Prometheus'
// histogram_quantile does (ClusterLoader2 reports NetworkProgrammingLatency that way). Pure.
import type { Family } from "../scenario/cidr.js";

/** One histogram, summed over the series kept (or what it grew by over a change). */
export interface MetricHistogram {
  readonly name: string;
  readonly count: number;
  readonly sumS: number;
  /** Cumulative counts at each upper bound, ascending, +Inf last. */
  readonly buckets: readonly (readonly [le: number, count: number])[];
}

/** The label by which newer kube-proxy versions tell their two proxiers apart; a series without it is kept for every family. */
const FAMILY_LABEL = "ip_family";
const FAMILY_VALUES: Readonly<Record<Family, string>> = { ipv4: "IPv4", ipv6: "IPv6" };

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function labelsOf(text: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const m of (text ?? "").matchAll(LABEL)) labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
  return labels;
}

function parseValue(text: string, line: string): number {
  if (text === "+Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  const v = Number(text);
  if (text === "NaN" || Number.isNaN(v)) throw new Error(`metrics: ${JSON.stringify(line)} has no numeric value`);
  return v;
}

/**
 * Pure: the named histograms of a Prometheus text exposition, each summed over its series (every
 * label but `le`), keeping only the family's series where they carry ip_family. A histogram the text
 * does not hold is absent from the result. Throws on a sample line that is not one.
 */
export function parseHistograms(text: string, names: readonly string[], family?: Family): Map<string, MetricHistogram> {
  const acc = new Map<string, { count: number; sumS: number; buckets: Map<number, number> }>();
  const wanted = new Set(names);
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`metrics: ${JSON.stringify(line)} is not a sample line`);
    const [, metric, labelText, valueText] = m;
    const base = metric!.replace(/_(bucket|sum|count)$/, "");
    const part = metric!.slice(base.length);
    if (!wanted.has(base) || part === "") continue;
    const labels = labelsOf(labelText);
    if (family && labels[FAMILY_LABEL] !== undefined && labels[FAMILY_LABEL] !== FAMILY_VALUES[family]) continue;
    const value = parseValue(valueText!, line);
    const h = acc.get(base) ?? { count: 0, sumS: 0, buckets: new Map<number, number>() };
    acc.set(base, h);
    if (part === "_count") h.count += value;
    else if (part === "_sum") h.sumS += value;
    else {
      if (labels.le === undefined) throw new Error(`metrics: ${JSON.stringify(line)} is a bucket without le`);
      const le = parseValue(labels.le, line);
      h.buckets.set(le, (h.buckets.get(le) ?? 0) + value);
    }
  }
  const out = new Map<string, MetricHistogram>();
  for (const [name, h] of acc) {
    out.set(name, { name, count: h.count, sumS: h.sumS, buckets: [...h.buckets.entries()].sort((a, b) => a[0] - b[0]) });
  }
  return out;
}

/**
 * Pure: what a histogram grew by from `before` to `after`. A control plane that restarted in between
 * starts from zero: a count that went down is read as a restart, and the new process' histogram is
 * the growth. Absent before: everything after is growth.
 */
export function histogramGrowth(before: MetricHistogram | undefined, after: MetricHistogram): MetricHistogram {
  if (!before || after.count < before.count) return after;
  const earlier = new Map(before.buckets);
  return {
    name: after.name,
    count: after.count - before.count,
    sumS: Math.max(0, after.sumS - before.sumS),
    buckets: after.buckets.map(([le, n]) => [le, n - (earlier.get(le) ?? 0)] as const),
  };
}

/** Pure: the sum of several histograms of one name (bucket bounds merged; a bucket a histogram lacks counts as its next smaller one's). */
export function addHistograms(list: readonly MetricHistogram[]): MetricHistogram | undefined {
  if (list.length === 0) return undefined;
  const bounds = [...new Set(list.flatMap((h) => h.buckets.map(([le]) => le)))].sort((a, b) => a - b);
  const at = (h: MetricHistogram, le: number) => {
    let n = 0;
    for (const [b, c] of h.buckets) if (b <= le) n = c;
    return n;
  };
  return {
    name: list[0]!.name,
    count: list.reduce((s, h) => s + h.count, 0),
    sumS: list.reduce((s, h) => s + h.sumS, 0),
    buckets: bounds.map((le) => [le, list.reduce((s, h) => s + at(h, le), 0)] as const),
  };
}

/**
 * Pure: the q-quantile of a histogram's observations, as Prometheus' histogram_quantile estimates it
 * (linear within the bucket it falls in, the lowest bucket from 0, the +Inf bucket at the largest
 * finite bound). NaN without observations.
 */
export function histogramQuantile(h: MetricHistogram, q: number): number {
  const total = h.buckets.at(-1)?.[1] ?? 0;
  if (!(total > 0) || h.buckets.length < 2) return Number.NaN;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, n] of h.buckets) {
    if (n >= rank) {
      if (le === Number.POSITIVE_INFINITY) return lower;
      if (n === below) return le;
      return lower + ((le - lower) * (rank - below)) / (n - below);
    }
    lower = le;
    below = n;
  }
  return lower;
}
