// The results store's table of a programming run's changes (measure/types.ts ChangeMeasurement):
// one row per change, in the order made. Schema 5 of measure/store.ts; other runs have no rows.
import type Database from "better-sqlite3";
import { COLD_START_CHANGES, PROGRAMMING_CHANGES, type ChangeMeasurement, type MeasuredChange } from "./types.js";

/** Schema 4 to 5: the changes of programming runs. */
export const PROGRAMMING_MIGRATION = `
CREATE TABLE run_change (              -- one measured Service change of a programming run (RunResult.changes)
  run_id          TEXT NOT NULL REFERENCES run_result(run_id),
  sequence        INTEGER NOT NULL,
  change          TEXT NOT NULL CHECK (change IN (${[...PROGRAMMING_CHANGES, ...COLD_START_CHANGES].map((c) => `'${c}'`).join(", ")})),
  services        INTEGER NOT NULL,
  sync_s          REAL NOT NULL,
  commit_s        REAL NOT NULL,
  writes          INTEGER NOT NULL,
  programmed_s    REAL,                -- NULL: not probed
  probes_sent     INTEGER,
  probe_flaps     INTEGER,
  probe_timeouts  INTEGER,
  PRIMARY KEY (run_id, sequence)
);
`;

type Row = Record<string, unknown>;

/** Writes a run's changes (inside the caller's transaction). */
export function insertRunChanges(db: Database.Database, runId: string, changes: readonly ChangeMeasurement[]): void {
  const insert = db.prepare(
    `INSERT INTO run_change (run_id, sequence, change, services, sync_s, commit_s, writes, programmed_s, probes_sent, probe_flaps, probe_timeouts)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  for (const c of changes) {
    insert.run(runId, c.sequence, c.change, c.services, c.syncS, c.commitS, c.writes, c.programmedS ?? null, c.probes?.sent ?? null, c.probes?.flaps ?? null, c.probes?.timeouts ?? null);
  }
}

/** Removes a run's changes (a failed run being replaced). */
export function deleteRunChanges(db: Database.Database, runId: string): void {
  db.prepare(`DELETE FROM run_change WHERE run_id = ?`).run(runId);
}

/** The changes of a campaign's runs, by run id, in their order. */
export function readRunChanges(db: Database.Database, campaignId: string): Map<string, ChangeMeasurement[]> {
  const rows = db
    .prepare(`SELECT c.* FROM run_change c JOIN run_result r ON r.run_id = c.run_id WHERE r.campaign_id = ? ORDER BY c.run_id, c.sequence`)
    .all(campaignId) as Row[];
  const out = new Map<string, ChangeMeasurement[]>();
  for (const r of rows) {
    const list = out.get(String(r.run_id)) ?? [];
    list.push({
      change: r.change as MeasuredChange,
      sequence: Number(r.sequence),
      services: Number(r.services),
      syncS: Number(r.sync_s),
      commitS: Number(r.commit_s),
      writes: Number(r.writes),
      ...(r.programmed_s !== null ? { programmedS: Number(r.programmed_s) } : {}),
      ...(r.probes_sent !== null ? { probes: { sent: Number(r.probes_sent), flaps: Number(r.probe_flaps), timeouts: Number(r.probe_timeouts) } } : {}),
    });
    out.set(String(r.run_id), list);
  }
  return out;
}
