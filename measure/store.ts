// The results store: one SQLite file holding campaign definitions, their planned runs and every
// finished run, committed the moment the run ends so that a killed campaign loses nothing.
//
// Raw D-ITG logs are kept as files, not blobs: a throughput repetition's log is tens of MB and a
// campaign has thousands of them, which would bloat the database and slow every query. With
// keep-logs the runner moves each decoded log to `<db>.logs/<campaign>/<run>.log` and the store
// records that path relative to the database's directory (so the pair can be moved together);
// without it the log is deleted after decoding and `log_path` is NULL. A round-trip run also keeps
// its receiver log (`<run>.receiver.rlog`, `receiver_log_path`).
//
// Delays (schema 2). A run's summary columns hold its delays as the report reads them: for a round
// trip, exact from the paired logs (`delay_source` paired, D-ITG B15). `run_delay_view` keeps the
// other readings of the same run: the meter's own from the sender log alone (`sender`, B15's
// signature records left out; `itgdec`, every record as ITGDec reads it) and the one-way delays of
// the receiver's log (`oneWay`, where both ends share a clock). A schema-1 store is upgraded in place
// when opened (columns and a table added, nothing rewritten); its runs have no delay source and no
// views: their round trips are the meter's.
//
// Hops (schema 3). Runs measured with the lab's hop probes keep their decomposition into sections of
// the path (measure/hops-store.ts); a schema-2 store gains the tables when opened.
//
// Steps (schema 4). Every preparation of a (dataplane, Service count) step keeps when the step became
// measurable and how many Services the dataplane held per family (`step_record`, StepReadiness); a
// schema-3 store gains the table when opened.
//
// Programming (schema 5). Programming runs keep their measured Service changes
// (measure/programming-store.ts); an older store gains the table when opened.
//
// Paths (schema 6). A planned run keeps the Service path it measures (scenario/paths.ts): `path`,
// nodeport-local for every run of an older store, which measured the paper's path alone. The run's
// key in the plan gains the path, so planned_run is rebuilt with it (SQLite cannot change a table's
// UNIQUE constraint in place); its rows and run ids stay as they were.
//
// Hop samples (schema 7). A run's hop check keeps the D-ITG sample its sections are of (1 in N
// packets stamped) and the stamps found outside it (measure/hops-store.ts); an older store's rows
// read as every packet stamped.
//
// Two ways to open. A writer (`testbed lab`, `testbed campaign`: ResultStore.open) upgrades an older
// store in place and says so through onUpgrade. A reader (`testbed report`: ResultStore.openReadOnly)
// never writes: no migration, no pragma that writes, no -wal or -shm file created; it reads an older
// store as it is, so every read of a table or column a migration added checks `schemaVersion` first
// (a table of migration N: `this.schemaVersion >= N`).
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { canonicalJson, type CampaignDefinition, type PlannedRun } from "./campaign-plan.js";
import { deleteRunHops, HOP_MIGRATION, HOP_SAMPLE_MIGRATION, insertRunHops, readRunHops } from "./hops-store.js";
import { deleteRunChanges, insertRunChanges, PROGRAMMING_MIGRATION, readRunChanges } from "./programming-store.js";
import type { RunHops } from "./hops.js";
import type { Family } from "../scenario/cidr.js";
import { DELAY_VIEW_NAMES, type ChangeMeasurement, type DelayViewName, type FlowSummary, type RunDelayView, type RunResult, type StepReadiness, type StepRecord } from "./types.js";
import type { Dataplane } from "../scenario/schema.js";
import { DEFAULT_PATH, type ServicePath } from "../scenario/paths.js";
import { pathField, pathOf } from "./types.js";

/** Bumped whenever the tables change; a database from a newer version is refused, not guessed at. */
export const SCHEMA_VERSION = 7;
/** The oldest schema this testbed upgrades in place. */
export const OLDEST_SCHEMA_VERSION = 1;

/** Column of each FlowSummary field; a Record so that a new field cannot be forgotten here. */
const SUMMARY_COLUMNS: Record<keyof FlowSummary, string> = {
  packets: "packets",
  bytes: "bytes",
  durationS: "duration_s",
  delayMinS: "delay_min_s",
  delayMaxS: "delay_max_s",
  delayMeanS: "delay_mean_s",
  delayStdS: "delay_std_s",
  jitterS: "jitter_s",
  bitrateKbps: "bitrate_kbps",
  packetRate: "packet_rate",
  dropped: "dropped",
  p50S: "p50_s",
  p90S: "p90_s",
  p99S: "p99_s",
  p999S: "p999_s",
};
const SUMMARY_FIELDS = Object.keys(SUMMARY_COLUMNS) as (keyof FlowSummary)[];

/** The FlowSummary of a row's summary columns; SQLite stores NaN (statistics of an empty log) as NULL, given back as NaN. */
function summaryOf(row: Record<string, unknown>): FlowSummary {
  return Object.fromEntries(
    SUMMARY_FIELDS.map((f) => [f, row[SUMMARY_COLUMNS[f]] === null ? NaN : Number(row[SUMMARY_COLUMNS[f]])]),
  ) as unknown as FlowSummary;
}

/** Only the FlowSummary fields of a richer summary (a decoder's total carries more). */
export function flowSummaryOf(s: FlowSummary): FlowSummary {
  return Object.fromEntries(SUMMARY_FIELDS.map((f) => [f, s[f]])) as unknown as FlowSummary;
}

const summaryColumns = () => SUMMARY_FIELDS.map((f) => `${SUMMARY_COLUMNS[f]} REAL`).join(",\n  ");

/** Schema 1 to 2: the delay source of each run, its receiver log, and the other readings of its delays. */
const MIGRATION_2 = `
ALTER TABLE run_result ADD COLUMN delay_source TEXT CHECK (delay_source IN ('paired', 'sender'));  -- NULL: stored by schema 1
ALTER TABLE run_result ADD COLUMN excluded_records INTEGER;
ALTER TABLE run_result ADD COLUMN receiver_log_path TEXT;
CREATE TABLE run_delay_view (          -- the other readings of a run's delays (RunResult.delayViews)
  run_id           TEXT NOT NULL REFERENCES run_result(run_id),
  view             TEXT NOT NULL CHECK (view IN (${DELAY_VIEW_NAMES.map((v) => `'${v}'`).join(", ")})),
  excluded_records INTEGER NOT NULL,
  ${summaryColumns()},
  histogram        TEXT,
  PRIMARY KEY (run_id, view)
);
`;

/** Schema 3 to 4: when each prepared step became measurable (StepReadiness), per family. */
const MIGRATION_4 = `
CREATE TABLE step_record (
  id                       INTEGER PRIMARY KEY,
  campaign_id              TEXT NOT NULL REFERENCES campaign(id),
  dataplane                TEXT NOT NULL,
  services                 INTEGER NOT NULL,
  family                   TEXT NOT NULL,
  prepared_at              TEXT NOT NULL,
  endpoints_ready_after_s  REAL NOT NULL,
  programmed_after_s       REAL NOT NULL,
  programmed_services      INTEGER NOT NULL
);
CREATE INDEX step_record_campaign ON step_record (campaign_id);
`;

/** The planned runs' table at schema 6: the run's key with its path. */
const PLANNED_RUN_6 = (table: string) => `
CREATE TABLE ${table} (
  run_id      TEXT PRIMARY KEY,        -- hash of campaign id + RunKey
  campaign_id TEXT NOT NULL REFERENCES campaign(id),
  plan_index  INTEGER NOT NULL,        -- execution order
  dataplane   TEXT NOT NULL,
  family      TEXT NOT NULL,
  profile     TEXT NOT NULL,
  services    INTEGER NOT NULL,
  repetition  INTEGER NOT NULL,
  path        TEXT NOT NULL DEFAULT '${DEFAULT_PATH}',
  UNIQUE (campaign_id, plan_index),
  UNIQUE (campaign_id, dataplane, family, profile, services, repetition, path)
);
`;

/**
 * Schema 5 to 6: each planned run's path. The table is rebuilt under its own name (copy, drop, rename),
 * as SQLite's procedure for changing a table's constraints says; the caller turns foreign keys off
 * around it and checks them before committing.
 */
const MIGRATION_6 = `
${PLANNED_RUN_6("planned_run_6")}
INSERT INTO planned_run_6 (run_id, campaign_id, plan_index, dataplane, family, profile, services, repetition)
  SELECT run_id, campaign_id, plan_index, dataplane, family, profile, services, repetition FROM planned_run;
DROP TABLE planned_run;
ALTER TABLE planned_run_6 RENAME TO planned_run;
`;

const SCHEMA = `
CREATE TABLE campaign (
  id          TEXT PRIMARY KEY,
  backend     TEXT NOT NULL,
  seed        INTEGER NOT NULL,
  definition  TEXT NOT NULL,           -- canonical JSON of CampaignDefinition
  created_at  TEXT NOT NULL
);
CREATE TABLE planned_run (
  run_id      TEXT PRIMARY KEY,        -- hash of campaign id + RunKey
  campaign_id TEXT NOT NULL REFERENCES campaign(id),
  plan_index  INTEGER NOT NULL,        -- execution order
  dataplane   TEXT NOT NULL,
  family      TEXT NOT NULL,
  profile     TEXT NOT NULL,
  services    INTEGER NOT NULL,
  repetition  INTEGER NOT NULL,
  UNIQUE (campaign_id, plan_index),
  UNIQUE (campaign_id, dataplane, family, profile, services, repetition)
);
CREATE TABLE run_result (
  run_id        TEXT PRIMARY KEY REFERENCES planned_run(run_id),
  campaign_id   TEXT NOT NULL REFERENCES campaign(id),
  status        TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
  failure       TEXT,
  retries       INTEGER NOT NULL,
  started_at    TEXT NOT NULL,
  ended_at      TEXT NOT NULL,
  committed_at  TEXT NOT NULL,
  achieved_kbps REAL,
  ${summaryColumns()},
  histogram     TEXT,                  -- hdr-histogram-js compressed base64
  log_path      TEXT                   -- relative to the database's directory; NULL when dropped
);
CREATE INDEX run_result_campaign ON run_result (campaign_id);
CREATE TABLE run_attempt (             -- every failed attempt that was retried; a final failure is in run_result.failure
  run_id      TEXT NOT NULL REFERENCES planned_run(run_id),
  attempt     INTEGER NOT NULL,
  started_at  TEXT NOT NULL,
  ended_at    TEXT NOT NULL,
  failure     TEXT NOT NULL,
  PRIMARY KEY (run_id, attempt)
);
CREATE TABLE campaign_event (          -- prepares, receiver restarts, starts and resumes
  id          INTEGER PRIMARY KEY,
  campaign_id TEXT NOT NULL REFERENCES campaign(id),
  at          TEXT NOT NULL,
  kind        TEXT NOT NULL,
  run_id      TEXT,
  detail      TEXT
);
`;

export interface StoredCampaign {
  readonly id: string;
  readonly definition: CampaignDefinition;
  /** Every planned run, in plan order. */
  readonly plan: PlannedRun[];
  readonly createdAt: string;
}

/** A failed attempt of a run that was retried (or finally failed). */
export interface FailedAttempt {
  readonly attempt: number;
  readonly startedAt: string;
  readonly endedAt: string;
  readonly failure: string;
}

export interface CampaignEventRow {
  readonly at: string;
  readonly kind: string;
  readonly runId?: string;
  readonly detail?: string;
}

export class StoreError extends Error {
  override name = "StoreError";
  /** What is wrong, without the file's name (for messages that name it with a flag). */
  readonly problem: string;
  constructor(message: string, problem?: string) {
    super(message);
    this.problem = problem ?? message;
  }
}

type Row = Record<string, unknown>;

/** What a writer is told when it opens an older store: it was upgraded in place, from schema `from` to `to`. */
export type UpgradeNotice = (upgrade: { file: string; from: number; to: number }) => void;

export class ResultStore {
  private constructor(
    private readonly db: Database.Database,
    /** Absolute path of the database file. */
    readonly file: string,
    /** The store's schema version: SCHEMA_VERSION for a writer, the store's own for a reader. */
    readonly schemaVersion: number,
  ) {}

  /**
   * Opens an existing store for reading only, as it is: an older schema is read without upgrading it. Nothing is
   * written, not even beside it: a store closed cleanly (no -wal file) is read from a copy in memory, so a store in
   * a read-only folder or on a read-only file system reads too; a store a campaign is writing (its -wal file
   * present) is opened read-only in place, to see what the campaign committed.
   */
  static openReadOnly(file: string): ResultStore {
    const abs = path.resolve(file);
    let db: Database.Database;
    try {
      if (existsSync(`${abs}-wal`)) {
        db = new Database(abs, { readonly: true, fileMustExist: true });
      } else {
        const image = readFileSync(abs);
        // Bytes 18-19 say WAL mode (2): an image in memory has no WAL, and SQLite refuses to open one that asks for it.
        if (image.length >= 20) image[18] = image[19] = 1;
        db = new Database(image, { readonly: true });
      }
    } catch (err) {
      throw new StoreError(`cannot read results store ${abs}: ${(err as Error).message}`, `cannot be read (${(err as Error).message})`);
    }
    let version: number;
    try {
      version = db.pragma("user_version", { simple: true }) as number;
    } catch (err) {
      db.close();
      throw new StoreError(`${abs} is not a results store (${(err as Error).message})`, `not a results store (${(err as Error).message})`);
    }
    if (version === 0) {
      db.close();
      throw new StoreError(`${abs} is empty, or not a results store (no testbed tables)`, "empty, or not a results store (no testbed tables)");
    }
    if (version < OLDEST_SCHEMA_VERSION || version > SCHEMA_VERSION) {
      db.close();
      const problem = `results store schema version ${version}; this testbed reads versions ${OLDEST_SCHEMA_VERSION} to ${SCHEMA_VERSION}; use a matching testbed version`;
      throw new StoreError(`${abs}: ${problem}`, problem);
    }
    return new ResultStore(db, abs, version);
  }

  /**
   * Opens (creating if needed) the store at `file`.
   * WAL lets a reader (the report) open the file while a campaign writes. synchronous=FULL fsyncs
   * the WAL at every commit: NORMAL would already survive a killed process (the committed frames
   * sit in the OS page cache), but FULL also survives a power cut or kernel crash of the machine
   * driving a day-long campaign, and one fsync per 30-second run costs nothing measurable.
   */
  static open(file: string, opts: { onUpgrade?: UpgradeNotice } = {}): ResultStore {
    const abs = path.resolve(file);
    mkdirSync(path.dirname(abs), { recursive: true });
    let db: Database.Database;
    try {
      db = new Database(abs);
    } catch (err) {
      throw new StoreError(`cannot open results store ${abs}: ${(err as Error).message}`);
    }
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    db.pragma("foreign_keys = ON");
    db.pragma("busy_timeout = 5000");
    const version = db.pragma("user_version", { simple: true }) as number;
    if (version === 0) {
      db.transaction(() => {
        db.exec(SCHEMA);
        db.exec(MIGRATION_2);
        db.exec(HOP_MIGRATION);
        db.exec(MIGRATION_4);
        db.exec(PROGRAMMING_MIGRATION);
        db.exec(MIGRATION_6);
        db.exec(HOP_SAMPLE_MIGRATION);
        db.pragma(`user_version = ${SCHEMA_VERSION}`);
      })();
    } else if (version < OLDEST_SCHEMA_VERSION || version > SCHEMA_VERSION) {
      db.close();
      throw new StoreError(
        `results store ${abs} has schema version ${version}; this testbed reads versions ${OLDEST_SCHEMA_VERSION} to ${SCHEMA_VERSION}; use a matching testbed version or a new --db file`,
      );
    } else if (version < SCHEMA_VERSION) {
      try {
        // Foreign keys off (outside the transaction, where SQLite allows the switch) while planned_run is rebuilt:
        // dropping the old table must not touch the results that refer to it; they are checked before the commit.
        db.pragma("foreign_keys = OFF");
        db.transaction(() => {
          if (version < 2) db.exec(MIGRATION_2);
          if (version < 3) db.exec(HOP_MIGRATION);
          if (version < 4) db.exec(MIGRATION_4);
          if (version < 5) db.exec(PROGRAMMING_MIGRATION);
          if (version < 6) db.exec(MIGRATION_6);
          if (version < 7) db.exec(HOP_SAMPLE_MIGRATION);
          const broken = db.pragma("foreign_key_check") as unknown[];
          if (broken.length > 0) throw new Error(`${broken.length} rows refer to rows that do not exist (PRAGMA foreign_key_check)`);
          db.pragma(`user_version = ${SCHEMA_VERSION}`);
        })();
        db.pragma("foreign_keys = ON");
      } catch (err) {
        db.close();
        throw new StoreError(`cannot upgrade results store ${abs} from schema version ${version} to ${SCHEMA_VERSION}: ${(err as Error).message}`);
      }
      opts.onUpgrade?.({ file: abs, from: version, to: SCHEMA_VERSION });
    }
    return new ResultStore(db, abs, SCHEMA_VERSION);
  }

  close(): void {
    this.db.close();
  }

  /** The `path` field of a key read from planned_run: none for the paper's path, and none before schema 6 (which had no other). */
  private pathOfRow(r: Row): { path?: ServicePath } {
    return this.schemaVersion >= 6 && r.path != null ? pathField(String(r.path) as ServicePath) : {};
  }

  /** Pragmas as SQLite reports them (journal mode, synchronous level, schema version). */
  settings(): { journalMode: string; synchronous: number; schemaVersion: number } {
    return {
      journalMode: this.db.pragma("journal_mode", { simple: true }) as string,
      synchronous: this.db.pragma("synchronous", { simple: true }) as number,
      schemaVersion: this.db.pragma("user_version", { simple: true }) as number,
    };
  }

  /** Directory for the raw logs of a campaign kept with keep-logs: `<db>.logs/<campaign>`. */
  logDir(campaignId: string): string {
    return `${this.file}.logs${path.sep}${campaignId}`;
  }

  /** Path as stored: relative to the database's directory. */
  relativeLogPath(absolute: string): string {
    return path.relative(path.dirname(this.file), absolute);
  }

  /**
   * Records a new campaign with its plan, or checks that an existing one has the same definition.
   * Returns true when the campaign was created by this call.
   */
  ensureCampaign(id: string, definition: CampaignDefinition, plan: readonly PlannedRun[], now = new Date()): boolean {
    const existing = this.campaign(id);
    if (existing) {
      const had = canonicalJson(existing.definition);
      const has = canonicalJson(definition);
      if (had !== has) {
        throw new StoreError(
          `campaign ${id} in ${this.file} was started with a different definition (${had}); accepted: the same flags as when it started, or another campaign id or --db file`,
        );
      }
      return false;
    }
    const insertRun = this.db.prepare(
      `INSERT INTO planned_run (run_id, campaign_id, plan_index, dataplane, family, profile, services, repetition, path)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.db.transaction(() => {
      this.db
        .prepare(`INSERT INTO campaign (id, backend, seed, definition, created_at) VALUES (?, ?, ?, ?, ?)`)
        .run(id, definition.backend, definition.seed, canonicalJson(definition), now.toISOString());
      for (const run of plan) {
        const k = run.key;
        insertRun.run(run.runId, id, run.index, k.dataplane, k.family, k.profile, k.services, k.repetition, pathOf(k));
      }
    })();
    return true;
  }

  campaignIds(): string[] {
    return (this.db.prepare(`SELECT id FROM campaign ORDER BY created_at, id`).all() as Row[]).map((r) => String(r.id));
  }

  campaign(id: string): StoredCampaign | undefined {
    const row = this.db.prepare(`SELECT * FROM campaign WHERE id = ?`).get(id) as Row | undefined;
    if (!row) return undefined;
    const plan = (
      this.db.prepare(`SELECT * FROM planned_run WHERE campaign_id = ? ORDER BY plan_index`).all(id) as Row[]
    ).map((r) => ({
      runId: String(r.run_id),
      index: Number(r.plan_index),
      key: {
        dataplane: r.dataplane as PlannedRun["key"]["dataplane"],
        family: r.family as PlannedRun["key"]["family"],
        profile: r.profile as PlannedRun["key"]["profile"],
        services: Number(r.services),
        repetition: Number(r.repetition),
        ...this.pathOfRow(r),
      },
    }));
    return {
      id,
      definition: JSON.parse(String(row.definition)) as CampaignDefinition,
      plan,
      createdAt: String(row.created_at),
    };
  }

  /**
   * Planned runs still to do, in plan order: those without a result, plus failed ones when
   * `retryFailed` is set. A run with status ok is never handed out again.
   */
  pendingRuns(campaignId: string, opts: { retryFailed?: boolean } = {}): PlannedRun[] {
    const done = new Map(
      (this.db.prepare(`SELECT run_id, status FROM run_result WHERE campaign_id = ?`).all(campaignId) as Row[]).map(
        (r) => [String(r.run_id), String(r.status)],
      ),
    );
    const c = this.campaign(campaignId);
    if (!c) throw new StoreError(`no campaign ${campaignId} in ${this.file}`);
    return c.plan.filter((run) => {
      const status = done.get(run.runId);
      return status === undefined || (opts.retryFailed === true && status === "failed");
    });
  }

  /**
   * Commits one finished run (its result, its failed attempts and its kept log) in one transaction.
   * An ok result is final: committing the same run again throws. A failed result may be replaced.
   */
  commitRun(
    campaignId: string,
    result: RunResult,
    extra: { attempts?: readonly FailedAttempt[]; logPath?: string; receiverLogPath?: string; now?: Date } = {},
  ): void {
    const cols = [
      "run_id",
      "campaign_id",
      "status",
      "failure",
      "retries",
      "started_at",
      "ended_at",
      "committed_at",
      "achieved_kbps",
      ...SUMMARY_FIELDS.map((f) => SUMMARY_COLUMNS[f]),
      "histogram",
      "log_path",
      "delay_source",
      "excluded_records",
      "receiver_log_path",
    ];
    const values = [
      result.runId,
      campaignId,
      result.status,
      result.failure ?? null,
      result.retries,
      result.startedAt,
      result.endedAt,
      (extra.now ?? new Date()).toISOString(),
      result.achievedKbps ?? null,
      ...SUMMARY_FIELDS.map((f) => result.summary?.[f] ?? null),
      result.histogram ?? null,
      extra.logPath ?? null,
      result.delaySource ?? null,
      result.excludedRecords ?? null,
      extra.receiverLogPath ?? null,
    ];
    this.db.transaction(() => {
      const planned = this.db
        .prepare(`SELECT * FROM planned_run WHERE run_id = ? AND campaign_id = ?`)
        .get(result.runId, campaignId) as Row | undefined;
      if (!planned) throw new StoreError(`run ${result.runId} is not planned in campaign ${campaignId}`);
      for (const k of ["dataplane", "family", "profile", "services", "repetition"] as const) {
        if (String(planned[k]) !== String(result[k])) {
          throw new StoreError(`run ${result.runId}: ${k} ${String(result[k])} differs from the plan (${String(planned[k])})`);
        }
      }
      if (String(planned.path) !== pathOf(result)) {
        throw new StoreError(`run ${result.runId}: path ${pathOf(result)} differs from the plan (${String(planned.path)})`);
      }
      const prior = this.db.prepare(`SELECT status FROM run_result WHERE run_id = ?`).get(result.runId) as Row | undefined;
      if (prior?.status === "ok") throw new StoreError(`run ${result.runId} already has an ok result; runs are never repeated`);
      if (prior) {
        this.db.prepare(`DELETE FROM run_delay_view WHERE run_id = ?`).run(result.runId);
        deleteRunHops(this.db, result.runId);
        deleteRunChanges(this.db, result.runId);
        this.db.prepare(`DELETE FROM run_result WHERE run_id = ?`).run(result.runId);
        this.db.prepare(`DELETE FROM run_attempt WHERE run_id = ?`).run(result.runId);
      }
      this.db
        .prepare(`INSERT INTO run_result (${cols.join(", ")}) VALUES (${cols.map(() => "?").join(", ")})`)
        .run(...values);
      const viewCols = ["run_id", "view", "excluded_records", ...SUMMARY_FIELDS.map((f) => SUMMARY_COLUMNS[f]), "histogram"];
      const insertView = this.db.prepare(`INSERT INTO run_delay_view (${viewCols.join(", ")}) VALUES (${viewCols.map(() => "?").join(", ")})`);
      for (const name of DELAY_VIEW_NAMES) {
        const view = result.delayViews?.[name];
        if (view === undefined) continue;
        insertView.run(result.runId, name, view.excludedRecords, ...SUMMARY_FIELDS.map((f) => view.summary[f]), view.histogram ?? null);
      }
      if (result.hops) insertRunHops(this.db, result.runId, result.hops);
      if (result.changes) insertRunChanges(this.db, result.runId, result.changes);
      const insertAttempt = this.db.prepare(
        `INSERT INTO run_attempt (run_id, attempt, started_at, ended_at, failure) VALUES (?, ?, ?, ?, ?)`,
      );
      for (const a of extra.attempts ?? []) insertAttempt.run(result.runId, a.attempt, a.startedAt, a.endedAt, a.failure);
    })();
  }

  /** Results of a campaign in plan order (the order the runs were planned to execute). */
  results(campaignId: string): RunResult[] {
    const rows = this.db
      .prepare(
        `SELECT p.dataplane, p.family, p.profile, p.services, p.repetition${this.schemaVersion >= 6 ? ", p.path" : ""}, r.*
         FROM run_result r JOIN planned_run p ON p.run_id = r.run_id
         WHERE r.campaign_id = ? ORDER BY p.plan_index`,
      )
      .all(campaignId) as Row[];
    const views = new Map<string, Partial<Record<DelayViewName, RunDelayView>>>();
    // Schema 2 added the delay views, schema 3 the hop tables: an older store read as it is has neither.
    const viewRows =
      this.schemaVersion >= 2
        ? (this.db.prepare(`SELECT v.* FROM run_delay_view v JOIN run_result r ON r.run_id = v.run_id WHERE r.campaign_id = ?`).all(campaignId) as Row[])
        : [];
    for (const v of viewRows) {
      const of = views.get(String(v.run_id)) ?? {};
      of[v.view as DelayViewName] = {
        summary: summaryOf(v),
        excludedRecords: Number(v.excluded_records),
        ...(v.histogram !== null ? { histogram: String(v.histogram) } : {}),
      };
      views.set(String(v.run_id), of);
    }
    const hops = this.schemaVersion >= 3 ? readRunHops(this.db, campaignId) : new Map<string, RunHops>();
    const changes = this.schemaVersion >= 5 ? readRunChanges(this.db, campaignId) : new Map<string, ChangeMeasurement[]>();
    return rows.map((r) => {
      const summary = r.packets === null ? undefined : summaryOf(r);
      const runHops = hops.get(String(r.run_id));
      const delayViews = views.get(String(r.run_id));
      return {
        runId: String(r.run_id),
        dataplane: r.dataplane as RunResult["dataplane"],
        family: r.family as RunResult["family"],
        profile: r.profile as RunResult["profile"],
        services: Number(r.services),
        repetition: Number(r.repetition),
        ...this.pathOfRow(r),
        status: r.status as RunResult["status"],
        ...(r.failure !== null ? { failure: String(r.failure) } : {}),
        ...(summary ? { summary } : {}),
        ...(r.achieved_kbps !== null ? { achievedKbps: Number(r.achieved_kbps) } : {}),
        ...(r.histogram !== null ? { histogram: String(r.histogram) } : {}),
        ...(r.delay_source != null ? { delaySource: r.delay_source as NonNullable<RunResult["delaySource"]> } : {}),
        ...(r.excluded_records != null ? { excludedRecords: Number(r.excluded_records) } : {}),
        ...(delayViews ? { delayViews } : {}),
        ...(runHops ? { hops: runHops } : {}),
        ...(changes.has(String(r.run_id)) ? { changes: changes.get(String(r.run_id))! } : {}),
        retries: Number(r.retries),
        startedAt: String(r.started_at),
        endedAt: String(r.ended_at),
      };
    });
  }

  /** Commit time and kept-log paths of each finished run, by run id. */
  runRecords(campaignId: string): Map<string, { committedAt: string; logPath?: string; receiverLogPath?: string }> {
    const rows = this.db
      .prepare(`SELECT run_id, committed_at, log_path${this.schemaVersion >= 2 ? ", receiver_log_path" : ""} FROM run_result WHERE campaign_id = ?`)
      .all(campaignId) as Row[];
    return new Map(
      rows.map((r) => [
        String(r.run_id),
        {
          committedAt: String(r.committed_at),
          ...(r.log_path !== null ? { logPath: String(r.log_path) } : {}),
          ...(r.receiver_log_path != null ? { receiverLogPath: String(r.receiver_log_path) } : {}),
        },
      ]),
    );
  }

  attempts(runId: string): FailedAttempt[] {
    return (this.db.prepare(`SELECT * FROM run_attempt WHERE run_id = ? ORDER BY attempt`).all(runId) as Row[]).map((r) => ({
      attempt: Number(r.attempt),
      startedAt: String(r.started_at),
      endedAt: String(r.ended_at),
      failure: String(r.failure),
    }));
  }

  recordEvent(campaignId: string, event: CampaignEventRow): void {
    this.db
      .prepare(`INSERT INTO campaign_event (campaign_id, at, kind, run_id, detail) VALUES (?, ?, ?, ?, ?)`)
      .run(campaignId, event.at, event.kind, event.runId ?? null, event.detail ?? null);
  }

  events(campaignId: string): CampaignEventRow[] {
    return (this.db.prepare(`SELECT * FROM campaign_event WHERE campaign_id = ? ORDER BY id`).all(campaignId) as Row[]).map(
      (r) => ({
        at: String(r.at),
        kind: String(r.kind),
        ...(r.run_id !== null ? { runId: String(r.run_id) } : {}),
        ...(r.detail !== null ? { detail: String(r.detail) } : {}),
      }),
    );
  }

  /** Keeps when a prepared step became measurable: one row per family the dataplane reported. */
  recordStep(campaignId: string, step: { dataplane: Dataplane; services: number }, readiness: StepReadiness, preparedAt: Date): void {
    const insert = this.db.prepare(
      `INSERT INTO step_record (campaign_id, dataplane, services, family, prepared_at, endpoints_ready_after_s, programmed_after_s, programmed_services)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.db.transaction(() => {
      for (const [family, held] of Object.entries(readiness.programmedServices)) {
        insert.run(campaignId, step.dataplane, step.services, family, preparedAt.toISOString(), readiness.endpointsReadyAfterS, readiness.programmedAfterS, held);
      }
    })();
  }

  /** Every recorded step of a campaign, in the order they were prepared, one entry per preparation. */
  steps(campaignId: string): StepRecord[] {
    // A store from before schema 4 kept no steps; read as it is, it has none.
    if (this.schemaVersion < 4) return [];
    const rows = this.db.prepare(`SELECT * FROM step_record WHERE campaign_id = ? ORDER BY id`).all(campaignId) as Row[];
    const byPreparation = new Map<string, StepRecord & { programmedServices: Partial<Record<Family, number>> }>();
    for (const r of rows) {
      const key = `${String(r.dataplane)} ${Number(r.services)} ${String(r.prepared_at)}`;
      const record = byPreparation.get(key) ?? {
        dataplane: String(r.dataplane) as Dataplane,
        services: Number(r.services),
        preparedAt: String(r.prepared_at),
        endpointsReadyAfterS: Number(r.endpoints_ready_after_s),
        programmedAfterS: Number(r.programmed_after_s),
        programmedServices: {},
      };
      record.programmedServices[String(r.family) as Family] = Number(r.programmed_services);
      byPreparation.set(key, record);
    }
    return [...byPreparation.values()];
  }
}
