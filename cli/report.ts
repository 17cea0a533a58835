// `testbed report --db FILE [--out DIR] [--campaign ID] [--baseline D] [--seed N] [--resamples N]`:
// tables, figures and a summary from a results store, each dataplane against the baseline.
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { Command, InvalidArgumentError, Option } from "commander";
import type { CampaignDefinition } from "../measure/campaign-plan.js";
import { loadPaperReference } from "../measure/paper-reference.js";
import { buildReport, writeReport } from "../measure/report.js";
import { OLDEST_SCHEMA_VERSION, ResultStore, SCHEMA_VERSION } from "../measure/store.js";
import type { RunResult } from "../measure/types.js";
import { DATAPLANES, DEFAULT_BASELINE, type Dataplane } from "../scenario/schema.js";

/** Default and bounds of --resamples: fewer than 2000 leaves the 2.5% and 97.5% points noisy. */
export const DEFAULT_RESAMPLES = 2000;
const MAX_RESAMPLES = 1_000_000;

export interface LoadedCampaign {
  readonly id: string;
  readonly definition: CampaignDefinition;
  readonly results: RunResult[];
}

/**
 * Reads one campaign's runs from a results store: the store is checked read-only first, so a file
 * that is not a results store is refused rather than given tables. An older store is upgraded in
 * place on opening (measure/store.ts), its runs unchanged.
 */
export function loadCampaign(db: string, campaignId?: string): LoadedCampaign {
  if (!existsSync(db)) throw new Error(`--db ${db}: no such file; accepted: a results store written by \`testbed lab\` or \`testbed campaign\``);
  if (!statSync(db).isFile()) throw new Error(`--db ${db}: not a file; accepted: a results store (SQLite) file`);
  let version: number;
  try {
    const peek = new Database(db, { readonly: true, fileMustExist: true });
    try {
      version = peek.pragma("user_version", { simple: true }) as number;
    } finally {
      peek.close();
    }
  } catch (err) {
    throw new Error(`--db ${db}: not a results store (${(err as Error).message}); accepted: a file written by \`testbed lab\` or \`testbed campaign\``);
  }
  if (version === 0) throw new Error(`--db ${db}: empty, or not a results store (no testbed tables); accepted: a file written by \`testbed lab\` or \`testbed campaign\``);
  if (version < OLDEST_SCHEMA_VERSION || version > SCHEMA_VERSION) {
    throw new Error(`--db ${db}: results store schema version ${version}; this testbed reads versions ${OLDEST_SCHEMA_VERSION} to ${SCHEMA_VERSION}`);
  }
  const store = ResultStore.open(db);
  try {
    const ids = store.campaignIds();
    if (ids.length === 0) throw new Error(`--db ${db}: the store holds no campaign yet; run \`testbed lab\` or \`testbed campaign\` first`);
    let id: string;
    if (campaignId !== undefined) {
      if (!ids.includes(campaignId)) throw new Error(`--campaign ${campaignId}: no such campaign in ${db}; accepted: ${ids.join(", ")}`);
      id = campaignId;
    } else if (ids.length > 1) {
      throw new Error(`--campaign: ${db} holds ${ids.length} campaigns; choose one with --campaign (accepted: ${ids.join(", ")})`);
    } else {
      id = ids[0]!;
    }
    const campaign = store.campaign(id)!;
    const results = store.results(id);
    if (results.length === 0) throw new Error(`--campaign ${id}: no run of this campaign in ${db} has finished yet`);
    return { id, definition: campaign.definition, results };
  } finally {
    store.close();
  }
}

export interface ReportRequest {
  readonly db: string;
  readonly out?: string;
  readonly campaign?: string;
  readonly seed?: number;
  readonly resamples?: number;
  /** Every other dataplane is compared with this one; default iptables. */
  readonly baseline?: Dataplane;
}

/** Loads the campaign, builds its report and writes it; returns the path of report.md. */
export async function writeCampaignReport(request: ReportRequest): Promise<string> {
  const loaded = loadCampaign(request.db, request.campaign);
  const baseline = request.baseline ?? DEFAULT_BASELINE;
  if (!loaded.definition.dataplanes.includes(baseline)) {
    throw new Error(`--baseline ${baseline}: campaign ${loaded.id} did not measure it; accepted: ${loaded.definition.dataplanes.join(", ")}`);
  }
  const report = buildReport(loaded.results, {
    // The campaign's seed also seeds the bootstrap unless --seed overrides it.
    seed: request.seed ?? loaded.definition.seed,
    resamples: request.resamples ?? DEFAULT_RESAMPLES,
    paper: loadPaperReference(),
    campaignId: loaded.id,
    backend: loaded.definition.backend,
    plannedRunsPerCell: loaded.definition.runs,
    baseline,
    ...(loaded.definition.primary ? { primary: loaded.definition.primary } : {}),
  });
  const out = request.out ?? path.join(path.dirname(path.resolve(request.db)), `report-${loaded.id}`);
  return writeReport(report, out);
}

function integerOption(flag: string, min: number, max: number) {
  return (text: string): number => {
    const n = Number(text);
    if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`accepted: a whole number from ${min} to ${max} (${flag})`);
    }
    return n;
  };
}

export async function reportCommand(): Promise<Command> {
  return new Command("report")
    .description("Tables (CSV), figures (SVG) and a summary (report.md) of a campaign in a results store, with the paper's ratios beside ours")
    .requiredOption("--db <file>", "results store (SQLite) written by `testbed lab` or `testbed campaign`")
    .option("--out <dir>", "directory for report.md, the CSV tables and the SVG figures (default: report-<campaign> beside the store)")
    .option("--campaign <id>", "campaign to report (default: the store's only campaign)")
    .addOption(new Option("--baseline <dataplane>", "the dataplane every other one is compared with").choices(DATAPLANES).default(DEFAULT_BASELINE))
    .option("--seed <n>", "seed of the bootstrap resampling (default: the campaign's seed)", integerOption("--seed", 0, 2 ** 32 - 1))
    .option(
      "--resamples <n>",
      `bootstrap resamples per ratio (default ${DEFAULT_RESAMPLES})`,
      integerOption("--resamples", DEFAULT_RESAMPLES, MAX_RESAMPLES),
    )
    .action(async (opts: ReportRequest) => {
      const summary = await writeCampaignReport(opts);
      console.log(summary);
    });
}
