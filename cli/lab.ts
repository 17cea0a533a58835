// `testbed lab`: the experiment on this host's kernel. One lab of network namespaces, every Service
// dataplane (or those of --dataplanes) interleaved over the Service sweep, TCP throughput, UDP
// latency and connection setup through the NodePort in both families, then the report against the
// baseline. Results go to a SQLite store; the same command (same --db and flags) resumes a stopped
// or killed campaign.
import { mkdirSync } from "node:fs";
import path from "node:path";
import { Command, Option } from "commander";
import { campaignIdFor, planCampaign, type CampaignDefinition } from "../measure/campaign-plan.js";
import { formatDuration } from "../measure/campaign-progress.js";
import { describeTimings } from "../measure/phase-times.js";
import { ResultStore } from "../measure/store.js";
import { medianOf } from "../measure/statistics.js";
import { pathOf, type RunProfile, type RunResult } from "../measure/types.js";
import type { Family } from "../scenario/cidr.js";
import { DATAPLANE_DESCRIPTIONS, DATAPLANES, DEFAULT_BASELINE, serviceCapacity, type Dataplane } from "../scenario/schema.js";
import { LabBackend, labProblem, pathProblem } from "../backends/lab.js";
import { DEFAULT_PATH, DEFAULT_PATHS, PATHS, SERVICE_PATHS, type ServicePath } from "../scenario/paths.js";
import { runJudge } from "../measure/campaign.js";
import { labScenario, LAB_SERVICE_SUBNETS } from "../lab/lab-scenario.js";
import { planServiceMaps } from "../lab/dataplanes/ebpf/service-maps.js";
import { IPTABLES_BACKENDS, type IptablesBackend } from "../lab/dataplanes/iptables/kernel.js";
import type { StepSync } from "../lab/dataplanes/index.js";
import { DEFAULT_LOAD_BALANCER_MODE, LOAD_BALANCER_MODES, type LoadBalancerMode } from "../lab/dataplanes/ebpf/node-config.js";
import { estimateLabWall, type WallEstimate } from "../lab/wall-estimate.js";
import {
  labDefinition,
  labProfile,
  LAB_FAMILIES,
  LAB_PROFILE_CHOICES,
  LAB_PROFILE_NAMES,
  LAB_RUN_PROFILES,
  type LabProfile,
} from "../lab/profiles.js";
import { changeCells } from "../measure/report-programming.js";
import { findRunPrefixes } from "../lab/run-registry.js";
import { cleanupLeftovers, planTopology } from "../lab/topology.js";
import { buildServiceSet } from "../workloads/service-set.js";
import { driveCampaign, reportFailedRuns, sayUpgrade, type TerminalSummary } from "./campaign-terminal.js";
import { badFlag as bad, campaignId as checkedCampaignId, listOf as list, printJson, serviceCounts, wholeNumber } from "./flags.js";
import { writeCampaignReport } from "./report.js";
import { checkReportFolder, ReportFolderError } from "../measure/report-output.js";

const MAX_RUNS = 100_000;
const MAX_RETRIES = 20;

/** Raw commander options (strings as typed). */
export interface LabOptions {
  profile: string;
  dataplanes?: string;
  baseline?: string;
  out: string;
  db?: string;
  cleanup?: boolean;
  cap: boolean;
  families?: string;
  profiles?: string;
  services?: string;
  runs?: string;
  flowSeconds?: string;
  seed?: string;
  retries: string;
  retryFailed?: boolean;
  keepLogs?: boolean;
  iptables: string;
  campaign?: string;
  /** --no-hops sets it false. */
  hops?: boolean;
  fullSyncSteps?: boolean;
  json?: boolean;
  /** Service paths, comma-separated (scenario/paths.ts). */
  paths?: string;
  /** The eBPF model's loadBalancer.mode (--lb-mode). */
  lbMode?: string;
}

/** Checked options. */
export interface LabFlags {
  readonly profile: LabProfile;
  readonly out: string;
  readonly db: string;
  readonly cleanup: boolean;
  readonly definition: CampaignDefinition;
  readonly retries: number;
  readonly retryFailed: boolean;
  readonly keepLogs: boolean;
  readonly iptablesBackend: IptablesBackend;
  readonly campaign?: string;
  /** The report compares every other dataplane with this one. */
  readonly baseline: Dataplane;
  /** Hop probes on latency and setup runs (lab/hops/). */
  readonly hops: boolean;
  /** How the dataplanes move between Service counts: partial syncs, or one full sync per step (--full-sync-steps). */
  readonly stepSync: StepSync;
  /** Cilium's loadBalancer.mode in the eBPF model, for remote NodePort backends (--lb-mode). */
  readonly loadBalancerMode: LoadBalancerMode;
}




/** The largest Service count the lab holds: ClusterIPs of its service subnets, Cilium's default lbMapMax and its 16-bit service ids. */
export function labServiceLimit(): number {
  const plan = planTopology("dptb0000");
  const scenario = labScenario({ plan });
  let limit = serviceCapacity(scenario).clusterIp;
  // The eBPF service map: find the largest N whose frontends fit (binary search over the pure planner).
  const fits = (n: number) => {
    try {
      planServiceMaps(buildServiceSet(scenario, n), { node: plan.addresses.node, pod: plan.addresses.pod });
      return true;
    } catch {
      return false;
    }
  };
  if (fits(limit)) return limit;
  let lo = 0;
  while (lo < limit) {
    const mid = Math.ceil((lo + limit) / 2);
    if (fits(mid)) lo = mid;
    else limit = mid - 1;
  }
  return lo;
}

function labServiceCounts(value: string): number[] {
  const counts = serviceCounts("services", value, "1,1000,10000");
  const largest = Math.max(...counts);
  // Only a count above the paper's sweep needs the (slower) exact limit.
  if (largest > 10_000) {
    const limit = labServiceLimit();
    if (largest > limit) {
      bad("services", value, `counts up to ${limit} (what the lab's service subnets ${LAB_SERVICE_SUBNETS.ipv4} and ${LAB_SERVICE_SUBNETS.ipv6} and the eBPF load balancer, 65536 map entries and 16-bit service ids, hold)`);
    }
  }
  return counts;
}

/** Checks every flag before anything starts; errors name the flag, the value and what is accepted. */
export function parseLabFlags(o: LabOptions): LabFlags {
  const profile = labProfile(o.profile);
  if (!(IPTABLES_BACKENDS as readonly string[]).includes(o.iptables)) bad("iptables", o.iptables, IPTABLES_BACKENDS.join(" or "));
  if (o.campaign !== undefined) checkedCampaignId(o.campaign);
  const flowSeconds = o.flowSeconds === undefined ? undefined : Number(o.flowSeconds);
  if (o.flowSeconds !== undefined && !(/^\d+(\.\d+)?$/.test(o.flowSeconds.trim()) && flowSeconds! >= 1 && flowSeconds! <= 3600)) {
    bad("flow-seconds", o.flowSeconds, "seconds from 1 to 3600");
  }
  const dataplanes = o.dataplanes === undefined ? [...DATAPLANES] : list<Dataplane>("dataplanes", o.dataplanes, DATAPLANES);
  const baseline = (o.baseline ?? DEFAULT_BASELINE) as Dataplane;
  if (!dataplanes.includes(baseline)) {
    bad("baseline", baseline, `one of the dataplanes the campaign runs (${dataplanes.join(", ")}); with --dataplanes leaving out ${DEFAULT_BASELINE}, name another baseline`);
  }
  const paths = o.paths === undefined ? DEFAULT_PATHS : list<ServicePath>("paths", o.paths, SERVICE_PATHS);
  const beyond = paths.some((p) => p !== DEFAULT_PATH);
  if (beyond) {
    for (const d of dataplanes) {
      const problem = pathProblem(d, paths);
      if (problem) bad("paths", o.paths!, `with --dataplanes ${dataplanes.join(",")}: paths each of them serves, since ${problem}; or --dataplanes leaving ${d} out`);
    }
  }
  const loadBalancerMode = (o.lbMode ?? DEFAULT_LOAD_BALANCER_MODE) as LoadBalancerMode;
  if (!LOAD_BALANCER_MODES.includes(loadBalancerMode)) bad("lb-mode", o.lbMode!, LOAD_BALANCER_MODES.join(" or "));
  const measured = labDefinition(profile, {
    dataplanes,
    baseline,
    ...(o.families !== undefined ? { families: list<Family>("families", o.families, LAB_FAMILIES) } : {}),
    ...(o.profiles !== undefined ? { profiles: list<RunProfile>("profiles", o.profiles, LAB_PROFILE_CHOICES) } : {}),
    ...(o.services !== undefined ? { services: labServiceCounts(o.services) } : {}),
    ...(o.runs !== undefined ? { runs: wholeNumber("runs", o.runs, 1, MAX_RUNS) } : {}),
    ...(flowSeconds !== undefined ? { flowSeconds } : {}),
    ...(o.seed !== undefined ? { seed: wholeNumber("seed", o.seed, 0, 2 ** 32 - 1) } : {}),
    ...(o.cap ? {} : { linkMbps: 0 }),
  });
  // The paper's path alone is left out of the definition: the campaign (its id, its runs) is the one it was before paths.
  // So is the eBPF model's default SNAT; DSR makes the eBPF runs on nodeport-remote another campaign.
  const dsr = loadBalancerMode === "dsr" && dataplanes.includes("ebpf") && paths.includes("nodeport-remote");
  const definition: CampaignDefinition = { ...measured, ...(beyond ? { paths } : {}), ...(dsr ? { loadBalancerMode: "dsr" as const } : {}) };
  const out = path.resolve(o.out);
  return {
    profile,
    out,
    db: path.resolve(o.db ?? path.join(out, "results.db")),
    cleanup: o.cleanup === true,
    definition,
    retries: wholeNumber("retries", o.retries, 0, MAX_RETRIES),
    retryFailed: o.retryFailed === true,
    keepLogs: o.keepLogs === true,
    iptablesBackend: o.iptables as IptablesBackend,
    ...(o.campaign !== undefined ? { campaign: o.campaign } : {}),
    baseline,
    hops: o.hops !== false,
    stepSync: o.fullSyncSteps === true ? "full" : "partial",
    loadBalancerMode,
  };
}

/** What the campaign will do, in a few lines for the start of the run. */
export function describePlan(flags: LabFlags, runs: number): string {
  const d = flags.definition;
  return [
    `lab profile ${flags.profile.name}: ${flags.profile.description}`,
    `  Services ${d.services.join(", ")}; ${d.profiles.join(", ")}; ${d.families.join(", ")}; ${d.dataplanes.map((p) => (p === flags.baseline ? `${p} (baseline)` : p)).join(", ")} interleaved; iptables rules through iptables-${flags.iptablesBackend}`,
    ...(d.primary
      ? [
          `  primary comparisons: ${d.primary.profile} at ${d.primary.services} Services, ${d.primary.statistic}, each dataplane against ${d.primary.baseline}, per family: ${d.primary.runs} runs per cell (power ${d.primary.design.power} for a ${Math.round(d.primary.design.minimumEffect * 100)}% difference at a run-to-run CV of ${d.primary.design.runCv})`,
        ]
      : []),
    `  ${runs} runs of ${d.flowSeconds} s, link cap ${d.linkMbps > 0 ? `${d.linkMbps} Mbit/s` : "off"}`,
    `  ${describeEstimate(estimateLabWall(d, { hops: flags.hops, stepSync: flags.stepSync }))}`,
    ...(d.paths ? [`  paths: ${d.paths.join(", ")} (workers and a client pod as the paths need them; hop probes on ${DEFAULT_PATH} only)`] : []),
    ...(d.paths?.includes("nodeport-remote") && d.dataplanes.includes("ebpf")
      ? [`  eBPF model on nodeport-remote: loadBalancer.mode ${flags.loadBalancerMode} (${flags.loadBalancerMode === "snat" ? "the client's address SNATed to worker 1's, as Cilium's default; --lb-mode dsr keeps it" : "the client's address kept, the reply straight from worker 2"})`]
      : []),
    `  hop probes: ${flags.hops ? "on for latency and setup runs (--no-hops turns them off)" : "off"}`,
    `  steps: ${flags.stepSync === "partial" ? "moved by partial syncs, as a running cluster moves (--full-sync-steps: one full sync per step)" : "one full sync per step"}`,
    ...(d.programming
      ? [`  programming: every change probed ${d.programming.probesPerSecond} times a second through the changed Service's NodePort, add-100 of ${d.programming.addMany} Services${d.programming.coldStart ? ", cold starts timed" : ""}`]
      : []),
    `  results: ${flags.db}`,
  ].join("\n");
}

/** Pure: the plan's estimate of the wall time in one line, with what it is made of. */
export function describeEstimate(e: WallEstimate): string {
  const part = (s: number) => `${formatDuration(s)} (${((100 * s) / e.totalS).toFixed(0)} %)`;
  return [
    `about ${formatDuration(e.totalS)}${e.totalS >= 2 * 86400 ? ` (${(e.totalS / 86400).toFixed(1)} days)` : ""} on a busy 2-core host (lab/wall-estimate.ts): the flows ${part(e.flowsS)}`,
    `the runs beyond their flows ${part(e.runsS)}`,
    ...(e.programmingS > 0 ? [`programming ${part(e.programmingS)}`] : []),
    `${e.stepChanges} changes of step ${part(e.stepChangesS)}, ${formatDuration(e.syncsS)} of them installing and moving Services`,
  ].join(", ");
}

/**
 * The metric the paper lacks, in a few lines for the end of the run: per family and Service count,
 * the median over ok runs of each run's median handshake time, per dataplane, and each dataplane's
 * ratio against the baseline. The report carries the full statistics of the setup profile (cells.csv,
 * figures, ratios).
 */
export function setupSummary(results: readonly RunResult[], baseline: Dataplane): string[] {
  const paths = SERVICE_PATHS.filter((p) => results.some((r) => r.profile === "setup" && pathOf(r) === p));
  if (paths.every((p) => p === DEFAULT_PATH)) return pathSetupSummary(results, baseline, "through the NodePort");
  // Beyond the paper's path: one table per path, each named by its way through the cluster.
  return paths.flatMap((p) => pathSetupSummary(results.filter((r) => pathOf(r) === p), baseline, `on ${p} (${PATHS[p].description})`));
}

function pathSetupSummary(results: readonly RunResult[], baseline: Dataplane, where: string): string[] {
  const setup = results.filter((r) => r.profile === "setup");
  const byCell = new Map<string, number[]>();
  for (const r of setup) {
    if (r.status !== "ok" || !r.summary) continue;
    const id = `${r.family} ${r.services} ${r.dataplane}`;
    byCell.set(id, [...(byCell.get(id) ?? []), r.summary.p50S * 1e6]);
  }
  const steps = [...new Set(setup.map((r) => `${r.family} ${r.services}`))].sort((a, b) => {
    const [fa, na] = a.split(" ");
    const [fb, nb] = b.split(" ");
    return fa! < fb! ? -1 : fa! > fb! ? 1 : Number(na) - Number(nb);
  });
  if (steps.length === 0) return [];
  const dataplanes = DATAPLANES.filter((d) => setup.some((r) => r.dataplane === d));
  const compared = dataplanes.filter((d) => d !== baseline);
  const median = (id: string) => (byCell.has(id) ? medianOf(byCell.get(id)!) : NaN);
  const width = (label: string) => Math.max(8, label.length);
  const column = (label: string, x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : "-").padStart(width(label));
  const ratioLabels = compared.map((d) => `${d}/${baseline}`);
  const lines = [
    `connection setup ${where}, median handshake (µs; median over runs), and each dataplane over the baseline:`,
    ["family", "  Services", ...dataplanes.map((d) => d.padStart(width(d))), ...ratioLabels.map((l) => l.padStart(width(l)))].join("  "),
  ];
  for (const step of steps) {
    const [family, services] = step.split(" ");
    const times = new Map(dataplanes.map((d) => [d, median(`${step} ${d}`)]));
    lines.push(
      [
        family!.padEnd(6),
        services!.padStart(10),
        ...dataplanes.map((d) => column(d, times.get(d)!, 0)),
        ...compared.map((d, i) => column(ratioLabels[i]!, times.get(d)! / (times.get(baseline) ?? NaN), 2)),
      ].join("  "),
    );
  }
  return lines;
}

/**
 * The programming profile in a few lines for the end of the run: at the largest Service count, per
 * dataplane and family, the median time until add-one reached the packets and the median commit of a
 * full sync. The report has every change and statistic (programming.csv).
 */
export function programmingSummary(results: readonly RunResult[]): string[] {
  const cells = changeCells(results);
  if (cells.length === 0) return [];
  const largest = Math.max(...cells.map((c) => c.services));
  const lines = [`programming at ${largest} Services (medians, ms): add-one until the packets saw it, full-sync's commit:`];
  for (const family of LAB_FAMILIES) {
    for (const dataplane of DATAPLANES) {
      const at = (change: string) => cells.find((c) => c.family === family && c.dataplane === dataplane && c.services === largest && c.change === change);
      const add = at("add-one")?.statistics.programmedS?.p50;
      const full = at("full-sync")?.statistics.commitS?.p50;
      if (add === undefined && full === undefined) continue;
      const ms = (s: number | undefined) => (s === undefined ? "-" : (s * 1000).toFixed(1));
      lines.push(`  ${family.padEnd(5)} ${dataplane.padEnd(9)} add-one ${ms(add).padStart(9)}   full-sync commit ${ms(full).padStart(10)}`);
    }
  }
  return lines;
}

function cleanupAction(): void {
  const { removed, live } = cleanupLeftovers();
  const names = Object.keys(removed);
  if (names.length === 0) process.stdout.write("no leftovers of crashed lab runs\n");
  for (const [prefix, objects] of Object.entries(removed)) {
    process.stdout.write(
      `removed lab run ${prefix}: ${objects.namespaces.length} namespaces, ${objects.links.length} links, ${objects.mounts.length} mounts, ${objects.dirs.length} directories\n`,
    );
  }
  for (const prefix of live) process.stdout.write(`left lab run ${prefix} alone: its process is still running\n`);
}

async function labAction(o: LabOptions): Promise<void> {
  const flags = parseLabFlags(o);
  // Before anything is created: root, Linux and the tools.
  const problem = labProblem();
  if (problem) throw new Error(`lab: ${problem}; nothing was changed`);
  if (flags.cleanup) {
    cleanupAction();
    return;
  }
  const leftovers = findRunPrefixes().length;
  if (leftovers > 0) process.stderr.write(`note: ${leftovers} other lab run(s) exist on this host (live, or left by a crash: \`testbed lab --cleanup\`)\n`);

  const def = flags.definition;
  const campaignId = flags.campaign ?? campaignIdFor(def);
  // The report's folder is checked before anything is measured, not when the campaign has run.
  const reportDir = path.join(flags.out, "report");
  try {
    checkReportFolder(reportDir, campaignId);
  } catch (err) {
    if (!(err instanceof ReportFolderError)) throw err;
    throw new Error(`--out ${flags.out}: the lab's report folder ${err.message}; nothing was measured`);
  }
  mkdirSync(path.dirname(flags.db), { recursive: true });
  const store = ResultStore.open(flags.db, { onUpgrade: sayUpgrade });
  let backend: LabBackend | undefined;
  let summary: TerminalSummary;
  try {
    const plan = planCampaign(campaignId, def);
    store.ensureCampaign(campaignId, def, plan);
    process.stderr.write(`${describePlan(flags, plan.length)}\n`);
    backend = await LabBackend.start({ linkMbps: def.linkMbps, iptablesBackend: flags.iptablesBackend, hops: flags.hops, stepSync: flags.stepSync, loadBalancerMode: flags.loadBalancerMode, ...(def.paths ? { paths: def.paths } : {}) });
    process.stderr.write(`lab ${backend.topology.prefix} is up (namespaces ${Object.values(backend.topology.plan.namespaces).join(", ")})\n`);
    // The lab itself is removed at once on SIGINT/SIGTERM (topology.ts); the runner then stops and
    // keeps every committed run.
    summary = await driveCampaign({
      store,
      campaignId,
      backend,
      flowSeconds: def.flowSeconds,
      judge: runJudge,
      retries: flags.retries,
      keepLogs: flags.keepLogs,
      retryFailed: flags.retryFailed,
      stopMessage: "stopping: the lab is removed, finished runs stay in the store; the same command resumes",
      json: o.json === true,
    });
    process.stderr.write(`${describeTimings(summary.timings, backend.phases.entries()).join("\n")}\n`);
    // Only a session that ran the whole campaign compares with the estimate of the whole campaign.
    if (!summary.stopped && summary.committed === summary.total) {
      const estimateS = estimateLabWall(def, { hops: flags.hops, stepSync: flags.stepSync }).totalS;
      process.stderr.write(`the plan's estimate: ${formatDuration(estimateS)}; the wall over it: ${(summary.timings.wallMs / 1000 / estimateS).toFixed(2)}\n`);
    }
    if (summary.stopped) return;
    const results = store.results(campaignId);
    const out = o.json ? process.stderr : process.stdout;
    const setup = setupSummary(results, flags.baseline);
    if (setup.length > 0) out.write(`${setup.join("\n")}\n`);
    const programming = programmingSummary(results);
    if (programming.length > 0) out.write(`${programming.join("\n")}\n`);
  } finally {
    store.close();
    await backend?.teardown().catch(() => undefined);
  }
  const report = await writeCampaignReport({ db: flags.db, out: reportDir, campaign: campaignId, baseline: flags.baseline });
  if (o.json) {
    printJson({
      campaign: summary.campaign, db: summary.db, profile: flags.profile.name, total: summary.total, done: summary.done, failed: summary.failedForGood,
      committed: summary.committed, stopped: summary.stopped, seconds: Number(summary.seconds.toFixed(1)), report: report.markdown,
      primary: report.summary.primary, warnings: report.summary.warnings.length,
    });
  } else {
    process.stdout.write(`report: ${report.markdown}\n`);
  }
  reportFailedRuns(summary);
}

export async function labCommand(): Promise<Command> {
  return new Command("lab")
    .description(
      `Run the experiment on this host's kernel (root, Linux): network namespaces for client, router, worker and pod; each Service dataplane in turn over the Service sweep (${DATAPLANES.map((d) => `${d}: ${DATAPLANE_DESCRIPTIONS[d]}`).join("; ")}); D-ITG throughput and latency and connection setup through the NodePort in both families; then the report against the baseline. The same command resumes a stopped campaign`,
    )
    .addOption(new Option("--profile <name>", "how much to run: smoke (a check of the pipeline at reduced rates), default (the sweep's shape) or paper (the paper's 11 steps x 100 runs of 30 s); the plan printed at the start estimates its wall time").choices(LAB_PROFILE_NAMES).default("default"))
    .option("--out <dir>", "directory for the results store and the report (report/)", "lab-results")
    .option("--db <file>", "results store (SQLite); default <out>/results.db; the same store resumes")
    .option("--cleanup", "remove what crashed lab runs left on this host (namespaces, links, mounts, directories), then exit")
    .option("--no-cap", "no cap on the access and datacenter links (500 Mbit/s; smoke: 100 Mbit/s)")
    .option("--dataplanes <list>", `Service dataplanes: ${DATAPLANES.join(",")}`, DATAPLANES.join(","))
    .addOption(new Option("--baseline <dataplane>", "the dataplane the report compares every other one with (the primary comparisons too)").choices(DATAPLANES).default(DEFAULT_BASELINE))
    .option("--families <list>", "address families: ipv4,ipv6", LAB_FAMILIES.join(","))
    .option("--paths <list>", `Service paths, each measured with every dataplane and family: ${SERVICE_PATHS.join(",")} (beyond ${DEFAULT_PATH}: a second worker, a client pod)`, DEFAULT_PATH)
    .addOption(new Option("--lb-mode <mode>", "the eBPF model's loadBalancer.mode for a NodePort's remote backend (nodeport-remote): snat, Cilium's default, or dsr (the client's address kept, the reply straight from the backend's node)").choices(LOAD_BALANCER_MODES).default(DEFAULT_LOAD_BALANCER_MODE))
    .option("--profiles <list>", `what to measure: ${LAB_PROFILE_CHOICES.join(",")} (programming: Service changes through each dataplane's control plane, timed; not in the default)`, LAB_RUN_PROFILES.join(","))
    .option("--services <list>", "Service counts, e.g. 1,1000,10000 (default: the profile's)")
    .option("--runs <n>", "repetitions per cell (default: the profile's)")
    .option("--flow-seconds <s>", "duration of each run (default: the profile's)")
    .option("--seed <n>", "seed of the run order and the bootstrap (default: testbed:sweep.seed)")
    .option("--retries <n>", "extra attempts of a failed run", "2")
    .option("--retry-failed", "also re-attempt runs stored as failed")
    .option("--keep-logs", "keep raw logs next to the store (<db>.logs/<campaign>/)")
    .addOption(new Option("--iptables <backend>", "iptables backend of the kube-proxy rules").choices(IPTABLES_BACKENDS).default("legacy"))
    .option("--campaign <id>", "campaign id in the store (default: derived from the flags, so the same flags resume)")
    .option("--no-hops", "no hop probes: latency and setup runs are not cut into sections of the path (probes never run on throughput runs)")
    .option("--full-sync-steps", "install each Service count by one full sync, as on a new node, instead of moving between counts by partial syncs as a running cluster does")
    .option("--json", "print a summary object on stdout instead of the setup table and the report's path: {campaign, db, profile, total, done, failed, committed, stopped, seconds, report, primary, warnings}")
    .addHelpText("after", "\nExit status: 0 when every run passed, 1 when runs failed for good (the closing words say how many; the report is still written) or on an error, 130 when stopped.")
    .action(labAction);
}
