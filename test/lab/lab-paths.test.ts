// The lab's paths beyond the paper's on this kernel: a small campaign of kube-proxy's two modes over
// nodeport-local, nodeport-remote and clusterip (latency and setup, both families), each run through
// its own path (its sender namespace, its Service, its receiver on worker 2), the results stored per
// path and the report's CSVs with a path column, hops.csv with each path's own sections. The eBPF
// model on these paths: lab-paths-ebpf.test.ts (NodePort paths) and lab-paths-ebpf-clusterip.test.ts.
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planCampaign, type CampaignDefinition } from "../../measure/campaign-plan.js";
import { labDefinition, LAB_PROFILES } from "../../lab/profiles.js";
import { findRunObjects, labHostProblem } from "../../lab/topology.js";
import { pathOf } from "../../measure/types.js";
import { HOP_DIRECTIONS, pathHops } from "../../measure/hops.js";
import { SERVICE_PATHS, type ServicePath } from "../../scenario/paths.js";
import { BUSY_HOST } from "./busy-host.js";
import { runPathsCampaign, type PathsCampaign } from "./paths-campaign.js";

const hostProblem = labHostProblem();

describe.skipIf(hostProblem !== undefined)(`the lab's paths on this kernel${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  const smoke = labDefinition(LAB_PROFILES.smoke, { dataplanes: ["iptables", "nftables"], baseline: "iptables", profiles: ["latency", "setup"] });
  const def: CampaignDefinition = { ...smoke, services: [1, 100], runs: 1, flowSeconds: 2, primary: undefined, paths: [...SERVICE_PATHS] };
  let run: PathsCampaign;

  beforeAll(async () => {
    run = await runPathsCampaign(def);
  }, 900_000);
  afterAll(() => run && rmSync(run.dir, { recursive: true, force: true }));

  it("builds worker 2, its receiver pod and the client pod beside the paper's four namespaces", () => {
    expect(run.namespaces).toEqual(["client", "router", "worker", "pod", "worker2", "pod2", "clientpod"]);
  });

  it("stores every run under its path, each cell crossing its own path: ok, or short only because a busy host's ITGSend fell behind", () => {
    const results = run.results;
    expect(results).toHaveLength(planCampaign(run.campaignId, def).length);
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
    const cells = parse(readFileSync(join(run.dir, "report", "cells.csv"), "utf8"), { columns: true }) as Record<string, string>[];
    expect(Object.keys(cells[0]!)[0]).toBe("path");
    expect(new Set(cells.map((c) => c.path))).toEqual(new Set(SERVICE_PATHS));
    const hops = parse(readFileSync(join(run.dir, "report", "hops.csv"), "utf8"), { columns: true }) as Record<string, string>[];
    expect(Object.keys(hops[0]!)).toEqual(["path", "dataplane", "family", "services", "direction", "section", "statistic", "valueS"]);
    const sectionsOf = (path: ServicePath) => new Set(hops.filter((h) => h.path === path).map((h) => `${h.direction} ${h.section}`));
    const defined = (path: ServicePath) => HOP_DIRECTIONS.flatMap((d) => pathHops(path).sections[d].map((s) => `${d} ${s}`));
    // The remote paths have sections the local one has not: worker 1 to worker 2, the SNAT with the DNAT, the client pod's stack.
    const local = new Set(defined("nodeport-local"));
    const beyond = (path: ServicePath) => defined(path).filter((s) => !local.has(s)).sort();
    expect(beyond("nodeport-remote")).toEqual(["forward endpoint-node", "forward node-to-node", "forward service-dataplane-snat", "return endpoint-node", "return node-to-node", "return service-dataplane-snat"]);
    expect(beyond("clusterip")).toEqual(["forward client-pod-link", "forward client-pod-stack", "forward endpoint-node", "forward node-to-node", "return client-pod-link", "return client-pod-stack", "return endpoint-node", "return node-to-node"]);
    // hops.csv has every section of each path whose latency runs (some of them: a busy host fails others) were ok.
    for (const path of SERVICE_PATHS) {
      if (!run.results.some((r) => pathOf(r) === path && r.profile === "latency" && r.status === "ok")) continue;
      const found = sectionsOf(path);
      expect(defined(path).filter((s) => !found.has(s)), path).toEqual([]);
    }
    expect(readFileSync(join(run.dir, "report", "report.md"), "utf8")).toContain("## Which dataplane is faster, per path");
  });

  it("leaves no namespace or link of the run behind", () => {
    expect(findRunObjects(run.prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
  });
});
