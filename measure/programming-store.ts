// The results store's tables of a programming run's changes (measure/types.ts ChangeMeasurement): one
// row per change, in the order made, and one per control-plane histogram a change was read with (what
// it grew by over the change; measure/control-plane-metrics.ts). Schema 5 of measure/store.ts; other
// runs have no rows.
import type Database from "better-sqlite3";
import type { MetricHistogram } from "./control-plane-metrics.js";
import { COLD_START_CHANGES, PROGRAMMING_CHANGES, type ChangeMeasurement, type MeasuredChange } from "./types.js";

/** Schema 4 to 5: the changes of programming runs, and the control plane's histograms over each. */
export const PROGRAMMING_MIGRATION = `
CREATE TABLE run_change (              -- one measured Service change of a programming run (RunResult.changes)
  run_id          TEXT NOT NULL REFERENCES run_result(run_id),
  sequence        INTEGER NOT NULL,
  change          TEXT NOT NULL CHECK (change IN (${[...PROGRAMMING_CHANGES, ...COLD_START_CHANGES].map((c) => `'${c}'`).join(", ")})),
  services        INTEGER NOT NULL,
  sync_s          REAL,                -- NULL: the write not timed by the backend (the cloud)
  commit_s        REAL,
  writes          INTEGER,
  programmed_s    REAL,                -- NULL: not probed
  probes_sent     INTEGER,
  probe_flaps     INTEGER,
  probe_timeouts  INTEGER,
  PRIMARY KEY (run_id, sequence)
);
CREATE TABLE run_change_metric (       -- what one control-plane histogram grew by over a change (ChangeMeasurement.metrics)
  run_id          TEXT NOT NULL,
  sequence        INTEGER NOT NULL,
  metric          TEXT NOT NULL,
  count           REAL NOT NULL,
  sum_s           REAL NOT NULL,
  buckets         TEXT NOT NULL,       -- JSON [[le, cumulative count], ...], le "Infinity" last
  PRIMARY KEY (run_id, sequence, metric),
  FOREIGN KEY (run_id, sequence) REFERENCES run_change(run_id, sequence)
);
`;

const bucketsText = (h: MetricHistogram) => JSON.stringify(h.buckets.map(([le, n]) => [String(le), n]));
const bucketsOf = (text: string) => (JSON.parse(text) as [string, number][]).map(([le, n]) => [Number(le), n] as const);

type Row = Record<string, unknown>;

/** Writes a run's changes (inside the caller's transaction). */
export function insertRunChanges(db: Database.Database, runId: string, changes: readonly ChangeMeasurement[]): void {
  const insert = db.prepare(
    `INSERT INTO run_change (run_id, sequence, change, services, sync_s, commit_s, writes, programmed_s, probes_sent, probe_flaps, probe_timeouts)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const metric = db.prepare(`INSERT INTO run_change_metric (run_id, sequence, metric, count, sum_s, buckets) VALUES (?, ?, ?, ?, ?, ?)`);
  for (const c of changes) {
    insert.run(runId, c.sequence, c.change, c.services, c.syncS ?? null, c.commitS ?? null, c.writes ?? null, c.programmedS ?? null, c.probes?.sent ?? null, c.probes?.flaps ?? null, c.probes?.timeouts ?? null);
    for (const h of c.metrics ?? []) metric.run(runId, c.sequence, h.name, h.count, h.sumS, bucketsText(h));
  }
}

/** Removes a run's changes (a failed run being replaced). */
export function deleteRunChanges(db: Database.Database, runId: string): void {
  db.prepare(`DELETE FROM run_change_metric WHERE run_id = ?`).run(runId);
  db.prepare(`DELETE FROM run_change WHERE run_id = ?`).run(runId);
}

/** The changes of a campaign's runs, by run id, in their order. */
export function readRunChanges(db: Database.Database, campaignId: string): Map<string, ChangeMeasurement[]> {
  const rows = db
    .prepare(`SELECT c.* FROM run_change c JOIN run_result r ON r.run_id = c.run_id WHERE r.campaign_id = ? ORDER BY c.run_id, c.sequence`)
    .all(campaignId) as Row[];
  const metricRows = db
    .prepare(`SELECT m.* FROM run_change_metric m JOIN run_result r ON r.run_id = m.run_id WHERE r.campaign_id = ? ORDER BY m.run_id, m.sequence, m.metric`)
    .all(campaignId) as Row[];
  const metrics = new Map<string, MetricHistogram[]>();
  for (const m of metricRows) {
    const key = `${String(m.run_id)}/${Number(m.sequence)}`;
    metrics.set(key, [...(metrics.get(key) ?? []), { name: String(m.metric), count: Number(m.count), sumS: Number(m.sum_s), buckets: bucketsOf(String(m.buckets)) }]);
  }
  const out = new Map<string, ChangeMeasurement[]>();
  for (const r of rows) {
    const list = out.get(String(r.run_id)) ?? [];
    list.push({
      change: r.change as MeasuredChange,
      sequence: Number(r.sequence),
      services: Number(r.services),
      ...(r.sync_s !== null ? { syncS: Number(r.sync_s) } : {}),
      ...(r.commit_s !== null ? { commitS: Number(r.commit_s) } : {}),
      ...(r.writes !== null ? { writes: Number(r.writes) } : {}),
      ...(r.programmed_s !== null ? { programmedS: Number(r.programmed_s) } : {}),
      ...(r.probes_sent !== null ? { probes: { sent: Number(r.probes_sent), flaps: Number(r.probe_flaps), timeouts: Number(r.probe_timeouts) } } : {}),
      ...(metrics.has(`${String(r.run_id)}/${Number(r.sequence)}`) ? { metrics: metrics.get(`${String(r.run_id)}/${Number(r.sequence)}`)! } : {}),
    });
    out.set(String(r.run_id), list);
  }
  return out;
}
