// A small lab campaign over some paths, as the path suites run it: the store and report in a
// temporary folder, the backend started with the paths (and whatever else a suite asks), its runs
// retried twice, the report written. The folder is the caller's to remove.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeCampaignReport } from "../../cli/report.js";
import { LabBackend, type LabBackendOptions } from "../../backends/lab.js";
import { runCampaign, runJudge } from "../../measure/campaign.js";
import { WorkerLogDecoder } from "../../measure/campaign-decode.js";
import { campaignIdFor, planCampaign, type CampaignDefinition } from "../../measure/campaign-plan.js";
import { ResultStore } from "../../measure/store.js";
import type { RunResult } from "../../measure/types.js";

export interface PathsCampaign {
  readonly dir: string;
  readonly campaignId: string;
  readonly results: RunResult[];
  /** The run's prefix and namespaces, for the checks that nothing is left. */
  readonly prefix: string;
  readonly namespaces: string[];
}

export async function runPathsCampaign(
  def: CampaignDefinition,
  options: Omit<LabBackendOptions, "linkMbps" | "paths"> = {},
): Promise<PathsCampaign> {
  const campaignId = campaignIdFor(def);
  const dir = mkdtempSync(join(tmpdir(), "lab-paths-"));
  const db = join(dir, "results.db");
  const store = ResultStore.open(db);
  const decoder = new WorkerLogDecoder();
  let prefix = "";
  let namespaces: string[] = [];
  let results: RunResult[] = [];
  try {
    store.ensureCampaign(campaignId, def, planCampaign(campaignId, def));
    const backend = await LabBackend.start({ linkMbps: def.linkMbps, ...(def.paths ? { paths: def.paths } : {}), ...options });
    prefix = backend.topology.prefix;
    namespaces = Object.keys(backend.topology.plan.allNamespaces);
    await runCampaign({ store, campaignId, backend, decoder, judge: runJudge, retries: 2 });
    results = store.results(campaignId);
  } finally {
    await decoder.close();
    store.close();
  }
  await writeCampaignReport({ db, out: join(dir, "report") });
  return { dir, campaignId, results, prefix, namespaces };
}
