// The lab's paths beyond the paper's on this kernel: a small campaign of kube-proxy's two modes over
// nodeport-local, nodeport-remote and clusterip (latency and setup, both families), each run through
// its own path (its sender namespace, its Service, its receiver on worker 2), the results stored per
// path and the report's CSVs with a path column, hops.csv with each path's own sections. The eBPF
// model on these paths: lab-paths-ebpf.test.ts (NodePort paths) and lab-paths-ebpf-clusterip.test.ts.
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
      // A path that does not work has no ok run at all; a busy host fails some of them, however many.
      expect(of.filter((r) => r.status === "ok").length, path).toBeGreaterThan(0);
    }
    // Every path's ok latency and setup runs carry their path's hop sections.
    for (const r of results.filter((x) => x.status === "ok")) expect(r.hops, `${pathOf(r)} ${r.dataplane} ${r.family} ${r.profile}`).toBeDefined();
  });

  it("writes cells.csv and hops.csv with a path column, every path in cells.csv", () => {
    const cells = parse(readFileSync(join(dir, "report", "cells.csv"), "utf8"), { columns: true }) as Record<string, string>[];
    expect(Object.keys(cells[0]!)[0]).toBe("path");
    expect(new Set(cells.map((c) => c.path))).toEqual(new Set(SERVICE_PATHS));
    const hops = parse(readFileSync(join(dir, "report", "hops.csv"), "utf8"), { columns: true }) as Record<string, string>[];
    expect(Object.keys(hops[0]!)).toEqual(["path", "dataplane", "family", "services", "direction", "section", "statistic", "valueS"]);
    const sectionsOf = (path: string) => new Set(hops.filter((h) => h.path === path).map((h) => `${h.direction} ${h.section}`));
    const local = sectionsOf("nodeport-local");
    // The remote paths have sections the local one has not: worker 1 to worker 2, the SNAT with the DNAT, the client pod's stack.
    const beyond = (path: string) => [...sectionsOf(path)].filter((s) => !local.has(s)).sort();
    expect(beyond("nodeport-remote")).toEqual(["forward endpoint-node", "forward node-to-node", "forward service-dataplane-snat", "return endpoint-node", "return node-to-node", "return service-dataplane-snat"]);
    expect(beyond("clusterip")).toEqual(["forward client-pod-link", "forward client-pod-stack", "forward endpoint-node", "forward node-to-node", "return client-pod-link", "return client-pod-stack", "return endpoint-node", "return node-to-node"]);
    expect(readFileSync(join(dir, "report", "report.md"), "utf8")).toContain("## Which dataplane is faster, per path");
  });

  it("leaves no namespace or link of the run behind", () => {
    expect(findRunObjects(prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
  });
});
