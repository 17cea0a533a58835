// The end of `testbed campaign` and `testbed lab` as the terminal sees it: runs that failed every attempt are counted,
// said on stderr, and make the exit status 1; a campaign whose runs all passed exits 0; --json prints no closing line.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { driveCampaign, reportFailedRuns } from "../../cli/campaign-terminal.js";
import { campaignIdFor, planCampaign, type CampaignDefinition } from "../../measure/campaign-plan.js";
import { ResultStore } from "../../measure/store.js";
import type { Backend, FlowOutcome, RunKey } from "../../measure/types.js";
import { campaignTraffic } from "../../measure/connection-setup.js";
import { scenarioSchema } from "../../scenario/schema.js";

const def: CampaignDefinition = {
  backend: "fake",
  dataplanes: ["iptables", "ebpf"],
  families: ["ipv4"],
  profiles: ["throughput"],
  services: [1],
  runs: 2,
  flowSeconds: 1,
  linkMbps: 0,
  seed: 1,
  order: { randomize: false, interleave: 0 },
  traffic: campaignTraffic(scenarioSchema.shape.traffic.parse(undefined)),
};

/** A backend whose flows never get through: ITGSend's refused signaling connection, every attempt. */
class RefusingBackend implements Backend {
  readonly name = "fake";
  readonly profiles = ["throughput"] as const;
  async prepare() {
    return undefined;
  }
  async runFlow(_key: RunKey, flow: { logName: string }): Promise<FlowOutcome> {
    void flow;
    throw new Error("Connect error in createTransportChan(): Connection refused");
  }
  async collectLog(outcome: FlowOutcome) {
    return { log: outcome.logPath };
  }
  async receiverAlive() {
    return true;
  }
  async restartReceiver() {}
  async teardown() {}
}

const dir = mkdtempSync(path.join(tmpdir(), "campaign-terminal-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  process.exitCode = undefined;
  vi.restoreAllMocks();
});

describe("the end of a campaign in the terminal", () => {
  it("runs that failed every attempt: counted, said on stderr with the way to run them again, exit status 1", async () => {
    const db = path.join(dir, "failing.db");
    const store = ResultStore.open(db);
    const id = campaignIdFor(def);
    store.ensureCampaign(id, def, planCampaign(id, def));
    const stderr: string[] = [];
    const stdout: string[] = [];
    vi.spyOn(process.stderr, "write").mockImplementation((s) => (stderr.push(String(s)), true));
    vi.spyOn(process.stdout, "write").mockImplementation((s) => (stdout.push(String(s)), true));
    try {
      const summary = await driveCampaign({ store, campaignId: id, backend: new RefusingBackend(), flowSeconds: 1, retries: 1, keepLogs: false, retryFailed: false, stopMessage: "", json: true });
      expect([summary.total, summary.failedForGood, summary.stopped]).toEqual([4, 4, false]);
      reportFailedRuns(summary);
    } finally {
      store.close();
    }
    vi.restoreAllMocks();
    expect(process.exitCode).toBe(1);
    expect(stderr.join("")).toContain(`4 of 4 runs of campaign ${id} failed for good (every attempt); their failures are in ${db}; the same command with --retry-failed runs them again`);
    // --json: the verb prints its summary object, not the closing line.
    expect(stdout.join("")).not.toContain(`campaign ${id}:`);
  });

  it("no failed run: exit status untouched and nothing said", () => {
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    reportFailedRuns({ total: 4, done: 4, committed: 4, failed: 0, receiverRestarts: 0, stopped: false, timings: {} as never, campaign: "c", db: "d", failedForGood: 0, seconds: 1 });
    expect(stderr).not.toHaveBeenCalled();
    expect(process.exitCode).toBeUndefined();
  });
});
