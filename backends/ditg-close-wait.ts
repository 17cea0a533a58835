// A D-ITG flow's close handshake, off the critical path. When a flow's data is in, ITGSend sends
// TSP_CLOSED_FLOW; ITGRecv flushes the flow's log, prints "Finish on UDP port : 31000", sleeps one
// second, and only then closes the flow's data socket and acks (D-ITG 2.8.1, ITGRecv.cpp typeParser,
// the `sleep(1)` after the Finish line); ITGSend exits on the ack. So every flow ends with a second in
// which nothing is measured and nothing is sent. A backend that runs ITGRecv itself can hand a flow
// back when the receiver prints its Finish line and use that second for work that does not need that
// ITGRecv or the data socket the closing flow still holds (same transport protocol on its data port):
// decoding, the lab's connection-setup probe, or the next D-ITG flow to another ITGRecv on other ports.
// It must not start another ITGSend to the same ITGRecv: ITGRecv's close of the old flow races with the
// new session (a socket it closes twice is by then the new session's signaling socket), the new sender
// reads "Receiver has shut down the connection", and ITGRecv then exits on "Cannot close socket
// newSockSignaling after sending ack release"; in the lab a handful of back-to-back overlapping flows
// was enough. The sender's exit, with its full output, is awaited later, when the flow's logs are
// collected.
import type { ChildProcess } from "node:child_process";
import type { SenderCommand } from "../measure/ditg-commands.js";
import { awaitSender, senderFlow, type SenderFlow } from "./ditg-sender.js";

/** ITGRecv's line at the end of a flow's data, before its one-second wait: "Finish on UDP port : 31000". */
const FINISH_LINE = /^Finish on (\w+) port/;

/** A closing flow's sender must exit within this time after its Finish line, or it is killed. */
export const CLOSE_WAIT_TIMEOUT_MS = 10_000;

/** The receiver's Finish lines, counted per transport protocol: a flow's data is in once its line comes. */
export class FlowEnds {
  private readonly counts = new Map<string, number>();
  private waiters: { protocol: string; after: number; resolve: (at: Date) => void }[] = [];
  private pending = "";

  /** Feeds what the receiver printed (any chunking). */
  feed(text: string): void {
    const lines = (this.pending + text).split("\n");
    this.pending = lines.pop() ?? "";
    for (const line of lines) {
      const m = FINISH_LINE.exec(line.trim());
      if (!m) continue;
      const protocol = m[1]!.toUpperCase();
      const count = this.count(protocol) + 1;
      this.counts.set(protocol, count);
      const at = new Date();
      this.waiters = this.waiters.filter((w) => {
        if (w.protocol !== protocol || count <= w.after) return true;
        w.resolve(at);
        return false;
      });
    }
  }

  /** Finish lines of this protocol so far. */
  count(protocol: string): number {
    return this.counts.get(protocol.toUpperCase()) ?? 0;
  }

  /** When the next Finish line of this protocol after the `after`-th comes. */
  next(protocol: string, after: number): Promise<Date> {
    if (this.count(protocol) > after) return Promise.resolve(new Date());
    return new Promise((resolve) => this.waiters.push({ protocol: protocol.toUpperCase(), after, resolve }));
  }
}

interface Closing {
  /** The ITGRecv it closes on, as the backend names it. */
  readonly receiver: string;
  readonly protocol: string;
  /** The sender's exit: its flow, or why it failed. */
  readonly exited: Promise<SenderFlow>;
  /** Settles with the exit, whatever it was. */
  readonly done: Promise<void>;
}

/** Flows handed back at their Finish line whose senders still wait for the receiver's ack, by measured log. */
export class ClosingFlows {
  private readonly closing = new Map<string, Closing>();

  constructor(private readonly timeoutMs = CLOSE_WAIT_TIMEOUT_MS) {}

  /**
   * Waits for a started ITGSend until its data is in: its Finish line (the flow is then handed back
   * while it closes, not before its planned duration), or its exit, whichever comes first.
   */
  async untilDataIn(
    child: ChildProcess,
    cmd: SenderCommand,
    run: {
      /** The ITGRecv the flow goes to, as the backend names it (settle() waits for one ITGRecv's closing flows). */
      receiver: string;
      protocol: string;
      ends: FlowEnds;
      finishedBefore: number;
      startedAt: Date;
      durationS: number;
    },
  ): Promise<SenderFlow> {
    const protocol = run.protocol.toUpperCase();
    const exited = awaitSender(child, cmd, run.startedAt);
    const first = await Promise.race([
      exited.then(
        (flow) => ({ flow }),
        (error: unknown) => ({ error }),
      ),
      run.ends.next(protocol, run.finishedBefore).then((at) => ({ at })),
    ]);
    if ("flow" in first) return first.flow;
    if ("error" in first) throw first.error;
    // A Finish line before the planned duration cannot be this flow's: wait for its exit instead.
    if (first.at.getTime() - run.startedAt.getTime() < run.durationS * 1000) return exited;
    const timer = setTimeout(() => child.kill("SIGKILL"), this.timeoutMs);
    const settled = exited.finally(() => clearTimeout(timer));
    const flow = senderFlow(cmd, { senderOutput: "", startedAt: run.startedAt, endedAt: first.at });
    this.closing.set(flow.outcome.logPath, {
      receiver: run.receiver,
      protocol,
      exited: settled,
      done: settled.then(
        () => undefined,
        () => undefined,
      ),
    });
    return flow;
  }

  /**
   * The sender's full output once it has exited, for a flow handed back while closing; undefined for a
   * flow that had exited already. Throws what its exit threw (a non-zero exit, a kill after the timeout).
   */
  async exitOf(measuredLog: string): Promise<string | undefined> {
    const closing = this.closing.get(measuredLog);
    if (!closing) return undefined;
    try {
      return (await closing.exited).outcome.senderOutput;
    } finally {
      this.closing.delete(measuredLog);
    }
  }

  /**
   * Waits until no closing flow is left on this ITGRecv (on every one, without one) holding a data
   * socket of this transport protocol (of every protocol, without one).
   */
  async settle(which: { receiver?: string; protocol?: string } = {}): Promise<void> {
    const { receiver, protocol } = which;
    const waits = [...this.closing.values()].filter((c) => (receiver === undefined || c.receiver === receiver) && (protocol === undefined || c.protocol === protocol.toUpperCase()));
    await Promise.all(waits.map((c) => c.done));
  }
}
