// A campaign driven from the terminal, the same for `testbed campaign` and `testbed lab`: progress
// on stderr, Ctrl-C handling, the decoder worker, and the closing line on stdout.
import { WorkerLogDecoder } from "../measure/campaign-decode.js";
import { CampaignProgress, formatDuration } from "../measure/campaign-progress.js";
import { runCampaign, type CampaignRunSummary, type FlowJudge } from "../measure/campaign.js";
import type { ResultStore } from "../measure/store.js";
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
}

/**
 * Runs the campaign to its end or to the first Ctrl-C (the second quits at once) and prints the
 * closing line; the exit code is 130 when it was stopped. runCampaign tears the backend down,
 * whatever happens.
 */
export async function driveCampaign(c: TerminalCampaign): Promise<CampaignRunSummary> {
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
    const failed = c.store.results(c.campaignId).filter((r) => r.status === "failed").length;
    process.stdout.write(
      `campaign ${c.campaignId}: ${summary.done}/${summary.total} runs in ${c.store.file} (${failed} failed; ${summary.committed} committed in this session, ${formatDuration((Date.now() - started) / 1000)})\n`,
    );
    if (summary.stopped) process.exitCode = 130;
    return summary;
  } finally {
    progress.stop();
    process.off("SIGINT", onSigint);
    await decoder.close();
  }
}
