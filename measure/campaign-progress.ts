// Progress of a running campaign: a bar with ETA on a terminal (cli-progress), one plain line per
// finished run otherwise (logs, CI, `nohup`).
import cliProgress from "cli-progress";
import type { CampaignEvent } from "./campaign.js";
import type { RunKey } from "./types.js";

/** "1h02m", "3m05s", "12s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m > 0) return `${m}m${String(sec).padStart(2, "0")}s`;
  return `${sec}s`;
}

/**
 * Seconds left: the remaining runs at the wall time per run observed in this session (which
 * includes prepares, retries and decoding stalls), or at the flow duration before any run ends.
 */
export function estimateRemainingS(p: { remaining: number; sessionDone: number; sessionElapsedS: number; flowSeconds: number }): number {
  const perRun = p.sessionDone > 0 ? p.sessionElapsedS / p.sessionDone : p.flowSeconds;
  return p.remaining * perRun;
}

export function describeKey(k: RunKey): string {
  return `${k.dataplane} ${k.services} Services ${k.family} ${k.profile} #${k.repetition}`;
}

/** Renders campaign events to a stream; bar on a TTY, lines otherwise. */
export class CampaignProgress {
  private bar: cliProgress.SingleBar | undefined;
  private startedAt = 0;
  private sessionDone = 0;
  private total = 0;
  private done = 0;
  private step = "";

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly flowSeconds: number,
    private readonly now: () => number = Date.now,
  ) {}

  private eta(): string {
    return formatDuration(
      estimateRemainingS({
        remaining: this.total - this.done,
        sessionDone: this.sessionDone,
        sessionElapsedS: (this.now() - this.startedAt) / 1000,
        flowSeconds: this.flowSeconds,
      }),
    );
  }

  private line(text: string): void {
    if (this.bar) {
      // Print above the bar, then redraw it.
      this.bar.stop();
      this.stream.write(`${text}\n`);
      this.startBar();
    } else {
      this.stream.write(`${text}\n`);
    }
  }

  private startBar(): void {
    this.bar = new cliProgress.SingleBar(
      {
        stream: this.stream,
        format: "{bar} {value}/{total} runs | ETA {etaText} | {step}",
        hideCursor: true,
        clearOnComplete: false,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(this.total, this.done, { etaText: this.eta(), step: this.step });
  }

  readonly onEvent = (e: CampaignEvent): void => {
    switch (e.kind) {
      case "start":
        this.startedAt = this.now();
        this.total = e.total;
        this.done = e.done;
        this.stream.write(
          `campaign ${e.campaignId}: ${e.resumed ? `resuming, ${e.done}/${e.total} runs already done` : `${e.total} runs`}\n`,
        );
        if (this.stream.isTTY) this.startBar();
        break;
      case "prepare":
        this.step = `${e.step.dataplane}, ${e.step.services} Services`;
        if (this.bar) this.bar.update({ step: `preparing ${this.step}` });
        else this.stream.write(`preparing ${this.step}\n`);
        break;
      case "flow-start":
        this.bar?.update({ step: `${describeKey(e.run.key)}${e.attempt > 1 ? ` (attempt ${e.attempt})` : ""}`, etaText: this.eta() });
        break;
      case "receiver-restart":
        this.line("receiver not answering: restarted");
        break;
      case "attempt-failed":
        this.line(`${describeKey(e.run.key)} attempt ${e.attempt} failed${e.willRetry ? ", retrying" : ""}: ${e.reason}`);
        break;
      case "run-done":
        this.done = e.done;
        this.sessionDone++;
        if (this.bar) this.bar.update(this.done, { etaText: this.eta() });
        else this.stream.write(`[${e.done}/${e.total}] ${e.result.status} ${describeKey(e.run.key)} retries ${e.result.retries} | ETA ${this.eta()}\n`);
        break;
      case "stopped":
        this.stop();
        this.stream.write(`stopped: ${e.done}/${e.total} runs done; run the same command again to resume\n`);
        break;
      default:
        break;
    }
  };

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}
