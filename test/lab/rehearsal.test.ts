// The cloud path end to end on namespace hosts (rehearsal/): a stack deployed at 2000 Services whose
// worker's dataplane agent programs every change late, then `testbed campaign --stack` stepping it
// down to 1. The old readiness check counted only missing Services and passed such a step at once; the
// gate must wait until the worker holds exactly the step's Services. Then latency and setup runs with
// the worker's hop probes, and the report of the store, as a user would read it.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeCampaignReport } from "../../cli/report.js";
import { LAB_PROFILES } from "../../lab/profiles.js";
import { FIRST_PACKET_SECTION } from "../../measure/report-hops.js";
import { ResultStore } from "../../measure/store.js";
import type { RunResult, StepRecord } from "../../measure/types.js";
import { RehearsalEnvironment } from "../../rehearsal/environment.js";

/** Longer than the gate's poll (STEP_POLL_S): the gate sees the larger set at least once before it goes. */
const PROGRAM_DELAY_MS = 12_000;

const dir = mkdtempSync(path.join(tmpdir(), "rehearsal-test-"));
const db = path.join(dir, "results.db");
const log: string[] = [];
let env: RehearsalEnvironment | undefined;
let exit: number;
let steps: StepRecord[];
let results: RunResult[];

beforeAll(async () => {
  env = await RehearsalEnvironment.create({
    dataplane: "iptables",
    profile: LAB_PROFILES.smoke,
    services: 2000,
    sweepServices: [1, 2000],
    programDelayMs: PROGRAM_DELAY_MS,
    log: (line) => log.push(line),
  });
  exit = await env.campaign(db, ["--services", "1", "--profiles", "latency,setup", "--runs", "1", "--retries", "3"]);
  const store = ResultStore.openReadOnly(db);
  try {
    const [id] = store.campaignIds();
    steps = store.steps(id!);
    results = store.results(id!);
  } finally {
    store.close();
  }
}, 900_000);

afterAll(async () => {
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("a rehearsed stack stepped down from 2000 Services to 1", () => {
  it("finishes every run, failing one only when the host was too busy for ITGSend to hold its rate", () => {
    // On a busy host ITGSend's pacing shares the cores with everything else: the judge fails such a run
    // by name, and the campaign exits 1 counting it. Any other failure is a broken path.
    const failed = results.filter((r) => r.status === "failed");
    for (const r of failed) expect(r.failure, r.runId).toMatch(/^ITGSend could not hold its rate: sent \d+ of \d+ scheduled \(a host too busy to keep pace\)/);
    expect(exit, log.join("\n")).toBe(failed.length === 0 ? 0 : 1);
    // --runs 1, raised per cell to what the primary comparisons' power analysis asks for.
    expect([...new Set(results.map((r) => `${r.profile} ${r.family}`))].sort()).toEqual(["latency ipv4", "latency ipv6", "setup ipv4", "setup ipv6"]);
    expect(results.filter((r) => r.profile === "setup" && r.status === "ok").length).toBeGreaterThan(0);
  });

  it("measured the step only once the worker held exactly its Services: the gate waited for the larger set to go", () => {
    expect(steps).toHaveLength(1);
    const [step] = steps;
    expect(step).toMatchObject({ dataplane: "iptables", services: 1, programmedServices: { ipv4: 1, ipv6: 1 } });
    // The one scaled Service was programmed all along (it is in the larger set); only the extra 1999 made the gate wait.
    expect(step!.programmedAfterS).toBeGreaterThanOrEqual(PROGRAM_DELAY_MS / 1000);
  });

  it("timed the worker's Service dataplane in every run, on the worker's clock alone", () => {
    for (const r of results.filter((x) => x.status === "ok")) {
      const sections = r.hops?.sections ?? [];
      const names = new Set(sections.map((s) => s.section));
      expect(names.has("service-dataplane"), `${r.profile} ${r.family}: ${[...names].join(", ")}`).toBe(true);
      expect(names.has("worker-span")).toBe(true);
      // Cross-host sections need the client's clock: never shown for a stack.
      expect(names.has("router")).toBe(false);
    }
  });

  it("reports the stack as the cloud backend, with the step's timings in steps.csv", async () => {
    const written = await writeCampaignReport({ db, out: path.join(dir, "report") });
    const md = readFileSync(written.markdown, "utf8");
    expect(md).toContain("backend cloud (stack rehearse-iptables)");
    const csv = readFileSync(path.join(dir, "report", "steps.csv"), "utf8").trim().split("\n");
    expect(csv[0]).toBe("dataplane,family,services,endpointsReadyAfterS,programmedAfterS,programmedServices");
    expect(csv.slice(1).map((l) => l.split(",")).map((c) => [c[0], c[2], c[5]])).toEqual([
      ["iptables", "1", "1"],
      ["iptables", "1", "1"],
    ]);
    // The setup runs' first packets through the real path's Service dataplane, as the lab reports them.
    expect(readFileSync(path.join(dir, "report", "hops.csv"), "utf8")).toContain(`,${FIRST_PACKET_SECTION},`);
  });
});
