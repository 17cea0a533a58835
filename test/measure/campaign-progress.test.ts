import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { CampaignProgress, estimateRemainingS, formatDuration } from "../../measure/campaign-progress.js";
import type { PlannedRun } from "../../measure/campaign-plan.js";
import type { RunResult } from "../../measure/types.js";

describe("campaign progress", () => {
  it("formats durations and estimates the time left from this session's pace", () => {
    expect(formatDuration(12.4)).toBe("12s");
    expect(formatDuration(185)).toBe("3m05s");
    expect(formatDuration(3720)).toBe("1h02m");
    expect(formatDuration(NaN)).toBe("?");
    expect(estimateRemainingS({ remaining: 10, sessionDone: 0, sessionElapsedS: 0, flowSeconds: 30 })).toBe(300);
    expect(estimateRemainingS({ remaining: 10, sessionDone: 4, sessionElapsedS: 132, flowSeconds: 30 })).toBe(330);
  });

  it("writes plain lines with counts and ETA when the stream is not a terminal", () => {
    const out = new PassThrough();
    let text = "";
    out.on("data", (d: Buffer) => (text += d.toString()));
    let now = 0;
    const p = new CampaignProgress(out as unknown as NodeJS.WriteStream, 30, () => now);
    const run: PlannedRun = { runId: "r1", index: 0, key: { dataplane: "ebpf", family: "ipv6", profile: "latency", services: 1000, repetition: 4 } };
    p.onEvent({ kind: "start", campaignId: "c", total: 10, done: 6, resumed: true });
    p.onEvent({ kind: "prepare", step: { dataplane: "ebpf", services: 1000 } });
    p.onEvent({ kind: "attempt-failed", run, attempt: 1, reason: "ITGSend reported an error", willRetry: true });
    now = 40_000;
    p.onEvent({ kind: "run-done", run, result: { status: "ok", retries: 1 } as RunResult, done: 7, total: 10 });
    expect(text.split("\n")).toEqual([
      "campaign c: resuming, 6/10 runs already done",
      "preparing ebpf, 1000 Services",
      "ebpf 1000 Services ipv6 latency #4 attempt 1 failed, retrying: ITGSend reported an error",
      "[7/10] ok ebpf 1000 Services ipv6 latency #4 retries 1 | ETA 2m00s",
      "",
    ]);
  });
});
