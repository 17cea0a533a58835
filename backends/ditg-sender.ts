// One ITGSend flow as a local child process (on this host or in a lab namespace): collect what it
// prints, and say which of the flow's two logs it is measured from. Shared by the loopback and lab backends.
import type { ChildProcess } from "node:child_process";
import { rmSync, statSync } from "node:fs";
import type { SenderCommand } from "../measure/ditg-commands.js";
import { RECORD_BYTES } from "../measure/ditg-log.js";
import type { CollectedLogs, FlowOutcome } from "../measure/types.js";

export interface SenderFlow {
  readonly outcome: FlowOutcome;
  /**
   * A one-way flow's other log, the sender's: written too (every flow names both, see
   * ditg-commands.ts) but measuring nothing; the backend removes it when the flow's log is collected,
   * off the next flow's critical path. A round-trip flow has none: its receiver log pairs with the
   * sender's (FlowOutcome.receiverLogPath).
   */
  readonly unmeasuredLog?: string;
}

/** A sender command's flow: which of its logs is measured, what it printed, when it ran. */
export function senderFlow(cmd: SenderCommand, run: { senderOutput: string; startedAt: Date; endedAt: Date }): SenderFlow {
  const { senderLog, receiverLog } = cmd.logs;
  const { senderOutput, startedAt, endedAt } = run;
  if (cmd.measuredLog === "sender") {
    return { outcome: { logPath: senderLog, receiverLogPath: receiverLog, senderOutput, startedAt, endedAt } };
  }
  return { outcome: { logPath: receiverLog, senderOutput, startedAt, endedAt }, unmeasuredLog: senderLog };
}

/**
 * Waits for a started ITGSend. A non-zero exit is a failed flow (both logs removed, the last lines of
 * its output in the error); exit 0 proves nothing (D-ITG B3), so the caller judges what was logged.
 */
export async function awaitSender(child: ChildProcess, cmd: SenderCommand, startedAt: Date): Promise<SenderFlow> {
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    child.once("error", (e) => reject(new Error(`cannot start ITGSend: ${e.message}`)));
    child.once("close", (c) => resolve({ code: c, output: out }));
  });
  const endedAt = new Date();
  if (code !== 0) {
    rmSync(cmd.logs.senderLog, { force: true });
    rmSync(cmd.logs.receiverLog, { force: true });
    throw new Error(`ITGSend exited with ${code}: ${output.trim().split("\n").slice(-3).join(" / ")}`);
  }
  return senderFlow(cmd, { senderOutput: output, startedAt, endedAt });
}

/** Only a guard against a log that never comes or never stops: a loaded host's ITGRecv may flush seconds late. */
const LOG_SETTLE_TIMEOUT_MS = 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until a log stops growing and holds whole records: ITGRecv may flush after ITGSend exits. */
export async function settledLog(file: string, timeoutMs = LOG_SETTLE_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  for (;;) {
    let size = -1;
    try {
      size = statSync(file).size;
    } catch {
      // not created yet
    }
    if (size >= 0 && size === last && size % RECORD_BYTES === 0) return;
    if (Date.now() > deadline) throw new Error(size < 0 ? `log ${file} was never written` : `log ${file} did not settle (${size} bytes)`);
    last = size;
    await sleep(25);
  }
}

/** The flow logs of a backend whose flows write to this host's file system. */
export class LocalFlowLogs {
  /** The unmeasured log of each flow (by measured log path), removed when the flow's log is collected. */
  private readonly unmeasured = new Map<string, string>();

  /** Remembers the flow's unmeasured log and hands back its outcome. */
  remember(flow: SenderFlow): FlowOutcome {
    if (flow.unmeasuredLog !== undefined) this.unmeasured.set(flow.outcome.logPath, flow.unmeasuredLog);
    return flow.outcome;
  }

  /** The flow's logs once they have settled; an unmeasured sibling is removed first. */
  async collect(outcome: FlowOutcome): Promise<CollectedLogs> {
    const other = this.unmeasured.get(outcome.logPath);
    this.unmeasured.delete(outcome.logPath);
    if (other !== undefined) await settledLog(other).catch(() => undefined).finally(() => rmSync(other, { force: true }));
    await settledLog(outcome.logPath);
    if (outcome.receiverLogPath === undefined) return { log: outcome.logPath };
    // ITGRecv flushes its log when the flow ends, which may be after ITGSend has exited.
    await settledLog(outcome.receiverLogPath);
    return { log: outcome.logPath, receiverLog: outcome.receiverLogPath };
  }
}
