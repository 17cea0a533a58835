// The eBPF model on the clusterip path, in a small campaign on this kernel: the client pod's D-ITG
// flows and setup probes go to the ClusterIP through the socket load balancer (the pod's cgroup
// hooks), beside kube-proxy's iptables mode on the same path, both families, latency and setup.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeCampaignReport } from "../../cli/report.js";
import { LabBackend, type PreparedStep } from "../../backends/lab.js";
import { runCampaign, runJudge } from "../../measure/campaign.js";
import { WorkerLogDecoder } from "../../measure/campaign-decode.js";
import { campaignIdFor, planCampaign, type CampaignDefinition } from "../../measure/campaign-plan.js";
import { SOCK_LB_HOOKS } from "../../lab/dataplanes/ebpf/sock-lb.js";
import { labDefinition, LAB_PROFILES } from "../../lab/profiles.js";
import { run } from "../../lab/netns.js";
import { findRunObjects, labHostProblem } from "../../lab/topology.js";
import { ResultStore } from "../../measure/store.js";
import type { RunResult } from "../../measure/types.js";
import { BUSY_HOST } from "./busy-host.js";

const hostProblem = labHostProblem();

describe.skipIf(hostProblem !== undefined)(`the eBPF model on the clusterip path${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  const smoke = labDefinition(LAB_PROFILES.smoke, { dataplanes: ["iptables", "ebpf"], baseline: "iptables", profiles: ["latency", "setup"] });
  const def: CampaignDefinition = { ...smoke, services: [1, 100], runs: 1, flowSeconds: 2, primary: undefined, paths: ["clusterip"] };
  const campaignId = campaignIdFor(def);
  const dir = mkdtempSync(join(tmpdir(), "lab-paths-ebpf-"));
  const db = join(dir, "results.db");
  let results: RunResult[] = [];
  let prefix = "";
  /** What each eBPF step had on the client pod's cgroup when it was prepared. */
  const ebpfHooks: string[][] = [];
  /** What each iptables step left on it: nothing, or kube-proxy's rules would not be what is measured. */
  const iptablesHooks: string[][] = [];

  beforeAll(async () => {
    const store = ResultStore.open(db);
    const decoder = new WorkerLogDecoder();
    // The kernel's view of the client pod's cgroup, whichever dataplane holds the step.
    const onPrepared = (step: PreparedStep) => {
      const shown = run(["bpftool", "-j", "cgroup", "show", step.topology.plan.clientPod!.cgroup]).trim();
      const hooks = (JSON.parse(shown || "[]") as { name: string }[]).map((h) => h.name).sort();
      (step.dataplane === "ebpf" ? ebpfHooks : iptablesHooks).push(hooks);
    };
    try {
      store.ensureCampaign(campaignId, def, planCampaign(campaignId, def));
      const backend = await LabBackend.start({ linkMbps: def.linkMbps, paths: def.paths!, onPrepared });
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

  it("attaches the socket hooks for the eBPF steps and takes them off for the iptables steps", () => {
    expect(ebpfHooks.length).toBeGreaterThan(0);
    for (const hooks of ebpfHooks) expect(hooks).toEqual(Object.keys(SOCK_LB_HOOKS).sort());
    expect(iptablesHooks.length).toBeGreaterThan(0);
    for (const hooks of iptablesHooks) expect(hooks).toEqual([]);
  });

  it("measures every cell of both dataplanes on clusterip: ok, or short only because a busy host's ITGSend fell behind", () => {
    expect(results).toHaveLength(planCampaign(campaignId, def).length);
    for (const dataplane of ["iptables", "ebpf"]) {
      const of = results.filter((r) => r.dataplane === dataplane);
      expect(of, dataplane).toHaveLength(2 * 2 * 2);
      for (const r of of) expect(r.status === "ok" || BUSY_HOST.test(r.failure ?? ""), `${r.dataplane} ${r.family} ${r.profile} ${r.services}: ${r.failure}`).toBe(true);
      // A path that does not work has no ok run at all; a busy host fails some of them, however many.
      expect(of.filter((r) => r.status === "ok").length, dataplane).toBeGreaterThan(0);
    }
  });

  it("reports the eBPF model against iptables on the clusterip path", () => {
    const cells = parse(readFileSync(join(dir, "report", "cells.csv"), "utf8"), { columns: true }) as Record<string, string>[];
    expect(new Set(cells.map((c) => c.path))).toEqual(new Set(["clusterip"]));
    expect(new Set(cells.map((c) => c.dataplane))).toEqual(new Set(["iptables", "ebpf"]));
  });

  it("leaves nothing of the run behind, its cgroup included", () => {
    expect(findRunObjects(prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
  });
});
