// The lab's paths beyond the paper's on this kernel: a small campaign of kube-proxy's two modes over
// nodeport-local, nodeport-remote and clusterip (latency and setup, both families), each run through
// its own path (its sender namespace, its Service, its receiver on worker 2), the results stored per
// path and the report's CSVs with a path column; and the eBPF model refused on nodeport-remote.
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
import { SERVICE_PATHS } from "../../scenario/paths.js";
import { BUSY_HOST } from "./busy-host.js";

const hostProblem = labHostProblem();

describe.skipIf(hostProblem !== undefined)(`the lab's paths on this kernel${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  const smoke = labDefinition(LAB_PROFILES.smoke, { dataplanes: ["iptables", "nftables"], baseline: "iptables", profiles: ["latency", "setup"] });
  const def: CampaignDefinition = { ...smoke, services: [1, 100], runs: 1, flowSeconds: 2, primary: undefined, paths: [...SERVICE_PATHS] };
  const campaignId = campaignIdFor(def);
  const dir = mkdtempSync(join(tmpdir(), "lab-paths-"));
  const db = join(dir, "results.db");
  let results: RunResult[] = [];
  let prefix = "";
  let namespaces: string[] = [];

  beforeAll(async () => {
    const store = ResultStore.open(db);
    const decoder = new WorkerLogDecoder();
    try {
      store.ensureCampaign(campaignId, def, planCampaign(campaignId, def));
      const backend = await LabBackend.start({ linkMbps: def.linkMbps, paths: def.paths! });
      prefix = backend.topology.prefix;
      namespaces = Object.keys(backend.topology.plan.allNamespaces);
      // The eBPF model is refused on a lab with nodeport-remote, before anything is installed (clusterip: lab-paths-ebpf.test.ts).
      await expect(backend.prepare({ dataplane: "ebpf", services: 1 })).rejects.toThrow(/the lab's ebpf dataplane serves nodeport-local, clusterip, not nodeport-remote \(nodeport-remote: iptables, nftables\)/);
      await runCampaign({ store, campaignId, backend, decoder, judge: runJudge, retries: 2 });
      results = store.results(campaignId);
    } finally {
      await decoder.close();
      store.close();
    }
    await writeCampaignReport({ db, out: join(dir, "report") });
  }, 900_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("builds worker 2, its receiver pod and the client pod beside the paper's four namespaces", () => {
    expect(namespaces).toEqual(["client", "router", "worker", "pod", "worker2", "pod2", "clientpod"]);
  });

  it("stores every run under its path, each cell crossing its own path: ok, or short only because a busy host's ITGSend fell behind", () => {
    expect(results).toHaveLength(planCampaign(campaignId, def).length);
    for (const path of SERVICE_PATHS) {
      const of = results.filter((r) => pathOf(r) === path);
      expect(of, path).toHaveLength(2 * 2 * 2 * 2);
      for (const r of of) expect(r.status === "ok" || BUSY_HOST.test(r.failure ?? ""), `${path} ${r.dataplane} ${r.family} ${r.profile} ${r.services}: ${r.failure}`).toBe(true);
      expect(of.filter((r) => r.status === "ok").length, path).toBeGreaterThan(of.length / 2);
    }
    // Hop sections on the paper's path only: the probes are detached for the other paths' runs.
    expect(results.filter((r) => r.hops !== undefined && pathOf(r) !== "nodeport-local")).toEqual([]);
  });

  it("writes cells.csv and hops.csv with a path column, every path in cells.csv", () => {
    const cells = parse(readFileSync(join(dir, "report", "cells.csv"), "utf8"), { columns: true }) as Record<string, string>[];
    expect(Object.keys(cells[0]!)[0]).toBe("path");
    expect(new Set(cells.map((c) => c.path))).toEqual(new Set(SERVICE_PATHS));
    expect(readFileSync(join(dir, "report", "hops.csv"), "utf8").split("\n")[0]).toBe("path,dataplane,family,services,direction,section,statistic,valueS");
    expect(readFileSync(join(dir, "report", "report.md"), "utf8")).toContain("## Which dataplane is faster, per path");
  });

  it("leaves no namespace or link of the run behind", () => {
    expect(findRunObjects(prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
  });
});
