// The programming profile's pipeline without a kernel: the probe's lines, the runner's programming
// runs with a scripted backend (judged, retried, committed, refused without a ProgrammingBackend),
// the store's changes (schema 5, an older store upgraded), and the report's section and CSVs.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { EventEmitter } from "node:events";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { judgeChanges, runCampaign } from "../../measure/campaign.js";
import { campaignIdFor, planCampaign, type CampaignDefinition } from "../../measure/campaign-plan.js";
import { parseProbeLine, probeArgs, ProbeSession } from "../../measure/programming-probe.js";
import { changeCells, growthFits, powerLawExponent, programmingCsv, programmingReport } from "../../measure/report-programming.js";
import { buildReport } from "../../measure/report.js";
import { ResultStore, SCHEMA_VERSION } from "../../measure/store.js";
import type { Backend, ChangeMeasurement, FlowOutcome, ProgrammingSettings, RunKey, RunProfile, RunResult } from "../../measure/types.js";
import { scenarioSchema } from "../../scenario/schema.js";
import { campaignTraffic } from "../../measure/connection-setup.js";

const SETTINGS: ProgrammingSettings = { probesPerSecond: 1000, addMany: 100, confirmMs: 50, timeoutS: 60, coldStart: true };

/** A run's changes with times that grow with the Service count: full-sync and cold start as N^1.5 for nftables, N for the others. */
function changesOf(key: Pick<RunKey, "dataplane" | "services">, jitter = 1): ChangeMeasurement[] {
  const n = key.services;
  const heavy = key.dataplane === "nftables" ? (n / 1000) ** 1.5 : n / 1000;
  const made: [ChangeMeasurement["change"], number, boolean][] = [
    ["remove-one", 0.002, true],
    ["add-one", 0.003, true],
    ["remove-one", 0.002, true],
    ["add-100", 0.01, true],
    ["full-sync", heavy, true],
    ["cold-start", heavy, false],
    ...(key.dataplane === "nftables" ? ([["cold-start-split", n / 1000, false]] as [ChangeMeasurement["change"], number, boolean][]) : []),
  ];
  return made.map(([change, commit, probed], sequence) => ({
    change,
    sequence,
    services: n,
    syncS: commit * 1.2 * jitter,
    commitS: commit * jitter,
    writes: 1,
    ...(probed ? { programmedS: commit * 1.3 * jitter, probes: { sent: 100, flaps: 0, timeouts: 0 } } : {}),
  }));
}

describe("the probe's lines", () => {
  it("parses each line and refuses anything else", () => {
    expect(parseProbeLine("ready 10")).toEqual({ kind: "ready", sent: 10 });
    expect(parseProbeLine("changed 123456789012 123456789999")).toEqual({ kind: "changed", sentNs: 123456789012n, seenNs: 123456789999n });
    expect(parseProbeLine("done 500 1 2 1524")).toEqual({ kind: "done", sent: 500, flaps: 1, timeouts: 2, nextPort: 1524 });
    expect(parseProbeLine("gave-up 10000 3 11024")).toEqual({ kind: "gave-up", sent: 10000, timeouts: 3, nextPort: 11024 });
    expect(() => parseProbeLine("changed x y")).toThrow(/"changed x y" is not one of its lines/);
  });

  it("builds its arguments and refuses a rate below one a second", () => {
    expect(probeArgs({ address: "198.18.1.2", port: 31764, expect: "refused" }, { rate: 1000, startPort: 2000, confirmMs: 50, maxS: 30 })).toEqual([
      "probe", "198.18.1.2", "31764", "1000", "1024", "60999", "2000", "refused", "200", "50", "30",
    ]);
    expect(() => probeArgs({ address: "x", port: 1, expect: "answered" }, { rate: 0, startPort: 1024, confirmMs: 1, maxS: 1 })).toThrow(/probesPerSecond: 0 is not accepted/);
  });

  const fakeProcess = () => {
    const events = new EventEmitter();
    const stdout = new PassThrough();
    const stdin = new PassThrough();
    return { stdout, stdin, stderr: new PassThrough(), once: (e: "exit", f: (code: number | null) => void) => events.once(e, f), exit: (code: number) => events.emit("exit", code) };
  };

  it("asks the probe for its clock to mark where a change starts", async () => {
    const p = fakeProcess();
    const session = new ProbeSession(p);
    const asked = new Promise<string>((resolve) => p.stdin.once("data", (d: Buffer) => resolve(d.toString())));
    const mark = session.mark();
    expect(await asked).toBe("mark\n");
    p.stdout.write("mark 424242\n");
    expect(await mark).toBe(424242n);
  });

  it("reads a session: ready, then the change, then done", async () => {
    const p = fakeProcess();
    const session = new ProbeSession(p);
    p.stdout.write("ready 10\n");
    await session.ready;
    p.stdout.write("changed 1000 1500\ndone 80 0 0 1104\n");
    expect(await session.result).toEqual({ changed: { sentNs: 1000n, seenNs: 1500n }, sent: 80, flaps: 0, timeouts: 0, nextPort: 1104 });
  });

  it("fails a session whose state before never held, or whose probe dies", async () => {
    const never = fakeProcess();
    const a = new ProbeSession(never);
    never.stdout.write("gave-up 10000 0 11024\n");
    await expect(a.ready).rejects.toThrow(/gave up before the state before the change held/);
    const dies = fakeProcess();
    const b = new ProbeSession(dies);
    dies.stderr.write("listen: boom\n");
    await new Promise((r) => setImmediate(r));
    dies.exit(1);
    dies.stdout.end();
    await expect(b.result).rejects.toThrow(/exited \(1\) before it was done: listen: boom/);
  });

  it("reads a probe's last lines that come after its exit: a probe that printed done has finished", async () => {
    const p = fakeProcess();
    const session = new ProbeSession(p);
    p.stdout.write("ready 10\n");
    await session.ready;
    p.exit(0);
    await new Promise((r) => setImmediate(r));
    p.stdout.end("changed 1000 1500\ndone 80 0 0 1104\n");
    expect(await session.result).toEqual({ changed: { sentNs: 1000n, seenNs: 1500n }, sent: 80, flaps: 0, timeouts: 0, nextPort: 1104 });
  });
});

describe("judgeChanges", () => {
  it("accepts a run with every change seen, and names what is missing or unseen", () => {
    expect(judgeChanges(changesOf({ dataplane: "iptables", services: 1000 }))).toBeUndefined();
    expect(judgeChanges(changesOf({ dataplane: "iptables", services: 1000 }).filter((c) => c.change !== "add-100"))).toBe("programming run without add-100");
    const unseen = changesOf({ dataplane: "iptables", services: 1000 }).map((c) => (c.change === "full-sync" ? { ...c, programmedS: undefined } : c));
    expect(judgeChanges(unseen as ChangeMeasurement[])).toBe("programming run: no probe saw full-sync");
  });
});

describe("the programming report", () => {
  const results: RunResult[] = [];
  for (const dataplane of ["iptables", "nftables", "ebpf"] as const) {
    for (const services of [1, 1000, 5000, 10000]) {
      for (const repetition of [0, 1]) {
        results.push({
          dataplane, family: "ipv4", profile: "programming", services, repetition, runId: `${dataplane}-${services}-${repetition}`, status: "ok", retries: 0,
          startedAt: "2026-01-01T00:00:00Z", endedAt: "2026-01-01T00:00:01Z", changes: changesOf({ dataplane, services }, repetition ? 1.1 : 0.9),
        });
      }
    }
  }

  it("fits the exponent of a power law", () => {
    expect(powerLawExponent([{ n: 1000, t: 1 }, { n: 4000, t: 8 }])).toBeCloseTo(1.5, 10);
    expect(powerLawExponent([{ n: 10, t: 1 }])).toBeNaN();
  });

  it("groups the changes per cell with p50, p90, p99, mean and max; remove-one counts twice a run", () => {
    const cells = changeCells(results);
    const removes = cells.find((c) => c.dataplane === "ebpf" && c.services === 1000 && c.change === "remove-one")!;
    expect(removes.n).toBe(4);
    const full = cells.find((c) => c.dataplane === "nftables" && c.services === 10000 && c.change === "full-sync")!;
    expect(full.statistics.commitS!.mean).toBeCloseTo(10 ** 1.5, 6);
    expect(full.statistics.commitS!.max).toBeCloseTo(1.1 * 10 ** 1.5, 6);
    expect(cells.find((c) => c.change === "cold-start")!.statistics.programmedS).toBeUndefined();
  });

  it("fits full-sync's growth over the counts from 100 Services on", () => {
    const fits = growthFits(changeCells(results), "full-sync", "commitS");
    expect(fits.find((f) => f.dataplane === "nftables")!.exponent).toBeCloseTo(1.5, 6);
    expect(fits.find((f) => f.dataplane === "iptables")!.exponent).toBeCloseTo(1, 6);
    expect(fits[0]!.services).toEqual([1000, 5000, 10000]);
  });

  it("writes programming.csv with the four changes and five statistics, the commit CSV with the cold starts too", () => {
    const cells = changeCells(results);
    const lines = programmingCsv(cells, "programmedS", String).trim().split("\n");
    expect(lines[0]).toBe("dataplane,family,services,change,statistic,valueS");
    expect(new Set(lines.slice(1).map((l) => l.split(",")[3]))).toEqual(new Set(["add-one", "remove-one", "add-100", "full-sync"]));
    expect(new Set(lines.slice(1).map((l) => l.split(",")[4]))).toEqual(new Set(["p50", "p90", "p99", "mean", "max"]));
    expect(lines).toHaveLength(1 + 3 * 4 * 4 * 5);
    expect(programmingCsv(cells, "commitS", String)).toContain("nftables,ipv4,10000,cold-start-split,p50,");
  });

  it("says whether splitting the cold start removes the super-linear growth, and sets full-sync beside add-one at the largest step", () => {
    const md = programmingReport(results, { fmt: (x) => String(x), number: String })!.markdown.join("\n");
    expect(md).toContain("## Programming latency");
    expect(md).toMatch(/nftables ipv4: one transaction k = 1\.[45]\d*, split k = [01]\.\d+ .*\*\*The split removes the super-linear growth on this kernel\.\*\*/);
    expect(md).toMatch(/\*\*At 10000 Services\*\*, full-sync against add-one/);
  });

  it("makes the report of a campaign with programming runs only", () => {
    const report = buildReport(results, { seed: 1, resamples: 2000, baseline: "iptables" });
    expect(report.tables.map((t) => t.file)).toEqual(expect.arrayContaining(["programming.csv", "programming-commit.csv"]));
    expect(report.figures.map((f) => f.file)).toEqual(expect.arrayContaining(["programming-latency-ipv4.svg", "programming-commit-ipv4.svg"]));
    expect(report.markdown).toContain("## Programming latency");
    expect(report.warnings.join("\n")).not.toMatch(/without a decoded summary/);
  });
});

describe("programming runs in the campaign runner and the store", () => {
  const def: CampaignDefinition = {
    backend: "fake",
    dataplanes: ["iptables", "nftables"],
    families: ["ipv4"],
    profiles: ["programming"],
    services: [1, 1000],
    runs: 2,
    flowSeconds: 1,
    linkMbps: 0,
    seed: 1,
    order: { randomize: false, interleave: 0 },
    traffic: campaignTraffic(scenarioSchema.shape.traffic.parse(undefined)),
    programming: SETTINGS,
  };
  let dir: string;
  let store: ResultStore;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "programming-test-"));
    store = ResultStore.open(path.join(dir, "results.db"));
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  class ProgrammingFake implements Backend {
    readonly name = "fake";
    profiles: readonly RunProfile[] = ["programming"];
    readonly calls: string[] = [];
    failures = 0;
    programming: Backend["programming"] = {
      runChanges: async (key: RunKey, settings: ProgrammingSettings) => {
        this.calls.push(`changes ${key.dataplane}/${key.services}/${key.repetition} ${settings.probesPerSecond}`);
        if (this.failures-- > 0) throw new Error("no probe through 198.18.1.2:31764 was answered");
        return changesOf(key);
      },
    };
    async prepare(step: { dataplane: string; services: number }) {
      this.calls.push(`prepare ${step.dataplane}/${step.services}`);
      return undefined;
    }
    async runFlow(): Promise<FlowOutcome> {
      throw new Error("no flow in a programming campaign");
    }
    async collectLog(): Promise<never> {
      throw new Error("no log");
    }
    async receiverAlive() {
      return true;
    }
    async restartReceiver() {}
    async teardown() {}
  }

  const decoder = { decode: async () => Promise.reject(new Error("nothing to decode")) };

  it("runs every change of every run through the backend, retries a failed run and stores the changes", async () => {
    const id = campaignIdFor(def);
    store.ensureCampaign(id, def, planCampaign(id, def));
    const backend = new ProgrammingFake();
    backend.failures = 1;
    const summary = await runCampaign({ store, campaignId: id, backend, decoder, retries: 1 });
    expect(summary).toMatchObject({ total: 8, done: 8, failed: 0 });
    expect(backend.calls.filter((c) => c.startsWith("changes"))).toHaveLength(9);
    const results = store.results(id);
    expect(results.every((r) => r.status === "ok" && r.changes!.length >= 6)).toBe(true);
    expect(results.find((r) => r.dataplane === "nftables")!.changes).toEqual(changesOf({ dataplane: "nftables", services: results.find((r) => r.dataplane === "nftables")!.services }));
    expect(store.attempts(results[0]!.runId)[0]!.failure).toMatch(/^programming run failed: no probe through/);
  });

  it("refuses a campaign with the programming profile on a backend that does not measure it, or lists it without offering Service changes", async () => {
    const id = campaignIdFor(def);
    store.ensureCampaign(id, def, planCampaign(id, def));
    const unlisted = new ProgrammingFake();
    unlisted.profiles = ["throughput", "latency", "setup"];
    await expect(runCampaign({ store, campaignId: id, backend: unlisted, decoder, retries: 0 })).rejects.toThrow(
      /plans profile\(s\) programming, which backend fake does not measure; accepted: throughput, latency, setup/,
    );
    const without = new ProgrammingFake();
    without.programming = undefined;
    await expect(runCampaign({ store, campaignId: id, backend: without, decoder, retries: 0 })).rejects.toThrow(
      /backend fake lists the programming profile but offers no Service changes/,
    );
    expect([...unlisted.calls, ...without.calls]).toEqual([]);
  });

  it.each([
    // A schema-4 store has the steps but not the changes; a schema-3 store has neither.
    { version: 4, dropped: ["run_change_metric", "run_change"] },
    { version: 3, dropped: ["run_change_metric", "run_change", "step_record"] },
  ])("upgrades a schema-$version store in place to the current schema, with the changes table", ({ version, dropped }) => {
    expect(SCHEMA_VERSION).toBe(7);
    const file = path.join(dir, "old.db");
    ResultStore.open(file).close();
    const raw = new Database(file);
    for (const table of dropped) raw.exec(`DROP TABLE ${table}`);
    // Nor the hop check's sample columns (schema 7).
    for (const column of ["sample_every", "unsampled_stamps"]) raw.exec(`ALTER TABLE run_hop_check DROP COLUMN ${column}`);
    raw.pragma(`user_version = ${version}`);
    raw.close();
    const upgraded = ResultStore.open(file);
    const tables = (upgraded as unknown as { db: Database.Database }).db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all();
    expect(tables).toEqual(expect.arrayContaining(["run_change", "run_change_metric", "step_record"]));
    expect(upgraded.settings().schemaVersion).toBe(SCHEMA_VERSION);
    const id = campaignIdFor(def);
    const plan = planCampaign(id, def);
    upgraded.ensureCampaign(id, def, plan);
    const run = plan[0]!;
    const result: RunResult = { ...run.key, runId: run.runId, status: "ok", retries: 0, startedAt: "a", endedAt: "b", changes: changesOf(run.key) };
    upgraded.commitRun(id, result);
    expect(upgraded.results(id)).toEqual([result]);
    upgraded.close();
  });
});
