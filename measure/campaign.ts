// The campaign runner: walks a campaign's plan over a Backend, one D-ITG flow at a time, and
// commits each run to the store the moment it is decoded and judged.
//
// Pipeline: when flow k ends, its log goes to the decode stage (log collection, decoding in a
// worker thread, judging, commit) and flow k+1 starts at once; the runner waits for run k's
// decode only after flow k+1 has ended. Decoding therefore never delays a flow's start unless it
// takes longer than a whole flow. Before leaving a (dataplane, Service count) step the pipeline
// is drained, so a retry of the step's last run still happens on its own step.
import { copyFileSync, mkdirSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { campaignPaths, sameStep, stepOf, type PlannedRun } from "./campaign-plan.js";
import { DEFAULT_PATHS } from "../scenario/paths.js";
import { flowSummaryOf, type FailedAttempt, type ResultStore } from "./store.js";
import { judgeSetup, plannedConnections } from "./connection-setup.js";
import { expectedRecords, judgeFlow, receiverSessionError, type FlowVerdict } from "./ditg-commands.js";
import type { DecodedLog, DecodedView } from "./ditg-log.js";
import type { DecodedFlow, FlowLogFiles } from "./ditg-pairing.js";
import { PhaseTimes, type PhaseTime } from "./phase-times.js";
import {
  PROGRAMMING_CHANGES,
  ReceiverSessionError,
  type Backend,
  type ChangeMeasurement,
  type CollectedLogs,
  type FlowOutcome,
  type RunDelayView,
  type RunKey,
  type RunProfile,
  type RunResult,
  type TrafficProfile,
} from "./types.js";

/**
 * Decodes a flow's local D-ITG logs; the real one runs measure/ditg-pairing.ts's decodeFlow in a
 * worker thread: exact round trips with the meter's own readings when a receiver log pairs, the
 * measured log as logged otherwise.
 */
export interface LogDecoder {
  decode(files: FlowLogFiles): Promise<DecodedFlow>;
}

/** What a flow was asked to do, for judging what it did. */
export interface ExpectedFlow {
  /** The run's profile (the runner always names it; a flow judged on its own may not have one). */
  readonly profile?: RunProfile;
  readonly traffic: TrafficProfile;
  readonly durationS: number;
  /** Link cap of the measured path, Mbit/s (0: none). */
  readonly linkMbps: number;
}

/** Decides whether a decoded flow is a valid repetition (sender errors, too few records, several flows, unpaired records). */
export type FlowJudge = (senderOutput: string, decoded: DecodedLog, expected: ExpectedFlow) => FlowVerdict;

/** The D-ITG verdict of measure/ditg-commands.ts: sender errors, corrupt logs, record count against the profile. */
export const ditgJudge: FlowJudge = (senderOutput, decoded, expected) =>
  judgeFlow(senderOutput, decoded, expectedRecords(expected.traffic, expected.durationS, expected.linkMbps));

/** The verdict of a run by its profile: the connection-setup probe's for setup runs, D-ITG's for the others. */
export const runJudge: FlowJudge = (output, decoded, expected) =>
  expected.profile === "setup"
    ? judgeSetup(output, decoded, plannedConnections(expected.traffic, expected.durationS))
    : ditgJudge(output, decoded, expected);

/** Progress of a campaign, for progress bars and logs. */
export type CampaignEvent =
  | { readonly kind: "start"; readonly campaignId: string; readonly total: number; readonly done: number; readonly resumed: boolean }
  | { readonly kind: "prepare"; readonly step: { dataplane: string; services: number } }
  | { readonly kind: "receiver-restart"; readonly runId: string }
  | { readonly kind: "flow-start"; readonly run: PlannedRun; readonly attempt: number }
  | { readonly kind: "flow-end"; readonly run: PlannedRun; readonly attempt: number }
  | { readonly kind: "decode-start"; readonly run: PlannedRun; readonly attempt: number }
  | { readonly kind: "decode-end"; readonly run: PlannedRun; readonly attempt: number }
  | {
      readonly kind: "attempt-failed";
      readonly run: PlannedRun;
      readonly attempt: number;
      readonly reason: string;
      readonly willRetry: boolean;
    }
  | { readonly kind: "run-done"; readonly run: PlannedRun; readonly result: RunResult; readonly done: number; readonly total: number }
  | { readonly kind: "stopped"; readonly done: number; readonly total: number };

export interface CampaignRunOptions {
  readonly store: ResultStore;
  readonly campaignId: string;
  readonly backend: Backend;
  readonly decoder: LogDecoder;
  /** Default: runJudge. */
  readonly judge?: FlowJudge;
  /** Extra attempts allowed for a failed run (0: one attempt only). */
  readonly retries: number;
  /** Keep raw logs under the store's log directory; otherwise they are deleted once decoded. */
  readonly keepLogs?: boolean;
  /** Also re-attempt runs whose stored status is failed. */
  readonly retryFailed?: boolean;
  readonly onEvent?: (event: CampaignEvent) => void;
  /** Stops the campaign after the current flow; finished runs stay committed. */
  readonly signal?: AbortSignal;
  readonly now?: () => Date;
}

/**
 * Where a runner's wall time went: its phases (prepare, receiver, flow, decodeWait, teardown) add up
 * to the wall time with what is left between them; decodeStage, the decode stages' own time, ran
 * beside the next flows and shows in the wall time only as decodeWait.
 */
export interface CampaignTimings {
  readonly wallMs: number;
  /** What the flows last by their plan: the flow length times the attempts. */
  readonly plannedFlowMs: number;
  readonly phases: readonly [string, PhaseTime][];
}

export interface CampaignRunSummary {
  readonly total: number;
  /** Runs with a stored result when the runner returned. */
  readonly done: number;
  /** Runs committed by this call. */
  readonly committed: number;
  readonly failed: number;
  readonly receiverRestarts: number;
  readonly stopped: boolean;
  readonly timings: CampaignTimings;
}


function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Moves a file, copying when source and target are on different filesystems. */
function moveFile(from: string, to: string): void {
  mkdirSync(path.dirname(to), { recursive: true });
  try {
    renameSync(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
    copyFileSync(from, to);
    rmSync(from, { force: true });
  }
}

/** A view of a decoded flow as the store keeps it. */
function delayView(view: DecodedView): RunDelayView {
  return { summary: flowSummaryOf(view.total), excludedRecords: view.total.excludedRecords, histogram: view.histogram };
}

/**
 * What a run keeps of its decoded logs: the summary (exact round trips when paired), and the other
 * readings: the meter's own from the sender log alone, and the one-way delays of the receiver's log.
 */
export function decodedResult(decoded: DecodedFlow): Pick<RunResult, "summary" | "histogram" | "achievedKbps" | "delaySource" | "excludedRecords" | "delayViews" | "hops"> {
  const views: NonNullable<RunResult["delayViews"]> = {
    ...(decoded.views?.sender ? { sender: delayView(decoded.views.sender) } : {}),
    ...(decoded.views?.logged ? { itgdec: delayView(decoded.views.logged) } : {}),
    ...(decoded.oneWay ? { oneWay: delayView(decoded.oneWay) } : {}),
  };
  return {
    summary: flowSummaryOf(decoded.total),
    histogram: decoded.histogram,
    achievedKbps: decoded.total.bitrateKbps,
    delaySource: decoded.total.delaySource,
    excludedRecords: decoded.total.excludedRecords,
    ...(Object.keys(views).length > 0 ? { delayViews: views } : {}),
    ...(decoded.hops ? { hops: decoded.hops } : {}),
  };
}

/**
 * Why a programming run's changes are not a valid repetition, or undefined: every change of the
 * profile measured, every probed one seen, and every change timed, by its write (sync and commit) or
 * by the control plane's own metrics.
 */
export function judgeChanges(changes: readonly ChangeMeasurement[]): string | undefined {
  const missing = PROGRAMMING_CHANGES.filter((c) => !changes.some((m) => m.change === c));
  if (missing.length > 0) return `programming run without ${missing.join(", ")}`;
  const unseen = changes.filter((m) => (PROGRAMMING_CHANGES as readonly string[]).includes(m.change) && !(typeof m.programmedS === "number" && m.programmedS >= 0));
  if (unseen.length > 0) return `programming run: no probe saw ${unseen.map((m) => m.change).join(", ")}`;
  const timed = (m: ChangeMeasurement) => (m.commitS! >= 0 && m.syncS! >= 0) || (m.metrics !== undefined && m.metrics.length > 0);
  const bad = changes.filter((m) => !timed(m));
  if (bad.length > 0) return `programming run: neither a write time nor the control plane's metrics for ${bad.map((m) => m.change).join(", ")}`;
  return undefined;
}

/** Runs the pending runs of a stored campaign; returns when all are committed or on stop. */
export async function runCampaign(opts: CampaignRunOptions): Promise<CampaignRunSummary> {
  const { store, campaignId, backend } = opts;
  const started = performance.now();
  const times = new PhaseTimes();
  const now = opts.now ?? (() => new Date());
  const emit = (e: CampaignEvent) => opts.onEvent?.(e);
  const judge = opts.judge ?? runJudge;
  const campaign = store.campaign(campaignId);
  if (!campaign) throw new Error(`no campaign ${campaignId} in ${store.file}`);
  const def = campaign.definition;
  const missing = def.profiles.filter((p) => p !== "programming" && def.traffic[p] === undefined);
  if (missing.length > 0) throw new Error(`campaign ${campaignId} plans profile(s) ${missing.join(", ")} but defines no traffic for them`);
  const unoffered = def.profiles.filter((p) => !backend.profiles.includes(p));
  if (unoffered.length > 0) {
    throw new Error(`campaign ${campaignId} plans profile(s) ${unoffered.join(", ")}, which backend ${backend.name} does not measure; accepted: ${backend.profiles.join(", ")}`);
  }
  const backendPaths = backend.paths ?? DEFAULT_PATHS;
  const unserved = campaignPaths(def).filter((p) => !backendPaths.includes(p));
  if (unserved.length > 0) {
    throw new Error(`campaign ${campaignId} plans path(s) ${unserved.join(", ")}, which backend ${backend.name} does not measure; accepted: ${backendPaths.join(", ")}`);
  }
  if (def.profiles.includes("programming")) {
    if (!def.programming) throw new Error(`campaign ${campaignId} plans the programming profile but defines no programming settings`);
    if (!backend.programming) throw new Error(`backend ${backend.name} lists the programming profile but offers no Service changes (Backend.programming)`);
  }
  const trafficOf = (run: PlannedRun): TrafficProfile => def.traffic[run.key.profile];
  const total = campaign.plan.length;
  const queue = store.pendingRuns(campaignId, { retryFailed: opts.retryFailed === true });
  let done = total - queue.length;
  let committed = 0;
  let failed = 0;
  let receiverRestarts = 0;
  /** Why the last flow's receiver session failed, until the receiver has been restarted for it. */
  let brokenSession: string | undefined;
  const failures = new Map<string, FailedAttempt[]>();
  const event = (kind: string, detail?: string, runId?: string) =>
    store.recordEvent(campaignId, { at: now().toISOString(), kind, ...(detail ? { detail } : {}), ...(runId ? { runId } : {}) });

  emit({ kind: "start", campaignId, total, done, resumed: done > 0 });
  event(done > 0 ? "resume" : "start", `${done}/${total} runs done; backend ${backend.name}`);

  /** Keeps (keep-logs) or deletes a run's log; returns its stored path when kept. */
  const keepOrDrop = (run: PlannedRun, file: string | undefined, suffix: string): string | undefined => {
    if (file === undefined) return undefined;
    if (!opts.keepLogs) {
      rmSync(file, { force: true });
      return undefined;
    }
    const kept = path.join(store.logDir(campaignId), `${run.runId}${suffix}${path.extname(file) || ".log"}`);
    moveFile(file, kept);
    return store.relativeLogPath(kept);
  };

  const commit = (run: PlannedRun, result: Omit<RunResult, keyof RunKey | "runId" | "retries">, logs?: CollectedLogs) => {
    const attempts = failures.get(run.runId) ?? [];
    const full: RunResult = { ...run.key, runId: run.runId, retries: attempts.length, ...result };
    const storedLog = keepOrDrop(run, logs?.log, "");
    const storedReceiverLog = keepOrDrop(run, logs?.receiverLog, ".receiver");
    // The hop probes' records: <run>.hops beside its logs.
    keepOrDrop(run, logs?.hops?.recordsFile, "");
    store.commitRun(campaignId, full, {
      attempts,
      ...(storedLog !== undefined ? { logPath: storedLog } : {}),
      ...(storedReceiverLog !== undefined ? { receiverLogPath: storedReceiverLog } : {}),
      now: now(),
    });
    failures.delete(run.runId);
    committed++;
    done++;
    if (full.status === "failed") failed++;
    emit({ kind: "run-done", run, result: full, done, total });
  };

  /** Records a failed attempt; re-queues the run at the front or commits it as failed. */
  const failAttempt = (run: PlannedRun, attempt: number, reason: string, startedAt: Date, endedAt: Date, logs?: CollectedLogs) => {
    const list = failures.get(run.runId) ?? [];
    const willRetry = list.length < opts.retries;
    emit({ kind: "attempt-failed", run, attempt, reason, willRetry });
    if (willRetry) {
      list.push({ attempt, startedAt: startedAt.toISOString(), endedAt: endedAt.toISOString(), failure: reason });
      failures.set(run.runId, list);
      for (const file of [logs?.log, logs?.receiverLog, logs?.hops?.recordsFile]) if (file !== undefined) rmSync(file, { force: true });
      queue.unshift(run);
    } else {
      commit(run, { status: "failed", failure: reason, startedAt: startedAt.toISOString(), endedAt: endedAt.toISOString() }, logs);
    }
  };

  /** The decode stage of one flow: collect, decode, judge, commit (or retry). Never throws. */
  const decodeStage = (run: PlannedRun, attempt: number, outcome: FlowOutcome): Promise<void> => times.time("decodeStage", () => decode(run, attempt, outcome));
  const decode = async (run: PlannedRun, attempt: number, outcome: FlowOutcome): Promise<void> => {
    emit({ kind: "decode-start", run, attempt });
    let local: CollectedLogs | undefined;
    try {
      local = await backend.collectLog(outcome);
      const decoded = await opts.decoder.decode({ ...local, oneWay: backend.sharedClock === true && local.receiverLog !== undefined });
      const verdict = judge(local.senderOutput ?? outcome.senderOutput, decoded, {
        profile: run.key.profile,
        traffic: trafficOf(run),
        durationS: def.flowSeconds,
        linkMbps: def.linkMbps,
      });
      emit({ kind: "decode-end", run, attempt });
      const base = {
        ...decodedResult(decoded),
        startedAt: outcome.startedAt.toISOString(),
        endedAt: outcome.endedAt.toISOString(),
      };
      if (verdict.ok) {
        commit(run, { status: "ok", ...base }, local);
      } else if ((failures.get(run.runId)?.length ?? 0) < opts.retries) {
        failAttempt(run, attempt, verdict.reason, outcome.startedAt, outcome.endedAt, local);
      } else {
        // Out of retries: keep what was measured, flagged, so the report can show why it was rejected.
        emit({ kind: "attempt-failed", run, attempt, reason: verdict.reason, willRetry: false });
        commit(run, { status: "failed", failure: verdict.reason, ...base }, local);
      }
    } catch (err) {
      emit({ kind: "decode-end", run, attempt });
      failAttempt(run, attempt, `collecting or decoding the log failed: ${message(err)}`, outcome.startedAt, outcome.endedAt, local);
    }
  };

  let prepared: RunKey | undefined;
  let inflight: Promise<void> | undefined;
  let stopped = false;
  try {
    while (queue.length > 0 || inflight) {
      if (opts.signal?.aborted) {
        stopped = true;
        break;
      }
      const head = queue[0];
      if (!head || !prepared || !sameStep(prepared, head.key)) {
        // Leaving a step (or out of queued runs): finish the decode first, it may re-queue a run of this step.
        if (inflight) {
          await times.time("decodeWait", () => inflight!);
          inflight = undefined;
          continue;
        }
        if (!head) break;
        const step = stepOf(head.key);
        emit({ kind: "prepare", step });
        const preparedAt = now();
        const readiness = await times.time("prepare", () => backend.prepare(step));
        if (readiness) store.recordStep(campaignId, step, readiness, preparedAt);
        event("prepare", `${step.dataplane} ${step.services}`);
        prepared = head.key;
      }
      const run = queue.shift()!;
      const attempt = (failures.get(run.runId)?.length ?? 0) + 1;

      if (run.key.profile === "programming") {
        // Service changes, not a flow: measured and judged here, nothing to decode.
        emit({ kind: "flow-start", run, attempt });
        const startedAt = now();
        let changes: readonly ChangeMeasurement[];
        try {
          changes = await times.time("programming", () => backend.programming!.runChanges(run.key, def.programming!));
        } catch (err) {
          emit({ kind: "flow-end", run, attempt });
          if (inflight) {
            await times.time("decodeWait", () => inflight!);
            inflight = undefined;
          }
          failAttempt(run, attempt, `programming run failed: ${message(err)}`, startedAt, now());
          continue;
        }
        emit({ kind: "flow-end", run, attempt });
        if (inflight) {
          await times.time("decodeWait", () => inflight!);
          inflight = undefined;
        }
        const reason = judgeChanges(changes);
        const base = { startedAt: startedAt.toISOString(), endedAt: now().toISOString(), changes };
        if (reason === undefined) commit(run, { status: "ok", ...base });
        else if ((failures.get(run.runId)?.length ?? 0) < opts.retries) failAttempt(run, attempt, reason, startedAt, now());
        else {
          emit({ kind: "attempt-failed", run, attempt, reason, willRetry: false });
          commit(run, { status: "failed", failure: reason, ...base });
        }
        continue;
      }

      const alive = await times.time("receiver", () => backend.receiverAlive());
      if (!alive || brokenSession !== undefined) {
        emit({ kind: "receiver-restart", runId: run.runId });
        event("receiver-restart", alive ? `the last flow's receiver session failed: ${brokenSession}` : "receiver not answering before the run", run.runId);
        receiverRestarts++;
        await times.time("receiver", () => backend.restartReceiver());
        brokenSession = undefined;
      }

      emit({ kind: "flow-start", run, attempt });
      const startedAt = now();
      let outcome: FlowOutcome;
      try {
        outcome = await times.time("flow", () =>
          backend.runFlow(run.key, {
            logName: `${run.runId}-${attempt}`,
            durationS: def.flowSeconds,
            traffic: trafficOf(run),
          }),
        );
      } catch (err) {
        emit({ kind: "flow-end", run, attempt });
        if (err instanceof ReceiverSessionError) brokenSession = err.message;
        if (inflight) {
          await times.time("decodeWait", () => inflight!);
          inflight = undefined;
        }
        failAttempt(run, attempt, `flow failed: ${message(err)}`, startedAt, now());
        continue;
      }
      emit({ kind: "flow-end", run, attempt });
      // Known now, not only when the decode judges the flow: the next flow must not meet that receiver.
      brokenSession = receiverSessionError(outcome.senderOutput) ?? brokenSession;
      // Depth-one pipeline: the previous decode had this whole flow to finish.
      if (inflight) await times.time("decodeWait", () => inflight!);
      inflight = decodeStage(run, attempt, outcome);
    }
    if (inflight) await times.time("decodeWait", () => inflight!);
  } catch (err) {
    // Commit what is already decoded before reporting a fatal error (prepare or receiver restart failed).
    if (inflight) await inflight;
    await backend.teardown().catch(() => undefined);
    throw err;
  }
  await times.time("teardown", () => backend.teardown());
  if (stopped) {
    emit({ kind: "stopped", done, total });
    event("stop", `${done}/${total} runs done`);
  } else {
    event("end", `${done}/${total} runs done; ${failed} failed in this session`);
  }
  const timings: CampaignTimings = { wallMs: performance.now() - started, plannedFlowMs: times.count("flow") * def.flowSeconds * 1000, phases: times.entries() };
  return { total, done, committed, failed, receiverRestarts, stopped, timings };
}
