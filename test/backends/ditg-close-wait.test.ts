// A flow handed back at the receiver's Finish line while its sender closes: the stand-in senders are
// small node programs that print like ITGSend and exit when the test tells them (never on a timer, so
// a loaded host's slow start-up cannot reorder what the test means to happen); the receiver's lines
// are fed by hand.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { flowLogs, senderCommand, type SenderCommand } from "../../measure/ditg-commands.js";
import { ClosingFlows, FlowEnds } from "../../backends/ditg-close-wait.js";

const dir = mkdtempSync(path.join(tmpdir(), "close-wait-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const command = (name: string): SenderCommand =>
  senderCommand({
    traffic: { protocol: "UDP", meter: "rttm", payloadBytes: 512, packetsPerSecond: 1000 },
    durationS: 1,
    target: { address: "198.18.1.10", signalingPort: 30900, dataPort: 31000 },
    logs: flowLogs(name, { senderDir: dir, receiverDir: dir }),
    linkMbps: 0,
  });

/**
 * A stand-in sender: prints its start line, then waits for a line on stdin with an exit code, prints its Finish line
 * and exits with it; told nothing, it never exits. Its timing is the test's to choose, whatever start-up takes.
 */
const sender = () =>
  spawn(
    process.execPath,
    ["-e", `console.log("Started sending packets of flow ID: 1"); process.stdin.once("data", (d) => { console.log("Finished sending packets of flow ID: 1"); process.exit(Number(String(d).trim())); });`],
    { stdio: ["pipe", "pipe", "pipe"] },
  );

/** Resolves once the stand-in has printed its start line: it runs. */
const running = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("Started sending")) resolve();
    });
  });

const exitWith = (child: ChildProcess, code: number) => child.stdin!.write(`${code}\n`);

/** One turn of the event loop: every promise settled by what ran before has run its callbacks. */
const settled = () => new Promise((r) => setImmediate(r));

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});
const started = () => {
  const child = sender();
  children.push(child);
  return child;
};

describe("the receiver's Finish lines", () => {
  it("counts them per transport protocol, across chunks, and wakes who waits for the next one", async () => {
    const ends = new FlowEnds();
    ends.feed("Listening on UDP port : 31000\nFinish on UDP po");
    expect(ends.count("UDP")).toBe(0);
    const next = ends.next("udp", 0);
    ends.feed("rt : 31000\nFinish on TCP port : 31000\n");
    expect(await next).toBeInstanceOf(Date);
    expect([ends.count("UDP"), ends.count("TCP"), ends.count("SCTP")]).toEqual([1, 1, 0]);
    // Already past: resolves at once; not yet: waits for the next line of that protocol only.
    await ends.next("TCP", 0);
    let woken = false;
    const tcp = ends.next("TCP", 1).then(() => (woken = true));
    ends.feed("Finish on UDP port : 31000\n");
    await settled();
    expect(woken).toBe(false);
    ends.feed("Finish on TCP port : 31000\n");
    await tcp;
    expect(woken).toBe(true);
  });
});

describe("flows handed back while they close", () => {
  it("hands the flow back at its Finish line, holds its protocol until the sender exits, then gives its whole output", async () => {
    const closing = new ClosingFlows();
    const ends = new FlowEnds();
    const cmd = command("a");
    const startedAt = new Date(Date.now() - 1000);
    const child = started();
    const flow = closing.untilDataIn(child, cmd, { receiver: "pod ITGRecv 1", protocol: "UDP", ends, finishedBefore: 0, startedAt, durationS: 1 });
    await running(child);
    ends.feed("Finish on UDP port : 31000\n");
    const sent = await flow;
    expect(child.exitCode).toBeNull();
    expect(sent.outcome).toMatchObject({ logPath: cmd.logs.senderLog, receiverLogPath: cmd.logs.receiverLog, senderOutput: "" });
    expect(sent.outcome.endedAt.getTime()).toBeLessThanOrEqual(Date.now());
    // Another protocol or another ITGRecv does not wait for it; the same protocol on its ITGRecv does, until it exits.
    await closing.settle({ protocol: "TCP" });
    await closing.settle({ receiver: "pod ITGRecv 2" });
    await closing.settle({ receiver: "pod ITGRecv 2", protocol: "UDP" });
    expect(child.exitCode).toBeNull();
    let udpSettled = false;
    let receiverSettled = false;
    const udp = closing.settle({ protocol: "UDP" }).then(() => (udpSettled = true));
    const receiver = closing.settle({ receiver: "pod ITGRecv 1" }).then(() => (receiverSettled = true));
    await settled();
    expect([udpSettled, receiverSettled]).toEqual([false, false]);
    exitWith(child, 0);
    await Promise.all([udp, receiver]);
    expect(child.exitCode).toBe(0);
    expect(await closing.exitOf(cmd.logs.senderLog)).toMatch(/Started sending.*\n.*Finished sending packets of flow ID: 1/s);
    expect(await closing.exitOf(cmd.logs.senderLog)).toBeUndefined();
  });

  it("waits for the exit when the sender exits first, or when a Finish line comes before the flow's planned end", async () => {
    const closing = new ClosingFlows();
    const ends = new FlowEnds();
    const first = started();
    const quickFlow = closing.untilDataIn(first, command("b"), { receiver: "pod ITGRecv 1", protocol: "UDP", ends, finishedBefore: 0, startedAt: new Date(), durationS: 1 });
    await running(first);
    exitWith(first, 0);
    expect((await quickFlow).outcome.senderOutput).toMatch(/Finished sending/);
    // A Finish line fed at once, long before the 5-second flow could have ended: not this flow's.
    const child = started();
    const early = closing.untilDataIn(child, command("c"), { receiver: "pod ITGRecv 1", protocol: "UDP", ends, finishedBefore: 0, startedAt: new Date(), durationS: 5 });
    ends.feed("Finish on UDP port : 31000\n");
    await running(child);
    exitWith(child, 0);
    expect((await early).outcome.senderOutput).toMatch(/Finished sending/);
    expect(child.exitCode).toBe(0);
  });

  it("reports a sender that fails after its Finish line when the flow's logs are collected", async () => {
    const closing = new ClosingFlows();
    const ends = new FlowEnds();
    const child = started();
    const failing = closing.untilDataIn(child, command("d"), { receiver: "pod ITGRecv 1", protocol: "UDP", ends, finishedBefore: 0, startedAt: new Date(Date.now() - 2000), durationS: 1 });
    await running(child);
    ends.feed("Finish on UDP port : 31000\n");
    await failing;
    exitWith(child, 3);
    await expect(closing.exitOf(command("d").logs.senderLog)).rejects.toThrow(/ITGSend exited with 3/);
  });

  it("kills a sender that hangs after its Finish line once the close wait's timeout has passed, and reports it", async () => {
    // The stand-in never exits by itself: the kill is certain, however long the timeout.
    const closing = new ClosingFlows(300);
    const ends = new FlowEnds();
    const child = started();
    const hanging = closing.untilDataIn(child, command("e"), { receiver: "pod ITGRecv 1", protocol: "UDP", ends, finishedBefore: 0, startedAt: new Date(Date.now() - 2000), durationS: 1 });
    await running(child);
    ends.feed("Finish on UDP port : 31000\n");
    await hanging;
    await closing.settle();
    expect(child.signalCode).toBe("SIGKILL");
    await expect(closing.exitOf(command("e").logs.senderLog)).rejects.toThrow(/ITGSend exited with null/);
  });
});
