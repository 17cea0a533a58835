// `testbed rehearse`: the cloud path end to end on this machine. For each dataplane a stack
// (rehearse-<dataplane>, as on the cloud each dataplane is a stack of its own) is deployed on
// namespace hosts with sshd (rehearsal/), and `testbed campaign --stack` runs against it unchanged,
// from an operator namespace, through the bastion; then `testbed report` of the store. Only what
// cannot run here is a stand-in: the Pulumi CLI, and the Kubernetes API with its agents on the worker
// (whose Service dataplane is the lab's). The same command (same --db) resumes: a stack whose
// campaign is complete in the store is not deployed again.
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { Command, Option } from "commander";
import { CLOUD_PROFILES } from "../backends/cloud.js";
import { labProblem } from "../backends/lab.js";
import { campaignIdFor, planCampaign, type CampaignDefinition } from "../measure/campaign-plan.js";
import { formatDuration } from "../measure/campaign-progress.js";
import { ResultStore } from "../measure/store.js";
import type { RunProfile } from "../measure/types.js";
import { labProfile, type LabProfile } from "../lab/profiles.js";
import { cleanupLeftovers, findRunPrefixes } from "../lab/run-registry.js";
import { exec } from "../lab/netns.js";
import { RehearsalEnvironment } from "../rehearsal/environment.js";
import { CHECKOUT } from "../rehearsal/hosts.js";
import { OPERATOR_ADDRESS } from "../rehearsal/network.js";
import { rehearsalStackConfig, rehearsalStackName, stackScenarioOf } from "../rehearsal/stack-config.js";
import { DATAPLANES, DEFAULT_BASELINE, POD_ROUTINGS, scenarioPaths, type Dataplane, type PodRouting } from "../scenario/schema.js";
import { DEFAULT_PATH, DEFAULT_PATHS, SERVICE_PATHS, type ServicePath } from "../scenario/paths.js";
import { parseCampaignFlags, stackDefinition } from "./campaign.js";
import { listOf } from "./flags.js";
import { writeCampaignReport } from "./report.js";

/** The lab profiles a rehearsal runs: the paper's takes days, which a rehearsal is not for. */
export const REHEARSAL_PROFILES = ["smoke", "default"] as const;
const MAX_RETRIES = 20;

export interface RehearseOptions {
  profile: string;
  out: string;
  db?: string;
  dataplanes: string;
  baseline: string;
  retries: string;
  retryFailed?: boolean;
  profiles?: string;
  paths?: string;
  podRouting?: string;
  cleanup?: boolean;
}

export interface RehearseFlags {
  readonly profile: LabProfile;
  readonly out: string;
  readonly db: string;
  readonly dataplanes: readonly Dataplane[];
  readonly baseline: Dataplane;
  readonly retries: number;
  /** Run again the runs a campaign stored as failed (campaign --retry-failed). */
  readonly retryFailed: boolean;
  /** What each stack's campaign measures (campaign --profiles): every profile of the cloud path unless given. */
  readonly profiles: readonly RunProfile[];
  /** The Service paths each stack serves (testbed:paths) and its campaign measures; the paper's alone unless given. */
  readonly paths: readonly ServicePath[];
  /** How pod traffic crosses between the workers on the paths beyond the paper's (testbed:podRouting). */
  readonly podRouting: PodRouting;
  readonly cleanup: boolean;
}

function bad(flag: string, value: string, accepted: string): never {
  throw new Error(`--${flag}: ${JSON.stringify(value)} is not accepted; accepted: ${accepted}`);
}

/** Checks every flag before anything starts; errors name the flag, the value and what is accepted. */
export function parseRehearseFlags(o: RehearseOptions): RehearseFlags {
  if (!(REHEARSAL_PROFILES as readonly string[]).includes(o.profile)) bad("profile", o.profile, REHEARSAL_PROFILES.join(", "));
  const items = o.dataplanes.split(",").map((s) => s.trim());
  const listed = `a comma-separated list of ${DATAPLANES.join(", ")}, each at most once`;
  if (items.some((i) => !(DATAPLANES as readonly string[]).includes(i)) || new Set(items).size !== items.length) bad("dataplanes", o.dataplanes, listed);
  const dataplanes = items as Dataplane[];
  if (!(DATAPLANES as readonly string[]).includes(o.baseline)) bad("baseline", o.baseline, DATAPLANES.join(", "));
  const baseline = o.baseline as Dataplane;
  const retries = /^\d+$/.test(o.retries.trim()) ? Number(o.retries) : NaN;
  if (!(retries >= 0 && retries <= MAX_RETRIES)) bad("retries", o.retries, `a whole number from 0 to ${MAX_RETRIES}`);
  let profiles: readonly RunProfile[] = CLOUD_PROFILES;
  if (o.profiles !== undefined) {
    const asked = o.profiles.split(",").map((s) => s.trim());
    if (asked.some((p) => !(CLOUD_PROFILES as readonly string[]).includes(p)) || new Set(asked).size !== asked.length) {
      bad("profiles", o.profiles, `a comma-separated list of ${CLOUD_PROFILES.join(", ")}, each at most once`);
    }
    profiles = asked as RunProfile[];
  }
  const paths: readonly ServicePath[] = o.paths === undefined ? DEFAULT_PATHS : listOf("paths", o.paths, SERVICE_PATHS);
  const routing = o.podRouting ?? "native";
  if (!(POD_ROUTINGS as readonly string[]).includes(routing)) bad("pod-routing", routing, POD_ROUTINGS.join(", "));
  const out = path.resolve(o.out);
  const flags: RehearseFlags = {
    profile: labProfile(o.profile), out, db: path.resolve(o.db ?? path.join(out, "results.db")), dataplanes, baseline, retries,
    retryFailed: o.retryFailed === true, profiles, paths, podRouting: routing as PodRouting, cleanup: o.cleanup === true,
  };
  // The report covers the whole store: a stack rehearsed earlier into it may be the baseline of a rehearsal of another.
  if (!dataplanes.includes(baseline) && !storeHoldsStack(flags, baseline)) {
    bad("baseline", baseline, `one of the dataplanes rehearsed (${dataplanes.join(", ")}), or one whose stack's campaign ${flags.db} holds already`);
  }
  return flags;
}

/** Whether the store (if there is one) holds the campaign of the dataplane's rehearsal stack. */
function storeHoldsStack(flags: RehearseFlags, dataplane: Dataplane): boolean {
  if (!existsSync(flags.db)) return false;
  const store = ResultStore.openReadOnly(flags.db);
  try {
    return store.campaignIds().includes(rehearsalCampaign(flags, dataplane).id);
  } finally {
    store.close();
  }
}

/** The campaign `testbed campaign --stack rehearse-<dataplane>` runs, as it derives it (to skip one that is complete). */
export function rehearsalCampaign(flags: RehearseFlags, dataplane: Dataplane): { id: string; definition: CampaignDefinition } {
  const stack = rehearsalStackName(dataplane);
  // The definition depends on the stack's scenario, not on its key pair.
  const placeholderKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8q5FzJ9Nw2u0Q3kX7o1rY4mVb2cT6eH8sLdPfGhKjM rehearsal";
  const scenario = stackScenarioOf(
    rehearsalStackConfig({ dataplane, profile: flags.profile, operatorAddress: OPERATOR_ADDRESS, sshPublicKey: placeholderKey, sshPrivateKey: "", projectDir: CHECKOUT, paths: flags.paths, podRouting: flags.podRouting }),
  );
  const campaignFlags = parseCampaignFlags({ stack, db: flags.db, retries: String(flags.retries), projectDir: ".", profiles: flags.profiles.join(",") });
  // The campaign measures every path the stack serves.
  const definition = stackDefinition(campaignFlags, stack, scenario, scenario.families, flags.profiles, scenarioPaths(scenario));
  return { id: campaignIdFor(definition), definition };
}

/** What the rehearsal will do, in a few lines for its start. */
export function describeRehearsal(flags: RehearseFlags): string {
  const p = flags.profile;
  const rates = p.reducedRates ? `${p.reducedRates.linkMbps} Mbit/s cap, ${p.reducedRates.latencyPacketsPerSecond} latency packets/s, ` : "";
  const runs = flags.dataplanes.reduce((n, d) => n + planCampaign("plan", rehearsalCampaign(flags, d).definition).length, 0);
  const beyond = flags.paths.some((x) => x !== DEFAULT_PATH);
  return [
    `rehearsal of the cloud path, profile ${p.name}: Services ${p.services.join(", ")}, ${p.runs} runs of ${p.flowSeconds} s per cell, ${rates}${p.setupConnectionsPerSecond} new connections/s; ${runs} runs in all`,
    `  for each of ${flags.dataplanes.join(", ")}: stack rehearse-<dataplane> on network namespaces of this machine (bastion, client, router, master, ${beyond ? "worker, worker-2" : "worker"}, pods) with sshd,`,
    `  paths: ${flags.paths.join(", ")}${beyond ? ` (testbed:workers 2: the remote paths' receivers on worker-2, the clusterip path's client pod on worker 1; pods routed between the workers ${flags.podRouting === "tunnel" ? "through a VXLAN tunnel (cilium_vxlan)" : "natively"})` : ""}`,
    "  deployed at its first Service count, then `testbed campaign --stack rehearse-<dataplane>` from an operator namespace, SSH through the bastion",
    "  for real: the campaign and cloud backend, SSH/scp with ProxyJump, every `pulumi up` after the first (the lifecycle's steps run over SSH), the apply",
    "    script and its gate, D-ITG and the setup probe on the client, ITGRecv in the receiver pod, the worker's kernel dataplane (the lab's rules or eBPF model)",
    "  stand-ins: the Pulumi CLI (its state, and the offline engine's plan of the real program), kubectl and the API (objects, pods, EndpointSlices),",
    "    the agents' tools in their pods (cilium-dbg, iptables-save), the kubelet and kube-proxy/Cilium syncing the lab dataplane",
    `  results: ${flags.db}; report (baseline ${flags.baseline}): ${path.join(flags.out, "report")}`,
  ].join("\n");
}

/** Why this machine cannot rehearse, or undefined. */
export function rehearsalProblem(): string | undefined {
  const lab = labProblem();
  if (lab) return lab;
  const missing = [
    { tool: "sshd", argv: ["/usr/sbin/sshd", "-V"], debian: "openssh-server" },
    { tool: "ssh", argv: ["ssh", "-V"], debian: "openssh-client" },
    { tool: "sudo", argv: ["sudo", "-V"], debian: "sudo" },
    { tool: "nsenter", argv: ["nsenter", "--version"], debian: "util-linux" },
    { tool: "unshare", argv: ["unshare", "--version"], debian: "util-linux" },
  ].filter((t) => {
    try {
      return exec(t.argv).status === 127;
    } catch {
      return true;
    }
  });
  if (missing.length > 0) return `the rehearsal needs ${missing.map((m) => m.tool).join(", ")} (Debian: ${[...new Set(missing.map((m) => m.debian))].join(", ")})`;
  if (!/\boverlay\b/.test(exec(["cat", "/proc/filesystems"]).stdout)) return "the rehearsal's hosts need overlayfs (modprobe overlay)";
  return undefined;
}

function complete(db: string, campaign: { id: string; definition: CampaignDefinition }, retryFailed: boolean): boolean {
  const store = ResultStore.open(db);
  try {
    const results = store.results(campaign.id).filter((r) => !retryFailed || r.status === "ok");
    return store.campaign(campaign.id) !== undefined && results.length >= planCampaign(campaign.id, campaign.definition).length;
  } finally {
    store.close();
  }
}

async function rehearseAction(o: RehearseOptions): Promise<void> {
  const flags = parseRehearseFlags(o);
  const problem = rehearsalProblem();
  if (problem) throw new Error(`rehearse: ${problem}; nothing was changed`);
  if (flags.cleanup) {
    const { removed, live } = cleanupLeftovers();
    if (Object.keys(removed).length === 0) process.stdout.write("no leftovers of crashed lab runs or rehearsals\n");
    for (const [prefix, objects] of Object.entries(removed)) {
      process.stdout.write(`removed run ${prefix}: ${objects.namespaces.length} namespaces, ${objects.mounts.length} mounts, ${objects.dirs.length} directories\n`);
    }
    for (const prefix of live) process.stdout.write(`left run ${prefix} alone: its process is still running\n`);
    return;
  }
  const others = findRunPrefixes().length;
  if (others > 0) process.stderr.write(`note: ${others} other lab run(s) or rehearsal(s) exist on this host (live, or left by a crash: \`testbed rehearse --cleanup\`)\n`);
  process.stderr.write(`${describeRehearsal(flags)}\n`);
  mkdirSync(path.dirname(flags.db), { recursive: true });
  const started = Date.now();
  const log = (line: string) => process.stderr.write(`rehearse: ${line}\n`);
  /** Stacks whose campaign ended with runs failed for good (exit 1): the others and the report still run. */
  const withFailedRuns: string[] = [];
  for (const dataplane of flags.dataplanes) {
    const campaign = rehearsalCampaign(flags, dataplane);
    if (complete(flags.db, campaign, flags.retryFailed)) {
      log(`stack ${rehearsalStackName(dataplane)}: campaign ${campaign.id} is complete in ${flags.db}; not deployed again`);
      continue;
    }
    const env = await RehearsalEnvironment.create({ dataplane, profile: flags.profile, paths: flags.paths, podRouting: flags.podRouting, log });
    let code: number;
    try {
      code = await env.campaign(flags.db, ["--retries", String(flags.retries), "--profiles", flags.profiles.join(","), ...(flags.retryFailed ? ["--retry-failed"] : [])]);
    } finally {
      await env.close();
    }
    if (code === 1) {
      // Runs failed for good (the campaign said how many and why): the other stacks and the report go on.
      withFailedRuns.push(env.stack);
    } else if (code !== 0) {
      process.exitCode = code;
      log(`the campaign of stack ${env.stack} ended with exit ${code}; its finished runs stay in ${flags.db}, the same command resumes`);
      return;
    }
  }
  const report = await writeCampaignReport({ db: flags.db, out: path.join(flags.out, "report"), baseline: flags.baseline });
  process.stdout.write(`rehearsal: ${formatDuration((Date.now() - started) / 1000)}; report: ${report.markdown}\n`);
  if (withFailedRuns.length > 0) {
    process.exitCode = 1;
    log(`runs of ${withFailedRuns.join(", ")} failed for good (their reasons are in ${flags.db} and the report); the same command with --retry-failed runs them again`);
  }
}

export async function rehearseCommand(): Promise<Command> {
  return new Command("rehearse")
    .description(
      "Rehearse the cloud path on this machine (root, Linux): one stack per dataplane deployed on network namespaces with sshd, `testbed campaign --stack` against each through the bastion, then the report. Stand-ins only for the Pulumi CLI and the Kubernetes API; the same command resumes",
    )
    .addOption(new Option("--profile <name>", "the lab profile whose shape the stacks' sweep, runs and rates take").choices(REHEARSAL_PROFILES).default("smoke"))
    .option("--out <dir>", "directory for the results store and the report (report/)", "rehearsal-results")
    .option("--db <file>", "results store (SQLite); default <out>/results.db; the same store resumes")
    .option("--dataplanes <list>", `the stacks to rehearse, one per dataplane: ${DATAPLANES.join(",")}`, DATAPLANES.join(","))
    .addOption(new Option("--baseline <dataplane>", "the dataplane the report compares every other one with").choices(DATAPLANES).default(DEFAULT_BASELINE))
    .option("--retries <n>", "extra attempts of a failed run (the campaign's --retries)", "2")
    .option("--retry-failed", "also run again the runs a campaign stored as failed (the campaign's --retry-failed)")
    .option("--profiles <list>", `what each stack's campaign measures (the campaign's --profiles): ${CLOUD_PROFILES.join(",")}`, CLOUD_PROFILES.join(","))
    .option("--paths <list>", `the Service paths each stack serves (testbed:paths, with testbed:workers 2 beyond ${DEFAULT_PATH}) and its campaign measures: ${SERVICE_PATHS.join(",")}`, DEFAULT_PATH)
    .option("--pod-routing <mode>", `how pod traffic crosses between the workers beyond ${DEFAULT_PATH} (testbed:podRouting): ${POD_ROUTINGS.join(", ")} (tunnel: a VXLAN device on each worker, as Cilium's)`, "native")
    .option("--cleanup", "remove what crashed rehearsals and lab runs left on this host, then exit")
    .action(rehearseAction);
}
