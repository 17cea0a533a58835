// `testbed campaign`: the measurement sweep on a deployed stack (--stack S), or a dry run of the
// same pipeline on this host's loopback (--loopback). Results go to a SQLite store; running the
// same command again resumes where a killed campaign stopped.
import path from "node:path";
import { Command } from "commander";
import { driveCampaign, reportFailedRuns, sayUpgrade } from "./campaign-terminal.js";
import { badFlag as bad, campaignId as checkedCampaignId, FlagError, listOf as list, printJson, seconds, serviceCounts, wholeNumber } from "./flags.js";
import { campaignIdFor, planCampaign, STACK_BACKEND_PREFIX, type CampaignDefinition } from "../measure/campaign-plan.js";
import { CLOUD_PROFILES, CloudBackend } from "../backends/cloud.js";
import { CLOUD_PROGRAMMING } from "../backends/cloud-programming.js";
import { PulumiStack, SshShell } from "../backends/cloud-transport.js";
import { LOOPBACK_PROFILES, LoopbackBackend } from "../backends/loopback.js";
import { ResultStore } from "../measure/store.js";
import { campaignTraffic } from "../measure/connection-setup.js";
import { primaryComparisons, SETUP_PRIMARY_DESIGN } from "../measure/primary-design.js";
import { RUN_PROFILES, type Backend, type RunProfile } from "../measure/types.js";
import type { Family } from "../scenario/cidr.js";
import { DATAPLANES, DEFAULT_BASELINE, FAMILIES, podRouting, scenarioSchema, serviceCapacity, type Dataplane, type Scenario } from "../scenario/schema.js";
import { DEFAULT_PATH, DEFAULT_PATHS, PATHS, SERVICE_PATHS, type ServicePath } from "../scenario/paths.js";

const ORDERS = ["random", "sequential"] as const;
const MAX_RUNS = 100_000;
const MAX_RETRIES = 20;

/** Loopback has no dataplane: every Service count measures the same path, so one step suffices. */
export const LOOPBACK_DEFAULTS = { services: [1], runs: 3, flowSeconds: 5 } as const;

/** Raw commander options (strings as typed). */
export interface CampaignOptions {
  stack?: string;
  loopback?: boolean;
  db: string;
  campaign?: string;
  runs?: string;
  services?: string;
  profiles?: string;
  families?: string;
  dataplanes?: string;
  /** Service paths, comma-separated (scenario/paths.ts); with --stack. */
  paths?: string;
  flowSeconds?: string;
  seed?: string;
  order?: string;
  interleave?: string;
  keepLogs?: boolean;
  /** false with --no-hops. */
  hops?: boolean;
  retries: string;
  retryFailed?: boolean;
  projectDir: string;
  json?: boolean;
}

/** Checked options; undefined means "the scenario's (or loopback's) default". */
export interface CampaignFlags {
  readonly target: { kind: "stack"; stack: string } | { kind: "loopback" };
  readonly db: string;
  readonly campaign?: string;
  readonly runs?: number;
  readonly services?: number[];
  /** Undefined: every profile the backend measures. */
  readonly profiles?: RunProfile[];
  readonly families?: Family[];
  readonly dataplanes?: Dataplane[];
  /** Undefined: every path the stack serves. */
  readonly paths?: ServicePath[];
  readonly flowSeconds?: number;
  readonly seed?: number;
  readonly randomize: boolean;
  readonly interleave: number;
  readonly keepLogs: boolean;
  /** Time the worker's part of latency and setup runs with the hop probes (--stack). */
  readonly hops: boolean;
  readonly retries: number;
  readonly retryFailed: boolean;
  readonly projectDir: string;
}

/** Checks every flag before anything starts; errors name the flag, the value and what is accepted. */
export function parseCampaignFlags(o: CampaignOptions): CampaignFlags {
  if (o.stack !== undefined && o.loopback) {
    throw new FlagError("--stack and --loopback exclude each other; accepted: --stack S for a deployed stack, or --loopback for a dry run on this host");
  }
  if (o.stack === undefined && !o.loopback) {
    throw new FlagError(`missing --stack S (a deployed stack, e.g. ${DATAPLANES.join(", ")}) or --loopback (a dry run on this host's loopback)`);
  }
  if (o.stack !== undefined && !/^[A-Za-z0-9._/-]+$/.test(o.stack)) {
    bad("stack", o.stack, "a Pulumi stack name (letters, digits, '.', '_', '-', '/'), e.g. iptables");
  }
  if (o.stack === undefined && o.paths !== undefined) {
    throw new FlagError(`--paths: only with --stack; loopback sends over this host's loopback, through no Service path`);
  }
  if (o.stack !== undefined && o.dataplanes !== undefined) {
    throw new FlagError(`--dataplanes: only with --loopback; a stack runs one dataplane (testbed:dataplane), each other dataplane is another stack`);
  }
  if (o.campaign !== undefined) checkedCampaignId(o.campaign);
  if (o.order !== undefined && !(ORDERS as readonly string[]).includes(o.order)) bad("order", o.order, ORDERS.join(" or "));
  return {
    target: o.stack !== undefined ? { kind: "stack", stack: o.stack } : { kind: "loopback" },
    db: o.db,
    ...(o.campaign !== undefined ? { campaign: o.campaign } : {}),
    ...(o.runs !== undefined ? { runs: wholeNumber("runs", o.runs, 1, MAX_RUNS) } : {}),
    ...(o.services !== undefined ? { services: serviceCounts("services", o.services, "1,1000,2000") } : {}),
    ...(o.profiles !== undefined ? { profiles: list("profiles", o.profiles, RUN_PROFILES) } : {}),
    ...(o.families !== undefined ? { families: list("families", o.families, FAMILIES) } : {}),
    ...(o.dataplanes !== undefined ? { dataplanes: list("dataplanes", o.dataplanes, DATAPLANES) } : {}),
    ...(o.paths !== undefined ? { paths: list("paths", o.paths, SERVICE_PATHS) } : {}),
    ...(o.flowSeconds !== undefined ? { flowSeconds: seconds("flow-seconds", o.flowSeconds, 1, 3600) } : {}),
    ...(o.seed !== undefined ? { seed: wholeNumber("seed", o.seed, 0, 2 ** 32 - 1) } : {}),
    randomize: (o.order ?? "random") === "random",
    interleave: o.interleave !== undefined ? wholeNumber("interleave", o.interleave, 0, MAX_RUNS) : 0,
    keepLogs: o.keepLogs === true,
    hops: o.hops !== false,
    retries: wholeNumber("retries", o.retries, 0, MAX_RETRIES),
    retryFailed: o.retryFailed === true,
    projectDir: o.projectDir,
  };
}

/**
 * The profiles a campaign runs on a backend: the flag's, each of which the backend must measure, or
 * by default every one it does.
 */
export function campaignProfiles(f: Pick<CampaignFlags, "profiles">, backend: Pick<Backend, "name" | "profiles">): RunProfile[] {
  if (f.profiles === undefined) return [...backend.profiles];
  const unoffered = f.profiles.filter((p) => !backend.profiles.includes(p));
  if (unoffered.length > 0) {
    throw new FlagError(`--profiles: ${unoffered.join(", ")} is not measured by ${backend.name}; accepted: a comma-separated list of ${backend.profiles.join(", ")}`);
  }
  return f.profiles;
}

/** The loopback campaign: loopback defaults, every dataplane (no dataplane is on the path), the traffic profiles the backend measures, no link cap. */
export function loopbackDefinition(f: CampaignFlags, profiles: readonly RunProfile[]): CampaignDefinition {
  const sweep = scenarioSchema.shape.sweep.parse(undefined);
  return {
    backend: "loopback",
    dataplanes: f.dataplanes ?? [...DATAPLANES],
    families: f.families ?? [...FAMILIES],
    profiles: [...profiles],
    services: f.services ?? [...LOOPBACK_DEFAULTS.services],
    runs: f.runs ?? LOOPBACK_DEFAULTS.runs,
    flowSeconds: f.flowSeconds ?? LOOPBACK_DEFAULTS.flowSeconds,
    linkMbps: 0,
    seed: f.seed ?? sweep.seed,
    order: { randomize: f.randomize, interleave: f.interleave },
    traffic: campaignTraffic(scenarioSchema.shape.traffic.parse(undefined)),
  };
}

/**
 * The stack's campaign: its dataplane, its sweep unless flags narrow it, checked against what it
 * deployed. With the setup profile it declares the lab's primary comparisons (connection setup at the
 * largest step, each dataplane against iptables), sized for the three stacks a cloud study compares:
 * its own cells get the runs those tests need.
 */
export function stackDefinition(
  f: CampaignFlags,
  stack: string,
  scenario: Scenario,
  exportedFamilies: readonly Family[],
  profiles: readonly RunProfile[],
  /** The paths the stack serves (CloudBackend.paths). */
  servedPaths: readonly ServicePath[] = DEFAULT_PATHS,
): CampaignDefinition {
  const families = f.families ?? scenario.families.filter((x) => exportedFamilies.includes(x));
  if (families.length === 0) {
    throw new FlagError(`stack ${stack} exports no D-ITG endpoint for its families (${scenario.families.join(", ")}); redeploy it with \`pulumi up --stack ${stack}\``);
  }
  for (const family of families) {
    if (!scenario.families.includes(family) || !exportedFamilies.includes(family)) {
      bad("families", families.join(","), `families stack ${stack} deploys a receiver for: ${exportedFamilies.join(", ")}`);
    }
  }
  const services = f.services ?? scenario.sweep.services;
  const cap = serviceCapacity(scenario).clusterIp;
  if (services.some((n) => n > cap)) {
    bad("services", services.join(","), `counts up to ${cap}, what the service subnets of stack ${stack} hold (testbed:kubernetes.serviceSubnets)`);
  }
  const paths = f.paths ?? servedPaths;
  const unserved = paths.filter((p) => !servedPaths.includes(p));
  if (unserved.length > 0) {
    bad("paths", paths.join(","), `paths stack ${stack} serves: ${servedPaths.join(", ")} (testbed:paths lists the others to deploy)`);
  }
  const runs = f.runs ?? scenario.sweep.runs;
  const primary = primaryComparisons(SETUP_PRIMARY_DESIGN, { dataplanes: DATAPLANES, families, profiles, services }, DEFAULT_BASELINE);
  return {
    backend: `${STACK_BACKEND_PREFIX}${stack}`,
    dataplanes: [scenario.dataplane],
    families,
    profiles: [...profiles],
    services,
    runs,
    ...(primary ? { primary: { ...primary, runs: Math.max(primary.runs, runs) } } : {}),
    flowSeconds: f.flowSeconds ?? scenario.sweep.flowSeconds,
    linkMbps: scenario.linkMbps,
    seed: f.seed ?? scenario.sweep.seed,
    order: { randomize: f.randomize, interleave: f.interleave },
    traffic: campaignTraffic(scenario.traffic),
    ...(profiles.includes("programming") ? { programming: CLOUD_PROGRAMMING } : {}),
    // The paper's path alone is left out of the definition: the campaign (its id, its runs) is the one it was before paths.
    ...(paths.some((p) => p !== DEFAULT_PATH) ? { paths: [...paths] } : {}),
    ...(paths.some((p) => PATHS[p].endpointWorker !== PATHS[p].translatingWorker) ? { podRouting: podRouting(scenario) } : {}),
  };
}

async function openBackend(f: CampaignFlags): Promise<{ backend: Backend; definition: CampaignDefinition }> {
  if (f.target.kind === "loopback") {
    // Logs live next to the store: a killed campaign's leftovers are cleared when it resumes.
    const workDir = `${path.resolve(f.db)}.loopback`;
    const backend = await LoopbackBackend.start({ families: f.families ?? [...FAMILIES], workDir });
    try {
      return { backend, definition: loopbackDefinition(f, campaignProfiles(f, backend)) };
    } catch (err) {
      await backend.teardown();
      throw err;
    }
  }
  const stack = await PulumiStack.select(f.target.stack, f.projectDir);
  const backend = await CloudBackend.open({ stack, shell: (access) => new SshShell(access), hops: f.hops });
  try {
    const exported = Object.keys(backend.lab.ditgEndpoints) as Family[];
    return { backend, definition: stackDefinition(f, f.target.stack, backend.scenario, exported, campaignProfiles(f, backend), backend.paths) };
  } catch (err) {
    await backend.teardown();
    throw err;
  }
}

async function campaignAction(o: CampaignOptions): Promise<void> {
  const flags = parseCampaignFlags(o);
  // The backend first: a missing CLI, stack or SSH access fails before any file is created.
  const opened = await openBackend(flags);
  let store: ResultStore;
  let campaignId: string;
  try {
    store = ResultStore.open(flags.db, { onUpgrade: sayUpgrade });
    campaignId = flags.campaign ?? campaignIdFor(opened.definition);
    store.ensureCampaign(campaignId, opened.definition, planCampaign(campaignId, opened.definition));
  } catch (err) {
    await opened.backend.teardown();
    throw err;
  }

  try {
    const summary = await driveCampaign({
      store,
      campaignId,
      backend: opened.backend,
      flowSeconds: opened.definition.flowSeconds,
      retries: flags.retries,
      keepLogs: flags.keepLogs,
      retryFailed: flags.retryFailed,
      stopMessage: "stopping after the current run (Ctrl-C again to quit now); the same command resumes",
      json: o.json === true,
    });
    if (o.json) {
      printJson({
        campaign: summary.campaign, db: summary.db, backend: opened.definition.backend, total: summary.total, done: summary.done,
        failed: summary.failedForGood, committed: summary.committed, stopped: summary.stopped, seconds: Number(summary.seconds.toFixed(1)),
      });
    }
    reportFailedRuns(summary);
  } finally {
    store.close();
  }
}

export async function campaignCommand(): Promise<Command> {
  return new Command("campaign")
    .description(
      "Run the measurement sweep (Service counts x families x profiles x repetitions) and store every run; the same command resumes a stopped or killed campaign",
    )
    .option("--stack <name>", "a deployed stack (needs the Pulumi CLI and SSH to its bastion); its dataplane and scenario decide the defaults")
    .option(
      "--loopback",
      `dry run of the whole pipeline on this host: real ITGRecv/ITGSend over 127.0.0.1 and ::1, no dataplane (defaults: --services ${LOOPBACK_DEFAULTS.services.join(",")} --runs ${LOOPBACK_DEFAULTS.runs} --flow-seconds ${LOOPBACK_DEFAULTS.flowSeconds}, every dataplane)`,
    )
    .option("--db <file>", "results store (SQLite)", "results.db")
    .option("--campaign <id>", "campaign id in the store (default: derived from the definition, so the same flags resume)")
    .option("--runs <n>", "repetitions per cell (default: testbed:sweep.runs)")
    .option("--services <list>", "Service counts, e.g. 1,1000,2000 (default: testbed:sweep.services)")
    .option("--profiles <list>", `what to measure (default: all the target measures): with --stack ${CLOUD_PROFILES.join(",")}; with --loopback ${LOOPBACK_PROFILES.join(",")}`)
    .option("--families <list>", "address families: ipv4,ipv6 (default: the stack's testbed:families)")
    .option("--dataplanes <list>", `with --loopback only: ${DATAPLANES.join(",")} (default: all of them)`)
    .option("--paths <list>", `with --stack: Service paths, of ${SERVICE_PATHS.join(",")} (default: every path the stack serves, testbed:paths; the programming profile runs on ${DEFAULT_PATH} alone)`)
    .option("--flow-seconds <s>", "duration of each flow (default: testbed:sweep.flowSeconds)")
    .option("--seed <n>", "seed of the run order (default: testbed:sweep.seed)")
    .option("--order <order>", "random (seeded shuffle of steps and cells) or sequential", "random")
    .option("--interleave <n>", "alternate dataplanes every n repetitions within a Service count; 0: one dataplane after the other", "0")
    .option("--no-hops", "with --stack: no hop probes on the worker (latency and setup runs are then not cut into the worker's sections)")
    .option("--keep-logs", "keep raw D-ITG logs next to the store (<db>.logs/<campaign>/)")
    .option("--retries <n>", "extra attempts of a failed run", "2")
    .option("--retry-failed", "also re-attempt runs stored as failed")
    .option("--project-dir <dir>", "the Pulumi project directory (with --stack)", ".")
    .option("--json", "print a summary object instead of the closing line: {campaign, db, backend, total, done, failed, committed, stopped, seconds}")
    .addHelpText("after", "\nExit status: 0 when every run passed, 1 when runs failed for good (the closing words say how many) or on an error, 130 when stopped.")
    .action(campaignAction);
}
