// The control plane's histograms: parsed from a Prometheus exposition as kube-proxy and the Cilium
// agent print it, what they grew by over a change (a restart included), summed, and their quantiles
// as histogram_quantile estimates them; then stored with a run's changes and reported.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { addHistograms, histogramGrowth, histogramQuantile, parseHistograms, type MetricHistogram } from "../../measure/control-plane-metrics.js";
import { campaignIdFor, planCampaign, type CampaignDefinition } from "../../measure/campaign-plan.js";
import { judgeChanges } from "../../measure/campaign.js";
import { metricCells, metricsCsv, programmingReport } from "../../measure/report-programming.js";
import { ResultStore } from "../../measure/store.js";
import type { ChangeMeasurement, RunResult } from "../../measure/types.js";

const SYNC = "kubeproxy_sync_proxy_rules_duration_seconds";
const NPL = "kubeproxy_network_programming_duration_seconds";

/** kube-proxy's exposition of the two histograms, as its /metrics prints them (buckets trimmed). */
function kubeProxyText(sync: { buckets: number[]; sum: number }, family?: "IPv4" | "IPv6"): string {
  const label = family ? `ip_family="${family}",` : "";
  const bounds = ["0.001", "0.002", "0.004", "0.008", "+Inf"];
  return [
    `# HELP ${SYNC} [ALPHA] SyncProxyRules latency in seconds`,
    `# TYPE ${SYNC} histogram`,
    ...bounds.map((le, i) => `${SYNC}_bucket{${label}le="${le}"} ${sync.buckets[i]}`),
    `${SYNC}_sum{${family ? `ip_family="${family}"` : ""}} ${sync.sum}`,
    `${SYNC}_count{${family ? `ip_family="${family}"` : ""}} ${sync.buckets.at(-1)}`,
    `# TYPE ${NPL} histogram`,
    `${NPL}_bucket{le="0.25"} 1`,
    `${NPL}_bucket{le="0.5"} 3`,
    `${NPL}_bucket{le="+Inf"} 3`,
    `${NPL}_sum 0.9`,
    `${NPL}_count 3`,
    `kubeproxy_sync_proxy_rules_last_timestamp_seconds 1.7e+09`,
    "",
  ].join("\n");
}

describe("the control plane's histograms", () => {
  it("reads the named histograms, summed over their series, and the family's alone where they carry ip_family", () => {
    const h = parseHistograms(kubeProxyText({ buckets: [1, 3, 4, 4, 5], sum: 0.02 }), [SYNC, NPL, "missing_seconds"]);
    expect([...h.keys()]).toEqual([SYNC, NPL]);
    expect(h.get(SYNC)).toEqual({ name: SYNC, count: 5, sumS: 0.02, buckets: [[0.001, 1], [0.002, 3], [0.004, 4], [0.008, 4], [Number.POSITIVE_INFINITY, 5]] });
    const both = `${kubeProxyText({ buckets: [1, 1, 1, 1, 1], sum: 0.001 }, "IPv4")}${kubeProxyText({ buckets: [0, 2, 2, 2, 2], sum: 0.004 }, "IPv6").replace(/^.*network_programming.*$/gm, "")}`;
    expect(parseHistograms(both, [SYNC], "ipv6").get(SYNC)).toMatchObject({ count: 2, sumS: 0.004 });
    expect(parseHistograms(both, [SYNC]).get(SYNC)).toMatchObject({ count: 3, sumS: 0.005 });
    expect(() => parseHistograms("kubeproxy sync 1 2 3\n", [SYNC])).toThrow(/is not a sample line/);
    expect(() => parseHistograms(`${SYNC}_bucket{le=0.1} 1\n`, [SYNC])).toThrow(/is a bucket without le/);
    expect(() => parseHistograms(`${SYNC}_sum x\n`, [SYNC])).toThrow(/has no numeric value/);
  });

  it("gives what a histogram grew by over a change, and a restarted control plane's histogram whole", () => {
    const before = parseHistograms(kubeProxyText({ buckets: [1, 3, 4, 4, 5], sum: 0.02 }), [SYNC]).get(SYNC)!;
    const after = parseHistograms(kubeProxyText({ buckets: [1, 4, 6, 6, 7], sum: 0.026 }), [SYNC]).get(SYNC)!;
    const grown = histogramGrowth(before, after);
    expect(grown.count).toBe(2);
    expect(grown.sumS).toBeCloseTo(0.006, 9);
    expect(grown.buckets).toEqual([[0.001, 0], [0.002, 1], [0.004, 2], [0.008, 2], [Number.POSITIVE_INFINITY, 2]]);
    const restarted = parseHistograms(kubeProxyText({ buckets: [0, 0, 1, 1, 1], sum: 0.003 }), [SYNC]).get(SYNC)!;
    expect(histogramGrowth(after, restarted)).toEqual(restarted);
  });

  it("estimates quantiles as histogram_quantile does, and adds histograms of one name", () => {
    const h: MetricHistogram = { name: "x", count: 4, sumS: 1, buckets: [[0.25, 1], [0.5, 3], [1, 4], [Number.POSITIVE_INFINITY, 4]] };
    expect(histogramQuantile(h, 0.25)).toBeCloseTo(0.25, 12);
    expect(histogramQuantile(h, 0.5)).toBeCloseTo(0.375, 12);
    expect(histogramQuantile(h, 1)).toBeCloseTo(1, 12);
    expect(histogramQuantile({ ...h, buckets: [[0.25, 0], [Number.POSITIVE_INFINITY, 2]] }, 0.5)).toBe(0.25);
    expect(histogramQuantile({ ...h, buckets: [[0.25, 0], [Number.POSITIVE_INFINITY, 0]] }, 0.5)).toBeNaN();
    const sum = addHistograms([h, { name: "x", count: 1, sumS: 2, buckets: [[0.5, 0], [Number.POSITIVE_INFINITY, 1]] }])!;
    expect(sum).toEqual({ name: "x", count: 5, sumS: 3, buckets: [[0.25, 1], [0.5, 3], [1, 4], [Number.POSITIVE_INFINITY, 5]] });
  });
});

describe("changes read with the control plane's metrics", () => {
  const sync = (count: number, sumS: number): MetricHistogram => ({ name: SYNC, count, sumS, buckets: [[0.001, 0], [0.002, count], [Number.POSITIVE_INFINITY, count]] });
  const cloudChanges = (): ChangeMeasurement[] =>
    (["remove-one", "add-one", "remove-one", "add-100", "full-sync"] as const).map((change, sequence) => ({
      change,
      sequence,
      services: 10,
      programmedS: 0.5 + sequence,
      probes: { sent: 100, flaps: 0, timeouts: 0 },
      metrics: [sync(1 + sequence, 0.0015 * (1 + sequence))],
    }));

  it("are judged timed by the metrics where the write was not timed, and refused with neither", () => {
    expect(judgeChanges(cloudChanges())).toBeUndefined();
    const bare = cloudChanges().map(({ metrics: _, ...c }) => c);
    expect(judgeChanges(bare)).toMatch(/^programming run: neither a write time nor the control plane's metrics for remove-one, add-one/);
  });

  it("are stored with their histograms and reported in programming-metrics.csv and the section's table", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "metrics-store-"));
    try {
      const store = ResultStore.open(path.join(dir, "results.db"));
      const def: CampaignDefinition = {
        backend: "stack:ebpf", dataplanes: ["ebpf"], families: ["ipv4"], profiles: ["programming"], services: [10], runs: 1, flowSeconds: 1,
        linkMbps: 0, seed: 1, order: { randomize: false, interleave: 0 }, traffic: {} as CampaignDefinition["traffic"],
        programming: { probesPerSecond: 1000, addMany: 100, confirmMs: 50, timeoutS: 60, coldStart: false },
      };
      const id = campaignIdFor(def);
      const plan = planCampaign(id, def);
      store.ensureCampaign(id, def, plan);
      const result: RunResult = { ...plan[0]!.key, runId: plan[0]!.runId, status: "ok", retries: 0, startedAt: "a", endedAt: "b", changes: cloudChanges() };
      store.commitRun(id, result);
      const read = store.results(id);
      expect(read).toEqual([result]);
      store.close();
      const cells = metricCells(read);
      const addOne = cells.find((c) => c.change === "add-one")!;
      expect(addOne).toMatchObject({ metric: SYNC, changes: 1, statistics: { count: 2 } });
      expect(addOne.statistics.mean).toBeCloseTo(0.0015, 12);
      // Both remove-one changes in one cell.
      expect(cells.find((c) => c.change === "remove-one")!.statistics.count).toBe(1 + 3);
      const csv = metricsCsv(cells, String).trim().split("\n");
      expect(csv[0]).toBe("dataplane,family,services,change,metric,statistic,value");
      expect(csv).toContain(`ebpf,ipv4,10,add-one,${SYNC},count,2`);
      const report = programmingReport(read, { fmt: (x) => String(x), number: String })!;
      expect(report.tables.map((t) => t.file)).toContain("programming-metrics.csv");
      expect(report.markdown.join("\n")).toMatch(/What the control plane counted/);
      expect(report.markdown.join("\n")).toContain(`| ipv4 | 10 | add-one | ebpf | ${SYNC} | 1 | 2 |`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
