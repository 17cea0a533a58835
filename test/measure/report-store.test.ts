import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { CommanderError } from "commander";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { reportCommand, loadCampaigns } from "../../cli/report.js";
import { campaignIdFor, planCampaign, runIdFor, type CampaignDefinition } from "../../measure/campaign-plan.js";
import { loadPaperReference } from "../../measure/paper-reference.js";
import { buildReport } from "../../measure/report.js";
import { writeReportFolder } from "../../measure/report-output.js";
import { ResultStore, SCHEMA_VERSION } from "../../measure/store.js";
import { syntheticRuns } from "./report-fixtures.js";
import { SCHEMA_1_STORE } from "../fixtures/stores.js";

const dir = mkdtempSync(path.join(tmpdir(), "report-store-"));
/** The compiled bin (npm run build): run in a mount namespace of its own below. */
const BIN = path.join(path.dirname(new URL(import.meta.url).pathname), "../../dist/cli/main.js");
const canMount = process.platform === "linux" && process.getuid?.() === 0 && spawnSync("unshare", ["--version"]).status === 0;
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

const definition: CampaignDefinition = {
  backend: "loopback",
  dataplanes: ["iptables", "ebpf"],
  families: ["ipv4"],
  profiles: ["throughput", "latency"],
  services: [1, 1000],
  runs: 20,
  flowSeconds: 30,
  linkMbps: 500,
  seed: 77,
  order: { randomize: true, interleave: 5 },
  traffic: {
    throughput: { protocol: "TCP", meter: "owdm", payloadBytes: 64000, packetsPerSecond: 2000 },
    latency: { protocol: "UDP", meter: "rttm", payloadBytes: 512, packetsPerSecond: 1000 },
  },
};

/** A store with one campaign whose runs are the synthetic ones, renamed to the plan's run ids. */
function storeWithCampaign(file: string, missing = 0) {
  const id = campaignIdFor(definition);
  const synthetic = syntheticRuns({
    seed: 5,
    runs: definition.runs,
    services: definition.services,
    families: definition.families,
    profiles: definition.profiles,
    packets: 100,
    shape: (dataplane) => ({ throughputMbps: { mean: 450, sd: dataplane === "ebpf" ? 3 : 10 }, delay: { baseMs: 0.2, jitterMs: 0.05 } }),
    fail: (k) => k.repetition === 3 && k.dataplane === "iptables",
  }).map((r) => ({ ...r, runId: runIdFor(id, r) }));
  const stored = synthetic.slice(0, synthetic.length - missing);
  const store = ResultStore.open(file);
  store.ensureCampaign(id, definition, planCampaign(id, definition));
  for (const r of stored) store.commitRun(id, r);
  store.close();
  return { id, results: stored };
}

async function runReport(args: string[]): Promise<{ out: string[]; err: string }> {
  const out: string[] = [];
  let err = "";
  vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void out.push(a.join(" ")));
  const cmd = (await reportCommand()).exitOverride().configureOutput({ writeErr: (s) => void (err += s), writeOut: () => undefined });
  try {
    await cmd.parseAsync(args, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) return { out, err };
    throw e;
  }
  return { out, err };
}

describe("report from a results store", () => {
  const db = path.join(dir, "results.db");
  const { id, results } = storeWithCampaign(db);

  it("gives the same report from the store as from the runs that went in", () => {
    const loaded = loadCampaigns(db);
    expect(loaded.ids).toEqual([id]);
    expect(loaded.results).toHaveLength(results.length);
    const options = { seed: 1, resamples: 500, paper: loadPaperReference() };
    const fromStore = buildReport(loaded.results, options);
    const direct = buildReport(results, options);
    expect(fromStore.ratios).toEqual(direct.ratios);
    expect(fromStore.cells).toEqual(direct.cells);
    expect(fromStore.markdown).toBe(direct.markdown);
    expect(fromStore.counts.find((c) => c.dataplane === "iptables" && c.services === 1 && c.profile === "latency")).toMatchObject({ ok: 19, failed: 1 });
  });

  it("writes the report and prints the path of report.md", async () => {
    const out = path.join(dir, "out");
    const { out: printed } = await runReport(["--db", db, "--out", out, "--seed", "3"]);
    expect(printed).toEqual([path.join(out, "report.md")]);
    const md = readFileSync(path.join(out, "report.md"), "utf8");
    expect(md).toContain(`Campaign \`${id}\` (backend loopback)`);
    expect(md).toContain("Seed 3, 2000 bootstrap resamples");
    expect(md).toContain("| throughput | standard deviation | ipv4 | ebpf / iptables | 2 of 2: 1 and 1000 Services | none of 2 |");
    expect(md).toMatch(/- 4 failed runs excluded: /);
    for (const f of ["cells.csv", "ratios.csv", "table1-throughput-std-ratio.csv", "throughput-ipv4.svg", "latency-ipv4.svg"]) {
      expect(existsSync(path.join(out, f))).toBe(true);
    }
  });

  it("defaults the output beside the store and the seed to the campaign's", async () => {
    const { out } = await runReport(["--db", db]);
    expect(out).toEqual([path.join(dir, `report-${id}`, "report.md")]);
    expect(readFileSync(out[0]!, "utf8")).toContain("Seed 77,");
  });

  it("warns when planned runs have no result yet", () => {
    const partial = path.join(dir, "partial.db");
    storeWithCampaign(partial, 3);
    const report = buildReport(loadCampaigns(partial).results, { seed: 1, resamples: 200, plannedRunsPerCell: definition.runs });
    expect(report.warnings.filter((w) => w.startsWith("incomplete"))).toEqual([
      "incomplete: 1 group with results for 17 of 20 planned runs (latency ipv4: ebpf at 1000 Services)",
    ]);
  });
});

describe("report of one campaign per stack (the cloud's shape)", () => {
  it("reports the stacks' campaigns together, names the backend cloud, and writes when each step became measurable", async () => {
    const db = path.join(dir, "cloud.db");
    const runs = syntheticRuns({
      seed: 9, runs: 6, services: [1, 1000], families: ["ipv4"], profiles: ["latency"], packets: 100,
      shape: () => ({ throughputMbps: { mean: 450, sd: 5 }, delay: { baseMs: 0.2, jitterMs: 0.05 } }),
    });
    const store = ResultStore.open(db);
    for (const dataplane of ["iptables", "ebpf"] as const) {
      const def: CampaignDefinition = { ...definition, backend: `stack:rehearse-${dataplane}`, dataplanes: [dataplane], profiles: ["latency"], runs: 6 };
      const id = campaignIdFor(def);
      store.ensureCampaign(id, def, planCampaign(id, def));
      for (const r of runs.filter((x) => x.dataplane === dataplane)) store.commitRun(id, { ...r, runId: runIdFor(id, r) });
      for (const services of [1, 1000]) {
        store.recordStep(id, { dataplane, services }, { endpointsReadyAfterS: services / 100, programmedAfterS: 1 + services / 100, programmedServices: { ipv4: services } }, new Date());
      }
    }
    store.close();
    const out = path.join(dir, "cloud-report");
    await runReport(["--db", db, "--out", out]);
    const md = readFileSync(path.join(out, "report.md"), "utf8");
    expect(md).toContain("(backend cloud (stacks rehearse-iptables, rehearse-ebpf))");
    expect(md).toContain("## When each step became measurable");
    expect(md).toContain("| ebpf | 1000 | 10 | 11 | ipv4 1000 |");
    expect(md).toMatch(/latency, ipv4: ratio of the/);
    expect(readFileSync(path.join(out, "steps.csv"), "utf8")).toBe(
      [
        "dataplane,family,services,endpointsReadyAfterS,programmedAfterS,programmedServices",
        "iptables,ipv4,1,0.01,1.01,1",
        "iptables,ipv4,1000,10,11,1000",
        "ebpf,ipv4,1,0.01,1.01,1",
        "ebpf,ipv4,1000,10,11,1000",
        "",
      ].join("\n"),
    );
  });
});

describe("report from a store written before exact round trips (schema 1)", () => {
  it("reads it as it is, without upgrading it, and reports its runs, saying their round trips are the meter's", async () => {
    const old = path.join(dir, "schema-1.db");
    const raw = new Database(old);
    raw.exec(readFileSync(SCHEMA_1_STORE, "utf8"));
    raw.close();
    const before = readFileSync(old);
    const out = path.join(dir, "schema-1-report");
    const { out: printed } = await runReport(["--db", old, "--out", out]);
    expect(printed).toEqual([path.join(out, "report.md")]);
    const md = readFileSync(path.join(out, "report.md"), "utf8");
    expect(md).toContain("12 delay runs were stored before the store kept where their delays come from (results store schema 1)");
    expect(md).toContain("- **Delays:** latency: 12 stored before exact round trips (the meter's own) (of 12 runs).");
    expect(md).not.toContain("## Measurement validity");
    expect(loadCampaigns(old).results).toHaveLength(24);
    // Not a byte of the store changed, and nothing was put beside it.
    expect(readFileSync(old).equals(before)).toBe(true);
    expect([existsSync(`${old}-wal`), existsSync(`${old}-shm`)]).toEqual([false, false]);
    // A writer (lab, campaign) upgrades it, and says so.
    const upgrades: unknown[] = [];
    ResultStore.open(old, { onUpgrade: (u) => upgrades.push(u) }).close();
    expect(upgrades).toEqual([{ file: old, from: 1, to: SCHEMA_VERSION }]);
  });
});

describe("report never writes the store", () => {
  it("leaves the store's bytes and folder as they were", async () => {
    const db = path.join(dir, "untouched", "results.db");
    mkdirSync(path.dirname(db));
    storeWithCampaign(db);
    const before = readFileSync(db);
    const listing = readdirSync(path.dirname(db));
    await runReport(["--db", db, "--out", path.join(dir, "untouched-report")]);
    expect(readFileSync(db).equals(before)).toBe(true);
    expect(readdirSync(path.dirname(db))).toEqual(listing);
  });

  it.skipIf(!canMount)("reads a store in a read-only folder (a read-only bind mount): the report is written elsewhere", () => {
    const folder = path.join(dir, "read-only");
    mkdirSync(folder);
    const db = path.join(folder, "results.db");
    storeWithCampaign(db);
    const out = path.join(dir, "from-read-only");
    // The bin in a private mount namespace where the store's folder is mounted read-only.
    const r = spawnSync(
      "unshare",
      ["--mount", "--propagation", "private", "sh", "-c", 'mount --bind -o ro "$1" "$1" && shift && exec "$@"', "sh", folder, process.execPath, BIN, "report", "--db", db, "--out", out, "--json"],
      { encoding: "utf8", timeout: 120_000 },
    );
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ campaign: campaignIdFor(definition), out, db });
    expect(readdirSync(folder)).toEqual(["results.db"]);
  });
});

describe("report's output folder", () => {
  const db = path.join(dir, "out-results.db");
  const { id } = storeWithCampaign(db);
  const otherDb = path.join(dir, "out-other.db");
  const other = { ...definition, seed: 91 };
  const otherId = campaignIdFor(other);
  {
    const store = ResultStore.open(otherDb);
    store.ensureCampaign(otherId, other, planCampaign(otherId, other));
    for (const r of syntheticRuns({ seed: 6, runs: 20, services: [1, 1000], families: ["ipv4"], profiles: ["throughput"], packets: 100, shape: () => ({ throughputMbps: { mean: 450, sd: 5 }, delay: { baseMs: 0.2, jitterMs: 0.05 } }) }).map((r) => ({ ...r, runId: runIdFor(otherId, r) }))) {
      store.commitRun(otherId, r);
    }
    store.close();
  }

  it("refuses a folder holding another campaign's report unless --force, which replaces it whole", async () => {
    const out = path.join(dir, "shared-report");
    await runReport(["--db", db, "--out", out]);
    expect(JSON.parse(readFileSync(path.join(out, "report.json"), "utf8")).campaign).toBe(id);
    expect(readdirSync(out)).toContain("latency-ipv4.svg");
    await expect(runReport(["--db", otherDb, "--out", out])).rejects.toThrow(
      `--out ${out}: holds the report of campaign ${id}, not of campaign ${otherId}; --force replaces it, or choose another folder`,
    );
    expect(JSON.parse(readFileSync(path.join(out, "report.json"), "utf8")).campaign).toBe(id);
    await runReport(["--db", otherDb, "--out", out, "--force"]);
    const files = readdirSync(out);
    expect(JSON.parse(readFileSync(path.join(out, "report.json"), "utf8")).campaign).toBe(otherId);
    // The first campaign's latency figures are gone: the other campaign measured throughput only.
    expect(files).not.toContain("latency-ipv4.svg");
    expect(files.sort()).toEqual([...JSON.parse(readFileSync(path.join(out, "report.json"), "utf8")).files].sort());
    // The same campaign again replaces its own report without --force.
    await runReport(["--db", otherDb, "--out", out]);
  });

  it("never replaces a folder holding other files, nor a file; an empty or new folder is taken", async () => {
    const mine = path.join(dir, "my-notes");
    mkdirSync(mine);
    writeFileSync(path.join(mine, "notes.txt"), "mine");
    await expect(runReport(["--db", db, "--out", mine, "--force"])).rejects.toThrow(`--out ${mine}: holds files that are not a testbed report (notes.txt)`);
    expect(readdirSync(mine)).toEqual(["notes.txt"]);
    const file = path.join(dir, "a-file");
    writeFileSync(file, "x");
    await expect(runReport(["--db", db, "--out", file])).rejects.toThrow(`--out ${file}: not a directory`);
    await expect(runReport(["--db", db, "--out", path.join(file, "sub")])).rejects.toThrow(`--out ${path.join(file, "sub")}: ${file} is not a directory`);
    const empty = path.join(dir, "empty-folder");
    mkdirSync(empty);
    expect((await runReport(["--db", db, "--out", empty])).out).toEqual([path.join(empty, "report.md")]);
  });

  it("refuses /proc and /sys at once, before reading the store", async () => {
    for (const out of ["/proc/testbed-report", "/sys/kernel/testbed-report", "/proc/self/fd"]) {
      const started = Date.now();
      // A store that does not exist: the folder is refused first.
      await expect(runReport(["--db", path.join(dir, "absent.db"), "--out", out])).rejects.toThrow(new RegExp(`^--out ${out}: is on a (proc|sysfs) file system, which holds no report`));
      expect(Date.now() - started).toBeLessThan(10_000);
    }
  });

  it("a report that fails half-way leaves the earlier one whole and nothing beside it", () => {
    const out = path.join(dir, "whole");
    mkdirSync(out);
    writeReportFolder(out, [{ name: "report.md", content: "first" }, { name: "a.csv", content: "1" }]);
    const broken = [{ name: "report.md", content: "second" }, { name: "b.csv", content: undefined as unknown as string }];
    expect(() => writeReportFolder(out, broken)).toThrow(`${out}: cannot be written (ERR_INVALID_ARG_TYPE); an earlier report there is left as it was`);
    expect(readdirSync(out).sort()).toEqual(["a.csv", "report.md"]);
    expect(readFileSync(path.join(out, "report.md"), "utf8")).toBe("first");
    expect(readdirSync(dir).filter((n) => n.startsWith(".whole."))).toEqual([]);
  });
});

describe("report's errors name the flag and the value", () => {
  it("refuses a missing store without creating it", async () => {
    const missing = path.join(dir, "nope.db");
    await expect(runReport(["--db", missing])).rejects.toThrow(`--db ${missing}: no such file`);
    expect(existsSync(missing)).toBe(false);
  });

  it("refuses a file that is not a results store, and leaves it alone", async () => {
    const empty = path.join(dir, "empty.db");
    writeFileSync(empty, "");
    await expect(runReport(["--db", empty])).rejects.toThrow(`--db ${empty}: empty, or not a results store`);
    expect(readFileSync(empty, "utf8")).toBe("");
    const text = path.join(dir, "notes.txt");
    writeFileSync(text, "not sqlite at all, just some text that is long enough to have a header".repeat(4));
    await expect(runReport(["--db", text])).rejects.toThrow(`--db ${text}: not a results store`);
  });

  it("refuses a store without campaigns", async () => {
    const bare = path.join(dir, "bare.db");
    ResultStore.open(bare).close();
    await expect(runReport(["--db", bare])).rejects.toThrow(`--db ${bare}: the store holds no campaign yet`);
  });

  it("refuses an unknown campaign, listing the known ones", async () => {
    const db = path.join(dir, "known.db");
    const { id } = storeWithCampaign(db);
    await expect(runReport(["--db", db, "--campaign", "lab-0000"])).rejects.toThrow(`--campaign lab-0000: no such campaign in ${db}; accepted: ${id}`);
  });

  it("asks for --campaign when two campaigns of the store measured the same dataplane", async () => {
    const db = path.join(dir, "two.db");
    const { id } = storeWithCampaign(db);
    const other = { ...definition, seed: 78 };
    const otherId = campaignIdFor(other);
    const store = ResultStore.open(db);
    store.ensureCampaign(otherId, other, planCampaign(otherId, other));
    store.close();
    await expect(runReport(["--db", db])).rejects.toThrow(
      `--campaign: campaigns ${id} and ${otherId} in ${db} both measured iptables; choose the ones to report with --campaign (a comma-separated list of ${id}, ${otherId})`,
    );
    expect(loadCampaigns(db, [id]).ids).toEqual([id]);
    await expect(runReport(["--db", db, "--campaign", otherId])).rejects.toThrow(`--campaign ${otherId}: no run of this campaign`);
  });

  it("refuses bad numbers for --seed and --resamples", async () => {
    const db = path.join(dir, "known.db");
    const low = await runReport(["--db", db, "--resamples", "100"]);
    expect(low.err).toMatch(/option '--resamples <n>' argument '100' is invalid\. accepted: a whole number from 2000 to 1000000/);
    const seed = await runReport(["--db", db, "--seed", "-1"]);
    expect(seed.err).toMatch(/option '--seed <n>' argument '-1' is invalid/);
    const noDb = await runReport([]);
    expect(noDb.err).toMatch(/required option '--db <file>' not specified/);
  });
});
