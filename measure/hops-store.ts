// The results store's tables of a run's hop decomposition (measure/hops.ts): one row per section
// and direction with its statistics and histogram, and one row with the run's check. Schema 3 of
// measure/store.ts; runs without hop probes have no rows.
//
// A worker capture (scope "worker", a deployed stack) is kept in the same rows: its sections are the
// worker's, with a worker-span row per direction instead of end-to-end, and its residuals compare
// with those spans. The scope and a point the packets skipped are read back off the section rows
// (scopeOfSections; no forward pod-link in a worker run: the pod veth's egress was bypassed).
//
// Schema 7: the check's D-ITG sample (1 in sample_every packets stamped, hops/hop-maps.h) and the
// stamps found outside it; a row stored before has neither: its probes stamped every packet.
import type Database from "better-sqlite3";
import {
  HOP_DIRECTIONS,
  HOP_POINTS,
  scopeOfSections,
  WORKER_POINTS,
  type HopCheck,
  type HopDirection,
  type HopKeying,
  type HopSectionSummary,
  type RunHops,
} from "./hops.js";

/** Schema 2 to 3: the hop tables. */
export const HOP_MIGRATION = `
CREATE TABLE run_hop_section (         -- a run's per-packet delay of one section of the path (RunResult.hops)
  run_id     TEXT NOT NULL REFERENCES run_result(run_id),
  direction  TEXT NOT NULL CHECK (direction IN (${HOP_DIRECTIONS.map((d) => `'${d}'`).join(", ")})),
  section    TEXT NOT NULL,
  packets    INTEGER NOT NULL,
  mean_s     REAL,
  std_s      REAL,
  p50_s      REAL,
  p99_s      REAL,
  p999_s     REAL,
  max_s      REAL,
  histogram  TEXT NOT NULL,            -- hdr-histogram-js compressed base64, nanoseconds
  PRIMARY KEY (run_id, direction, section)
);
CREATE TABLE run_hop_check (           -- whether the run's sections are whole and add up
  run_id                TEXT PRIMARY KEY REFERENCES run_result(run_id),
  keying                TEXT NOT NULL CHECK (keying IN ('ditg', 'handshake')),
  packets               INTEGER NOT NULL,
  decomposed            INTEGER NOT NULL,
  incomplete            INTEGER NOT NULL,
  out_of_order          INTEGER NOT NULL,
  dropped_stamps        INTEGER NOT NULL,
  unread_stamps         INTEGER NOT NULL,
  clock_step_ns         INTEGER NOT NULL,
  offset_uncertainty_ns INTEGER NOT NULL,
  residual_forward_s    REAL,
  residual_round_trip_s REAL,
  adds_up               INTEGER NOT NULL CHECK (adds_up IN (0, 1))
);
`;

/** Schema 6 to 7: the sample a run's sections are of. */
export const HOP_SAMPLE_MIGRATION = `
ALTER TABLE run_hop_check ADD COLUMN sample_every INTEGER;      -- NULL: stored before sampling, every packet stamped
ALTER TABLE run_hop_check ADD COLUMN unsampled_stamps INTEGER;  -- NULL: stored before sampling, none
`;

type Row = Record<string, unknown>;
const num = (v: unknown) => (v === null ? NaN : Number(v));

/** Writes a run's hop rows (inside the caller's transaction). */
export function insertRunHops(db: Database.Database, runId: string, hops: RunHops): void {
  const section = db.prepare(
    `INSERT INTO run_hop_section (run_id, direction, section, packets, mean_s, std_s, p50_s, p99_s, p999_s, max_s, histogram)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  for (const s of hops.sections) {
    section.run(runId, s.direction, s.section, s.packets, s.meanS, s.stdS, s.p50S, s.p99S, s.p999S, s.maxS, s.histogram);
  }
  const c = hops.check;
  db.prepare(
    `INSERT INTO run_hop_check (run_id, keying, packets, decomposed, incomplete, out_of_order, dropped_stamps, unread_stamps,
       clock_step_ns, offset_uncertainty_ns, residual_forward_s, residual_round_trip_s, adds_up, sample_every, unsampled_stamps)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(
    runId, c.keying, c.packets, c.decomposed, c.incomplete, c.outOfOrder, c.droppedStamps, c.unreadStamps,
    c.clockStepNs, c.offsetUncertaintyNs, c.residualForwardS ?? null, c.residualRoundTripS ?? null, c.addsUp ? 1 : 0,
    c.sampleEvery, c.unsampledStamps,
  );
}

/** Removes a run's hop rows (a failed run being replaced). */
export function deleteRunHops(db: Database.Database, runId: string): void {
  db.prepare(`DELETE FROM run_hop_section WHERE run_id = ?`).run(runId);
  db.prepare(`DELETE FROM run_hop_check WHERE run_id = ?`).run(runId);
}

/** The hop decompositions of a campaign's runs, by run id. */
export function readRunHops(db: Database.Database, campaignId: string): Map<string, RunHops> {
  const sections = new Map<string, HopSectionSummary[]>();
  const sectionRows = db
    .prepare(`SELECT s.* FROM run_hop_section s JOIN run_result r ON r.run_id = s.run_id WHERE r.campaign_id = ? ORDER BY s.rowid`)
    .all(campaignId) as Row[];
  for (const r of sectionRows) {
    const list = sections.get(String(r.run_id)) ?? [];
    list.push({
      direction: r.direction as HopDirection,
      section: String(r.section),
      packets: Number(r.packets),
      meanS: num(r.mean_s),
      stdS: num(r.std_s),
      p50S: num(r.p50_s),
      p99S: num(r.p99_s),
      p999S: num(r.p999_s),
      maxS: num(r.max_s),
      histogram: String(r.histogram),
    });
    sections.set(String(r.run_id), list);
  }
  const out = new Map<string, RunHops>();
  const checkRows = db
    .prepare(`SELECT c.* FROM run_hop_check c JOIN run_result r ON r.run_id = c.run_id WHERE r.campaign_id = ?`)
    .all(campaignId) as Row[];
  for (const r of checkRows) {
    const runSections = sections.get(String(r.run_id)) ?? [];
    const scope = scopeOfSections(runSections);
    // The receiver pod's veth is worker 2's where the path has an endpoint node, else worker 1's.
    const podVeth = runSections.some((s) => s.direction === "forward" && s.section === "endpoint-node") ? 14 : WORKER_POINTS[1]!;
    const bypassed = scope === "worker" && !runSections.some((s) => s.direction === "forward" && s.section === "pod-link") ? [HOP_POINTS[podVeth]!] : [];
    const check: HopCheck = {
      keying: r.keying as HopKeying,
      scope,
      ...(bypassed.length > 0 ? { bypassed } : {}),
      packets: Number(r.packets),
      decomposed: Number(r.decomposed),
      incomplete: Number(r.incomplete),
      sampleEvery: r.sample_every == null ? 1 : Number(r.sample_every),
      unsampledStamps: r.unsampled_stamps == null ? 0 : Number(r.unsampled_stamps),
      outOfOrder: Number(r.out_of_order),
      droppedStamps: Number(r.dropped_stamps),
      unreadStamps: Number(r.unread_stamps),
      clockStepNs: Number(r.clock_step_ns),
      offsetUncertaintyNs: Number(r.offset_uncertainty_ns),
      ...(r.residual_forward_s !== null ? { residualForwardS: Number(r.residual_forward_s) } : {}),
      ...(r.residual_round_trip_s !== null ? { residualRoundTripS: Number(r.residual_round_trip_s) } : {}),
      addsUp: Number(r.adds_up) === 1,
    };
    out.set(String(r.run_id), { sections: runSections, check });
  }
  return out;
}
