// A campaign driven from the terminal, the same for `testbed campaign` and `testbed lab`: progress
// on stderr, Ctrl-C handling, the decoder worker, and the closing line on stdout.
import { WorkerLogDecoder } from "../measure/campaign-decode.js";
import { CampaignProgress, formatDuration } from "../measure/campaign-progress.js";
import { runCampaign, type CampaignRunSummary, type FlowJudge } from "../measure/campaign.js";
import type { ResultStore, UpgradeNotice } from "../measure/store.js";
import type { Backend } from "../measure/types.js";

export interface TerminalCampaign {
  readonly store: ResultStore;
  readonly campaignId: string;
  readonly backend: Backend;
  readonly flowSeconds: number;
  readonly judge?: FlowJudge;
  readonly retries: number;
  readonly keepLogs: boolean;
  readonly retryFailed: boolean;
  /** What the first Ctrl-C says will happen before the runner stops. */
  readonly stopMessage: string;
  /** --json: no closing line of text; the verb prints its summary object instead. */
  readonly json?: boolean;
}

/** A campaign's state when the terminal run ended (the summary `campaign --json` and `lab --json` build on). */
export interface TerminalSummary extends CampaignRunSummary {
  readonly campaign: string;
  readonly db: string;
  /** Runs of the whole campaign stored as failed: they failed every attempt (--retry-failed runs them again). */
  readonly failedForGood: number;
  readonly seconds: number;
}

/** The campaign's closing words on stderr when runs failed for good, and the exit status they give: 1. */
export function reportFailedRuns(summary: TerminalSummary): void {
  if (summary.stopped || summary.failedForGood === 0) return;
  process.stderr.write(
    `${summary.failedForGood} of ${summary.total} runs of campaign ${summary.campaign} failed for good (every attempt); their failures are in ${summary.db}; the same command with --retry-failed runs them again\n`,
  );
  process.exitCode = 1;
}

/**
 * Runs the campaign to its end or to the first Ctrl-C (the second quits at once) and prints the
 * closing line; the exit code is 130 when it was stopped. runCampaign tears the backend down,
 * whatever happens.
 */
export async function driveCampaign(c: TerminalCampaign): Promise<TerminalSummary> {
  const stop = new AbortController();
  const onSigint = () => {
    if (stop.signal.aborted) process.exit(130);
    process.stderr.write(`\n${c.stopMessage}\n`);
    stop.abort();
  };
  process.on("SIGINT", onSigint);
  const progress = new CampaignProgress(process.stderr, c.flowSeconds);
  const decoder = new WorkerLogDecoder();
  const started = Date.now();
  try {
    const summary = await runCampaign({
      store: c.store,
      campaignId: c.campaignId,
      backend: c.backend,
      decoder,
      ...(c.judge ? { judge: c.judge } : {}),
      retries: c.retries,
      keepLogs: c.keepLogs,
      retryFailed: c.retryFailed,
      onEvent: progress.onEvent,
      signal: stop.signal,
    });
    progress.stop();
    const failedForGood = c.store.results(c.campaignId).filter((r) => r.status === "failed").length;
    const seconds = (Date.now() - started) / 1000;
    if (!c.json) {
      process.stdout.write(
        `campaign ${c.campaignId}: ${summary.done}/${summary.total} runs in ${c.store.file} (${failedForGood} failed; ${summary.committed} committed in this session, ${formatDuration(seconds)})\n`,
      );
    }
    if (summary.stopped) process.exitCode = 130;
    return { ...summary, campaign: c.campaignId, db: c.store.file, failedForGood, seconds };
  } finally {
    progress.stop();
    process.off("SIGINT", onSigint);
    await decoder.close();
  }
}

/** What a writer says when it upgrades an older results store in place (ResultStore.open). */
export const sayUpgrade: UpgradeNotice = ({ file, from, to }) =>
  process.stderr.write(`results store ${file}: upgraded in place from schema version ${from} to ${to}, its runs unchanged (testbed report reads either)\n`);
