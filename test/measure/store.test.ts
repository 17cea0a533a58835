import { campaignTraffic } from "../../measure/connection-setup.js";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { campaignIdFor, planCampaign, type CampaignDefinition } from "../../measure/campaign-plan.js";
import { ResultStore, SCHEMA_VERSION } from "../../measure/store.js";
import type { FlowSummary, RunResult } from "../../measure/types.js";
import { scenarioSchema } from "../../scenario/schema.js";
import { SCHEMA_1_STORE, SCHEMA_5_STORE } from "../fixtures/stores.js";

const storeModule = fileURLToPath(new URL("../../measure/store.ts", import.meta.url));
const planModule = fileURLToPath(new URL("../../measure/campaign-plan.ts", import.meta.url));

const def: CampaignDefinition = {
  backend: "loopback",
  dataplanes: ["iptables", "ebpf"],
  families: ["ipv4"],
  profiles: ["latency"],
  services: [1, 10],
  runs: 2,
  flowSeconds: 1,
  linkMbps: 0,
  seed: 3,
  order: { randomize: true, interleave: 0 },
  traffic: campaignTraffic(scenarioSchema.shape.traffic.parse(undefined)),
};

const summary: FlowSummary = {
  packets: 1000,
  bytes: 512000,
  durationS: 0.999,
  delayMinS: 0.00001,
  delayMaxS: 0.0004,
  delayMeanS: 0.00004,
  delayStdS: 0.00002,
  jitterS: 0.000005,
  bitrateKbps: 4100.5,
  packetRate: 1001.2,
  dropped: 2,
  p50S: 0.00003,
  p90S: 0.00006,
  p99S: 0.0002,
  p999S: 0.00035,
};

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "store-test-"));
  file = path.join(dir, "results.db");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function okResult(run: ReturnType<typeof planCampaign>[number], startedAt = "2025-01-01T00:00:00.000Z"): RunResult {
  return {
    ...run.key,
    runId: run.runId,
    status: "ok",
    summary,
    achievedKbps: 4100.5,
    histogram: "HISTFAAAACl4nJNpmSzMwMDAxQABzFCaEUzOmNZg/wEi0NTMyMjc2NTM0MzYzMTU1gbSAwAlZQUi",
    retries: 1,
    startedAt,
    endedAt: "2025-01-01T00:00:01.000Z",
  };
}

describe("ResultStore", () => {
  it("opens in WAL mode with synchronous FULL and a versioned schema", () => {
    const store = ResultStore.open(file);
    expect(store.settings()).toEqual({ journalMode: "wal", synchronous: 2, schemaVersion: SCHEMA_VERSION });
    store.close();
  });

  it("refuses a database written by a newer schema", () => {
    ResultStore.open(file).close();
    const raw = new Database(file);
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    expect(() => ResultStore.open(file)).toThrow(`schema version ${SCHEMA_VERSION + 1}; this testbed reads versions 1 to ${SCHEMA_VERSION}`);
  });

  it("stores a campaign's definition and plan once, and refuses a different definition under the same id", () => {
    const store = ResultStore.open(file);
    const id = campaignIdFor(def);
    const plan = planCampaign(id, def);
    expect(store.ensureCampaign(id, def, plan)).toBe(true);
    expect(store.ensureCampaign(id, def, plan)).toBe(false);
    const stored = store.campaign(id)!;
    expect(stored.definition).toEqual(def);
    expect(stored.plan).toEqual(plan);
    expect(store.campaignIds()).toEqual([id]);
    expect(() => store.ensureCampaign(id, { ...def, runs: 3 }, plan)).toThrow(/was started with a different definition/);
    store.close();
  });

  it("commits each run at once: another connection sees it, all fields round-trip, results come in plan order", () => {
    const store = ResultStore.open(file);
    const id = campaignIdFor(def);
    const plan = planCampaign(id, def);
    store.ensureCampaign(id, def, plan);
    const reader = ResultStore.open(file);
    expect(reader.results(id)).toEqual([]);

    const [first, second, third] = [plan[2]!, plan[0]!, plan[5]!];
    store.commitRun(id, okResult(first), {
      attempts: [{ attempt: 1, startedAt: "2025-01-01T00:00:00.000Z", endedAt: "2025-01-01T00:00:00.500Z", failure: "flow failed: refused" }],
      logPath: "results.db.logs/x/run.log",
    });
    expect(reader.results(id)).toEqual([okResult(first)]);
    expect(reader.attempts(first.runId)).toEqual([
      { attempt: 1, startedAt: "2025-01-01T00:00:00.000Z", endedAt: "2025-01-01T00:00:00.500Z", failure: "flow failed: refused" },
    ]);
    expect(reader.runRecords(id).get(first.runId)?.logPath).toBe("results.db.logs/x/run.log");

    const failed: RunResult = {
      ...second.key,
      runId: second.runId,
      status: "failed",
      failure: "too few records",
      retries: 2,
      startedAt: "2025-01-01T00:01:00.000Z",
      endedAt: "2025-01-01T00:01:01.000Z",
    };
    store.commitRun(id, failed);
    store.commitRun(id, okResult(third));
    expect(reader.results(id).map((r) => r.runId)).toEqual([second.runId, first.runId, third.runId]);
    expect(reader.results(id)[0]).toEqual(failed);
    store.close();
    reader.close();
  });

  it("keeps a round trip's delay source, its other readings and its receiver log, and replaces them with a failed run", () => {
    const store = ResultStore.open(file);
    const id = campaignIdFor(def);
    const plan = planCampaign(id, def);
    store.ensureCampaign(id, def, plan);
    const meter = { ...summary, delayMaxS: 1.0004, delayStdS: 0.03 };
    const paired: RunResult = {
      ...okResult(plan[0]!),
      delaySource: "paired",
      excludedRecords: 0,
      delayViews: {
        itgdec: { summary: meter, excludedRecords: 0, histogram: "HISTFAAAACl4nJNpmSzMwMDAxQABzFCaEUzOmNZg/wEi0NTMyMjc2NTM0MzYzMTU1gbSAwAlZQUi" },
        sender: { summary: { ...summary, delayMaxS: 0.0003, delayMinS: NaN }, excludedRecords: 3 },
        oneWay: { summary: { ...summary, delayMeanS: 0.00002 }, excludedRecords: 0 },
      },
    };
    store.commitRun(id, paired, { logPath: "r.logs/a.slog", receiverLogPath: "r.logs/a.receiver.rlog" });
    expect(store.results(id)).toEqual([paired]);
    expect(store.runRecords(id).get(plan[0]!.runId)).toMatchObject({ logPath: "r.logs/a.slog", receiverLogPath: "r.logs/a.receiver.rlog" });
    // A failed result with readings, replaced by an ok one without: no reading of the failed attempt survives.
    store.commitRun(id, { ...paired, runId: plan[1]!.runId, ...plan[1]!.key, status: "failed", failure: "unpaired" });
    store.commitRun(id, okResult(plan[1]!));
    expect(store.results(id)[1]).toEqual(okResult(plan[1]!));
    store.close();
  });

  it("upgrades a schema-1 store in place: its runs read back unchanged and without a delay source, new runs keep theirs", () => {
    const raw = new Database(file);
    raw.exec(readFileSync(SCHEMA_1_STORE, "utf8"));
    const before = raw.prepare(`SELECT * FROM run_result ORDER BY run_id`).all() as Record<string, unknown>[];
    raw.close();
    expect(before).toHaveLength(24);
    const store = ResultStore.open(file);
    expect(store.settings().schemaVersion).toBe(SCHEMA_VERSION);
    const [id] = store.campaignIds();
    const results = store.results(id!);
    expect(results).toHaveLength(24);
    for (const r of results) {
      const row = before.find((b) => b.run_id === r.runId)!;
      expect([r.summary!.packets, r.summary!.delayMaxS, r.summary!.bitrateKbps]).toEqual([row.packets, row.delay_max_s, row.bitrate_kbps]);
      expect([r.delaySource, r.excludedRecords, r.delayViews]).toEqual([undefined, undefined, undefined]);
    }
    store.close();
    // Opened again, nothing more to do; the old rows are untouched by the upgrade, and new runs keep their readings.
    const again = ResultStore.open(file);
    expect(again.results(id!)).toEqual(results);
    const newId = campaignIdFor(def);
    const plan = planCampaign(newId, def);
    again.ensureCampaign(newId, def, plan);
    const paired: RunResult = { ...okResult(plan[0]!), delaySource: "paired", excludedRecords: 0, delayViews: { sender: { summary, excludedRecords: 2 } } };
    again.commitRun(newId, paired, { receiverLogPath: "x.receiver.rlog" });
    expect(again.results(newId)).toEqual([paired]);
    expect(again.runRecords(newId).get(plan[0]!.runId)?.receiverLogPath).toBe("x.receiver.rlog");
    again.close();
    const after = new Database(file, { readonly: true });
    const rows = after.prepare(`SELECT * FROM run_result WHERE campaign_id = ? ORDER BY run_id`).all(id) as Record<string, unknown>[];
    expect(rows.map((r) => Object.fromEntries(Object.keys(before[0]!).map((k) => [k, r[k]])))).toEqual(before);
    after.close();
  });

  it("upgrades a schema-5 store in place to paths: its runs keep their ids and results and read as nodeport-local; a campaign of several paths then fits", () => {
    const raw = new Database(file);
    raw.exec(readFileSync(SCHEMA_5_STORE, "utf8"));
    const plannedBefore = raw.prepare(`SELECT * FROM planned_run ORDER BY run_id`).all() as Record<string, unknown>[];
    const resultsBefore = raw.prepare(`SELECT * FROM run_result ORDER BY run_id`).all();
    raw.close();
    expect(plannedBefore).toHaveLength(16);
    const read = ResultStore.openReadOnly(file);
    expect(read.schemaVersion).toBe(5);
    const [id] = read.campaignIds();
    const asItWas = read.results(id!);
    read.close();
    expect(asItWas.every((r) => r.path === undefined)).toBe(true);

    const upgrades: unknown[] = [];
    const store = ResultStore.open(file, { onUpgrade: (u) => upgrades.push(u) });
    expect(upgrades).toEqual([{ file, from: 5, to: SCHEMA_VERSION }]);
    expect(store.settings()).toMatchObject({ schemaVersion: SCHEMA_VERSION });
    // The same runs under the same ids, with the same results, and the plan is the one the campaign's definition still gives.
    expect(store.results(id!)).toEqual(asItWas);
    const stored = store.campaign(id!)!;
    expect(stored.plan).toEqual(planCampaign(id!, stored.definition));
    expect(store.steps(id!)).toHaveLength(1);
    store.close();
    const after = new Database(file, { readonly: true });
    expect(after.prepare(`SELECT DISTINCT path FROM planned_run`).pluck().all()).toEqual(["nodeport-local"]);
    const plannedAfter = after.prepare(`SELECT * FROM planned_run ORDER BY run_id`).all() as Record<string, unknown>[];
    expect(plannedAfter.map(({ path: p, ...rest }) => rest)).toEqual(plannedBefore);
    expect(after.prepare(`SELECT * FROM run_result ORDER BY run_id`).all()).toEqual(resultsBefore);
    expect(after.pragma("foreign_key_check")).toEqual([]);
    // The results still refer to the planned runs: a result of a run that is not planned is refused.
    expect(after.prepare(`SELECT sql FROM sqlite_master WHERE name = 'run_result'`).pluck().get()).toContain("REFERENCES planned_run(run_id)");
    after.close();

    // A campaign of several paths in the upgraded store: the same key on two paths is two runs.
    const again = ResultStore.open(file);
    const multi: CampaignDefinition = { ...def, paths: ["nodeport-local", "clusterip"] };
    const multiId = campaignIdFor(multi);
    const plan = planCampaign(multiId, multi);
    again.ensureCampaign(multiId, multi, plan);
    for (const run of plan) again.commitRun(multiId, okResult(run));
    const results = again.results(multiId);
    expect(results.filter((r) => r.path === "clusterip")).toHaveLength(plan.length / 2);
    expect(results.filter((r) => r.path === undefined)).toHaveLength(plan.length / 2);
    expect(() => again.commitRun("loopback-nope", okResult(plan[0]!))).toThrow(/not planned/);
    again.close();
  });

  it("keeps each run's path: runs of nodeport-local keep the ids they had before paths, the others differ by path alone, and a result on another path than planned is refused", () => {
    const store = ResultStore.open(file);
    const single = planCampaign(campaignIdFor(def), def);
    // The paper's path named explicitly is the same campaign, the same runs: a key never names nodeport-local.
    expect(planCampaign(campaignIdFor(def), { ...def, paths: ["nodeport-local"] })).toEqual(single);
    expect(single.every((r) => !("path" in r.key))).toBe(true);
    const multi: CampaignDefinition = { ...def, paths: ["nodeport-local", "nodeport-remote", "clusterip"] };
    const id = campaignIdFor(multi);
    const plan = planCampaign(id, multi);
    expect(plan).toHaveLength(single.length * 3);
    expect(new Set(plan.map((r) => r.runId)).size).toBe(plan.length);
    store.ensureCampaign(id, multi, plan);
    const remote = plan.find((r) => r.key.path === "nodeport-remote")!;
    const { path: _, ...localKey } = remote.key;
    const local = plan.find((r) => JSON.stringify({ ...r.key }) === JSON.stringify(localKey))!;
    expect(local.runId).not.toBe(remote.runId);
    expect(() => store.commitRun(id, { ...okResult(remote), path: "clusterip" })).toThrow(`run ${remote.runId}: path clusterip differs from the plan (nodeport-remote)`);
    store.commitRun(id, okResult(remote));
    expect(store.results(id)).toEqual([okResult(remote)]);
    expect(store.campaign(id)!.plan).toEqual(plan);
    store.close();
  });

  it("hands out only unfinished runs, in plan order, and never accepts an ok run twice", () => {
    const store = ResultStore.open(file);
    const id = campaignIdFor(def);
    const plan = planCampaign(id, def);
    store.ensureCampaign(id, def, plan);
    store.commitRun(id, okResult(plan[1]!));
    store.commitRun(id, { ...okResult(plan[3]!), status: "failed", failure: "rate below target" });
    expect(store.pendingRuns(id).map((r) => r.index)).toEqual([0, 2, 4, 5, 6, 7]);
    expect(store.pendingRuns(id, { retryFailed: true }).map((r) => r.index)).toEqual([0, 2, 3, 4, 5, 6, 7]);
    expect(() => store.commitRun(id, okResult(plan[1]!))).toThrow(/already has an ok result/);
    // A failed run may be replaced when retried later.
    store.commitRun(id, okResult(plan[3]!));
    expect(store.results(id).find((r) => r.runId === plan[3]!.runId)?.status).toBe("ok");
    // A result must match its planned key.
    expect(() => store.commitRun(id, { ...okResult(plan[4]!), services: 999 })).toThrow(/services 999 differs from the plan/);
    store.close();
  });

  it("keeps a committed run when the writing process is killed right after the commit", async () => {
    const id = campaignIdFor(def);
    const plan = planCampaign(id, def);
    const setup = ResultStore.open(file);
    setup.ensureCampaign(id, def, plan);
    setup.close();
    const result = okResult(plan[0]!);
    // The child commits, says so, then hangs with the database open until SIGKILL.
    const script = `
      const { ResultStore } = await import(${JSON.stringify(storeModule)});
      await import(${JSON.stringify(planModule)});
      const s = ResultStore.open(${JSON.stringify(file)});
      s.commitRun(${JSON.stringify(id)}, ${JSON.stringify(result)});
      process.stdout.write("committed\\n");
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (d: Buffer) => (d.toString().includes("committed") ? resolve() : undefined));
      child.on("exit", (code) => reject(new Error(`child exited ${code} before committing`)));
    });
    const exited = new Promise((r) => child.on("exit", r));
    child.kill("SIGKILL");
    await exited;
    const store = ResultStore.open(file);
    expect(store.results(id)).toEqual([result]);
    expect(store.pendingRuns(id)).toHaveLength(plan.length - 1);
    store.close();
  });
});
