// `testbed report --db FILE [--out DIR] [--campaign ID] [--baseline D] [--seed N] [--resamples N]`:
// tables, figures and a summary from a results store, each dataplane against the baseline.
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { Command, Option } from "commander";
import { backendKind, STACK_BACKEND_PREFIX, type CampaignDefinition } from "../measure/campaign-plan.js";
import { loadPaperReference } from "../measure/paper-reference.js";
import { buildReport, writeReport, type ReportSummary } from "../measure/report.js";
import { checkReportFolder, ReportFolderError } from "../measure/report-output.js";
import { ResultStore, StoreError } from "../measure/store.js";
import { integerOption, printJson } from "./flags.js";
import type { RunResult, StepRecord } from "../measure/types.js";
import { DATAPLANES, DEFAULT_BASELINE, type Dataplane } from "../scenario/schema.js";

/** Default and bounds of --resamples: fewer than 2000 leaves the 2.5% and 97.5% points noisy. */
export const DEFAULT_RESAMPLES = 2000;
const MAX_RESAMPLES = 1_000_000;

/** The campaigns a report covers, read together: one lab campaign, or one campaign per stack. */
export interface LoadedCampaigns {
  readonly ids: readonly string[];
  /** The first campaign's definition, with the dataplanes of all of them. */
  readonly definition: CampaignDefinition;
  readonly results: RunResult[];
  readonly steps: StepRecord[];
  /** Where they ran, as the report names it: "lab", "loopback", or "cloud (stacks a, b)". */
  readonly backend: string;
}

/**
 * Reads the runs of one or more campaigns from a results store, read-only (ResultStore.openReadOnly):
 * nothing is written to the store or beside it, and a store of an older schema is read as it is.
 *
 * Without --campaign the report covers every campaign of the store when each measured other
 * dataplanes (the cloud's shape: one campaign per stack, `testbed campaign --stack S` into one store);
 * campaigns that measured the same dataplane must be told apart with --campaign.
 */
export function loadCampaigns(db: string, campaignIds?: readonly string[]): LoadedCampaigns {
  if (!existsSync(db)) throw new Error(`--db ${db}: no such file; accepted: a results store written by \`testbed lab\` or \`testbed campaign\``);
  if (!statSync(db).isFile()) throw new Error(`--db ${db}: not a file; accepted: a results store (SQLite) file`);
  let store: ResultStore;
  try {
    store = ResultStore.openReadOnly(db);
  } catch (err) {
    if (!(err instanceof StoreError)) throw err;
    throw new Error(`--db ${db}: ${err.problem}; accepted: a file written by \`testbed lab\` or \`testbed campaign\``);
  }
  try {
    const all = store.campaignIds();
    if (all.length === 0) throw new Error(`--db ${db}: the store holds no campaign yet; run \`testbed lab\` or \`testbed campaign\` first`);
    for (const id of campaignIds ?? []) {
      if (!all.includes(id)) throw new Error(`--campaign ${id}: no such campaign in ${db}; accepted: ${all.join(", ")}`);
    }
    const ids = campaignIds ?? all;
    const campaigns = ids.map((id) => store.campaign(id)!);
    // Two campaigns of one dataplane would pool runs of different definitions into one cell.
    const seen = new Map<Dataplane, string>();
    for (const c of campaigns) {
      for (const d of c.definition.dataplanes) {
        const other = seen.get(d);
        if (other !== undefined) {
          throw new Error(
            `--campaign: campaigns ${other} and ${c.id} in ${db} both measured ${d}; choose the ones to report with --campaign (a comma-separated list of ${all.join(", ")})`,
          );
        }
        seen.set(d, c.id);
      }
    }
    const results = campaigns.flatMap((c) => store.results(c.id));
    if (results.length === 0) throw new Error(`--campaign ${ids.join(",")}: no run of ${ids.length > 1 ? "these campaigns" : "this campaign"} in ${db} has finished yet`);
    const first = campaigns[0]!.definition;
    const kinds = [...new Set(campaigns.map((c) => backendKind(c.definition.backend)))];
    const stacks = campaigns.filter((c) => c.definition.backend.startsWith(STACK_BACKEND_PREFIX)).map((c) => c.definition.backend.slice(STACK_BACKEND_PREFIX.length));
    return {
      ids,
      definition: { ...first, dataplanes: campaigns.flatMap((c) => c.definition.dataplanes) },
      results,
      steps: campaigns.flatMap((c) => store.steps(c.id)),
      backend: `${kinds.join(" and ")}${stacks.length > 0 ? ` (stack${stacks.length > 1 ? "s" : ""} ${stacks.join(", ")})` : ""}`,
    };
  } finally {
    store.close();
  }
}

export interface ReportRequest {
  readonly db: string;
  readonly out?: string;
  /** One campaign id, or several separated by commas; default every campaign of the store. */
  readonly campaign?: string;
  readonly seed?: number;
  readonly resamples?: number;
  /** Every other dataplane is compared with this one; default iptables. */
  readonly baseline?: Dataplane;
  /** Replace a folder that holds another campaign's report. */
  readonly force?: boolean;
}

/** What a written report is: report.md's path, its folder and its summary (report.json). */
export interface WrittenReport {
  readonly markdown: string;
  readonly out: string;
  readonly db: string;
  readonly summary: ReportSummary;
}

/** A report folder's problem in the words of the flag that chose it (the default: beside --db). */
function folderError(err: unknown, request: ReportRequest): never {
  if (!(err instanceof ReportFolderError)) throw err;
  throw new Error(request.out !== undefined ? `--out ${err.message}` : `report folder ${err.message} (the default beside --db; --out chooses another)`);
}

/**
 * Loads the campaign, builds its report and writes it whole (measure/report-output.ts). The folder is checked
 * before the store is read and again, against the campaign, before the report is computed.
 */
export async function writeCampaignReport(request: ReportRequest): Promise<WrittenReport> {
  if (request.out !== undefined) {
    try {
      checkReportFolder(request.out, undefined);
    } catch (err) {
      folderError(err, request);
    }
  }
  const loaded = loadCampaigns(request.db, request.campaign?.split(",").map((id) => id.trim()));
  const reportId = loaded.ids.join(", ");
  const out = request.out ?? path.join(path.dirname(path.resolve(request.db)), `report-${loaded.ids.length === 1 ? loaded.ids[0] : path.basename(request.db, path.extname(request.db))}`);
  try {
    checkReportFolder(out, reportId, { force: request.force === true });
  } catch (err) {
    folderError(err, request);
  }
  const baseline = request.baseline ?? DEFAULT_BASELINE;
  if (!loaded.definition.dataplanes.includes(baseline)) {
    throw new Error(`--baseline ${baseline}: campaign ${loaded.ids.join(", ")} did not measure it; accepted: ${loaded.definition.dataplanes.join(", ")}`);
  }
  const report = buildReport(loaded.results, {
    // The campaign's seed also seeds the bootstrap unless --seed overrides it.
    seed: request.seed ?? loaded.definition.seed,
    resamples: request.resamples ?? DEFAULT_RESAMPLES,
    paper: loadPaperReference(),
    campaignId: loaded.ids.join(", "),
    backend: loaded.backend,
    steps: loaded.steps,
    plannedRunsPerCell: loaded.definition.runs,
    baseline,
    ...(loaded.definition.primary ? { primary: loaded.definition.primary } : {}),
  });
  try {
    const written = await writeReport(report, out, { force: request.force === true });
    return { ...written, out: path.resolve(out), db: path.resolve(request.db) };
  } catch (err) {
    return folderError(err, request);
  }
}


export async function reportCommand(): Promise<Command> {
  return new Command("report")
    .description("Tables (CSV), figures (SVG) and a summary (report.md) of a campaign in a results store, with the paper's ratios beside ours")
    .requiredOption("--db <file>", "results store (SQLite) written by `testbed lab` or `testbed campaign`")
    .option("--out <dir>", "folder for report.md, the CSV tables, the SVG figures and report.json, written whole (default: report-<campaign> beside the store); never one holding other files, nor another campaign's report without --force")
    .option("--campaign <ids>", "campaigns to report, comma-separated (default: every campaign of the store, when each measured other dataplanes: one per stack)")
    .addOption(new Option("--baseline <dataplane>", "the dataplane every other one is compared with").choices(DATAPLANES).default(DEFAULT_BASELINE))
    .option("--seed <n>", "seed of the bootstrap resampling (default: the campaign's seed)", integerOption("--seed", 0, 2 ** 32 - 1))
    .option(
      "--resamples <n>",
      `bootstrap resamples per ratio (default ${DEFAULT_RESAMPLES})`,
      integerOption("--resamples", DEFAULT_RESAMPLES, MAX_RESAMPLES),
    )
    .option("--force", "replace a folder that holds another campaign's report (a folder holding anything else is never replaced)")
    .option("--json", "print a summary object instead of the path of report.md: {campaign, baseline, runs, tests, primary, warnings, files, out, db, markdown}")
    .action(async (opts: ReportRequest & { json?: boolean }) => {
      const written = await writeCampaignReport(opts);
      if (opts.json) printJson({ ...written.summary, out: written.out, db: written.db, markdown: written.markdown });
      else console.log(written.markdown);
    });
}
