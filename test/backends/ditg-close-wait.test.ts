// A flow handed back at the receiver's Finish line while its sender closes: the stand-in senders are
// small node programs that print and exit like ITGSend, the receiver's lines are fed by hand.
import { spawn } from "node:child_process";
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

/** A stand-in sender: prints its start, exits with `code` after `ms`. */
const sender = (ms: number, code = 0) =>
  spawn(process.execPath, ["-e", `console.log("Started sending packets of flow ID: 1"); setTimeout(() => { console.log("Finished sending packets of flow ID: 1"); process.exit(${code}); }, ${ms});`], {
    stdio: ["ignore", "pipe", "pipe"],
  });

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
    void ends.next("TCP", 1).then(() => (woken = true));
    ends.feed("Finish on UDP port : 31000\n");
    await wait(10);
    expect(woken).toBe(false);
    ends.feed("Finish on TCP port : 31000\n");
    await wait(10);
    expect(woken).toBe(true);
  });
});

describe("flows handed back while they close", () => {
  it("hands the flow back at its Finish line, holds its protocol until the sender exits, then gives its whole output", async () => {
    const closing = new ClosingFlows();
    const ends = new FlowEnds();
    const cmd = command("a");
    const startedAt = new Date(Date.now() - 1000);
    const child = sender(400);
    const flow = closing.untilDataIn(child, cmd, { protocol: "UDP", ends, finishedBefore: 0, startedAt, durationS: 1 });
    await wait(100);
    ends.feed("Finish on UDP port : 31000\n");
    const sent = await flow;
    expect(child.exitCode).toBeNull();
    expect(sent.outcome).toMatchObject({ logPath: cmd.logs.senderLog, receiverLogPath: cmd.logs.receiverLog, senderOutput: "" });
    expect(sent.outcome.endedAt.getTime()).toBeLessThanOrEqual(Date.now());
    // Another protocol does not wait for it; the same one does.
    await closing.settle("TCP");
    expect(child.exitCode).toBeNull();
    await closing.settle("UDP");
    expect(child.exitCode).toBe(0);
    expect(await closing.exitOf(cmd.logs.senderLog)).toMatch(/Started sending.*\n.*Finished sending packets of flow ID: 1/s);
    expect(await closing.exitOf(cmd.logs.senderLog)).toBeUndefined();
  });

  it("waits for the exit when the sender exits first, or when a Finish line comes before the flow's planned end", async () => {
    const closing = new ClosingFlows();
    const ends = new FlowEnds();
    const quick = await closing.untilDataIn(sender(50), command("b"), { protocol: "UDP", ends, finishedBefore: 0, startedAt: new Date(), durationS: 1 });
    expect(quick.outcome.senderOutput).toMatch(/Finished sending/);
    const child = sender(300);
    const early = closing.untilDataIn(child, command("c"), { protocol: "UDP", ends, finishedBefore: 0, startedAt: new Date(), durationS: 5 });
    ends.feed("Finish on UDP port : 31000\n");
    expect((await early).outcome.senderOutput).toMatch(/Finished sending/);
    expect(child.exitCode).toBe(0);
  });

  it("reports a sender that fails or hangs after its Finish line when the flow's logs are collected", async () => {
    const closing = new ClosingFlows(300);
    const ends = new FlowEnds();
    const at = () => new Date(Date.now() - 2000);
    const failing = closing.untilDataIn(sender(100, 3), command("d"), { protocol: "UDP", ends, finishedBefore: 0, startedAt: at(), durationS: 1 });
    ends.feed("Finish on UDP port : 31000\n");
    await failing;
    await expect(closing.exitOf(command("d").logs.senderLog)).rejects.toThrow(/ITGSend exited with 3/);
    const hanging = closing.untilDataIn(sender(60_000), command("e"), { protocol: "UDP", ends, finishedBefore: 1, startedAt: at(), durationS: 1 });
    ends.feed("Finish on UDP port : 31000\n");
    await hanging;
    await closing.settle();
    await expect(closing.exitOf(command("e").logs.senderLog)).rejects.toThrow(/ITGSend exited with null/);
  });
});
