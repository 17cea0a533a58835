// One ITGSend flow as a local child process (on this host or in a lab namespace): collect what it
// prints, and say which of the flow's two logs measures it. Shared by the loopback and lab backends.
import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import type { SenderCommand } from "./ditg-commands.js";
import type { FlowOutcome } from "./types.js";

export interface SenderFlow {
  readonly outcome: FlowOutcome;
  /**
   * The flow's other log: written too (every flow names both, see ditg-commands.ts) but measuring
   * nothing; the backend removes it when the flow's log is collected, off the next flow's critical path.
   */
  readonly unmeasuredLog: string;
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
  const { senderLog, receiverLog } = cmd.logs;
  const [measured, other] = cmd.measuredLog === "sender" ? [senderLog, receiverLog] : [receiverLog, senderLog];
  if (code !== 0) {
    rmSync(measured, { force: true });
    rmSync(other, { force: true });
    throw new Error(`ITGSend exited with ${code}: ${output.trim().split("\n").slice(-3).join(" / ")}`);
  }
  return { outcome: { logPath: measured, senderOutput: output, startedAt, endedAt }, unmeasuredLog: other };
}
