// The eBPF model on the NodePort paths, in a small campaign on this kernel: nodeport-local and
// nodeport-remote (loadBalancer.mode snat, Cilium's default), iptables as the baseline, latency and
// setup in both families, each run through its own path (the remote one to the receiver on worker 2,
// SNATed by the model on worker 1), the results stored per path.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeCampaignReport } from "../../cli/report.js";
import { LabBackend } from "../../backends/lab.js";
import { runCampaign, runJudge } from "../../measure/campaign.js";
import { WorkerLogDecoder } from "../../measure/campaign-decode.js";
import { campaignIdFor, planCampaign, type CampaignDefinition } from "../../measure/campaign-plan.js";
import { labDefinition, LAB_PROFILES } from "../../lab/profiles.js";
import { findRunObjects, labHostProblem } from "../../lab/topology.js";
import { ResultStore } from "../../measure/store.js";
import { pathOf, type RunResult } from "../../measure/types.js";
import type { ServicePath } from "../../scenario/paths.js";
import { BUSY_HOST } from "./busy-host.js";

const hostProblem = labHostProblem();
const PATHS: ServicePath[] = ["nodeport-local", "nodeport-remote"];

describe.skipIf(hostProblem !== undefined)(`the eBPF model on the NodePort paths${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  const smoke = labDefinition(LAB_PROFILES.smoke, { dataplanes: ["iptables", "ebpf"], baseline: "iptables", profiles: ["latency", "setup"] });
  const def: CampaignDefinition = { ...smoke, services: [1], runs: 1, flowSeconds: 2, primary: undefined, paths: PATHS };
  const campaignId = campaignIdFor(def);
  const dir = mkdtempSync(join(tmpdir(), "lab-paths-ebpf-"));
  const db = join(dir, "results.db");
  let results: RunResult[] = [];
  let prefix = "";

  beforeAll(async () => {
    const store = ResultStore.open(db);
    const decoder = new WorkerLogDecoder();
    try {
      store.ensureCampaign(campaignId, def, planCampaign(campaignId, def));
      const backend = await LabBackend.start({ linkMbps: def.linkMbps, paths: def.paths!, loadBalancerMode: "snat" });
      prefix = backend.topology.prefix;
      await runCampaign({ store, campaignId, backend, decoder, judge: runJudge, retries: 2 });
      results = store.results(campaignId);
    } finally {
      await decoder.close();
      store.close();
    }
    await writeCampaignReport({ db, out: join(dir, "report") });
  }, 900_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("stores every eBPF run under its path, each ok or short only because a busy host's ITGSend fell behind", () => {
    expect(results).toHaveLength(planCampaign(campaignId, def).length);
    for (const path of PATHS) {
      const of = results.filter((r) => pathOf(r) === path && r.dataplane === "ebpf");
      // 2 families x 2 profiles x 1 Service count.
      expect(of, path).toHaveLength(4);
      for (const r of of) expect(r.status === "ok" || BUSY_HOST.test(r.failure ?? ""), `${path} ${r.family} ${r.profile}: ${r.failure}`).toBe(true);
      // A path that does not work has no ok run at all; a busy host fails some of them, however many.
      expect(of.filter((r) => r.status === "ok").length, path).toBeGreaterThan(0);
    }
  });

  it("reports eBPF cells on nodeport-remote beside iptables'", () => {
    const cells = parse(readFileSync(join(dir, "report", "cells.csv"), "utf8"), { columns: true }) as Record<string, string>[];
    const remote = cells.filter((c) => c.path === "nodeport-remote");
    expect(new Set(remote.map((c) => c.dataplane))).toEqual(new Set(["iptables", "ebpf"]));
  });

  it("leaves no namespace, link or mount of the run behind", () => {
    expect(findRunObjects(prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
  });
});
