// D-ITG B15 with the real D-ITG, made certain: an rttm flow in a private network namespace whose ITGRecv is paused
// (SIGSTOP/SIGCONT) across a second boundary, so that echoes of packets sent before the boundary return after later
// packets left. The meter's own numbers (what ITGDec prints) then hold records of about a second; the paired decode
// must equal an independent pairing of the two logs to the microsecond, and the sender log read alone must leave out
// every record of 0.5 s or more. Needs Linux, root (unshare -n) and the d-itg package.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { flowLogs, judgeFlow, receiverCommand, senderCommand } from "../../measure/ditg-commands.js";
import { decodeLogAlone, decodeLogFile, RTTM_SIGNATURE_S } from "../../measure/ditg-log.js";
import { decodePairedLogs } from "../../measure/ditg-pairing.js";
import { expectSameAsItgDec, runItgDec } from "./decode-itgdec.js";
import { expectDelaysOf, independentRoundTrips, loggedDelays } from "./round-trips.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** The namespace's only address besides loopback's: from the benchmarking range. */
const ADDRESS = "198.18.255.1";
const SIGNALING_PORT = 9000;
const DATA_PORT = 31000;
const FLOW_S = 4;
/** ITGRecv sleeps this long on each side of the second boundary. */
const STALL_HALF_MS = 100;
/** Longest pause an attempt may take: its round trips must stay below the meter's 0.5 s signature (RTTM_SIGNATURE_S). */
const STALL_MAX_MS = 400;
/** Flows tried until one's pause covers the boundary. */
const ATTEMPTS = 3;

function hostProblem(): string | undefined {
  if (process.platform !== "linux") return "needs Linux";
  if (process.getuid?.() !== 0) return "needs root (unshare -n)";
  for (const tool of ["/usr/bin/unshare", "/usr/bin/nsenter", "/usr/bin/ITGSend", "/usr/bin/ITGRecv"]) if (!existsSync(tool)) return `needs ${tool}`;
  return undefined;
}
const problem = hostProblem();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** True when ITGRecv (pid) listens on the signaling port, read from its namespace's socket table (a probe could kill it, B1). */
async function listening(pid: number): Promise<boolean> {
  const hex = `:${SIGNALING_PORT.toString(16).toUpperCase().padStart(4, "0")}`;
  for (const table of ["tcp", "tcp6"]) {
    const rows = (await readFile(`/proc/${pid}/net/${table}`, "utf8").catch(() => "")).split("\n").map((l) => l.trim().split(/\s+/));
    if (rows.some((r) => r[1]?.endsWith(hex) && r[3] === "0A")) return true;
  }
  return false;
}

/**
 * Packets of a receiver log sent before a second boundary and received more than 10 ms after it, read from ITGRecv's
 * own records, independently of the decoder.
 */
async function heldAcross(receiverLog: string, boundaryMs: number): Promise<number> {
  const bytes = await readFile(receiverLog);
  const boundaryOfDay = Math.round((boundaryMs / 1000) % 86_400);
  let held = 0;
  for (let at = 0; at < bytes.length; at += 144) {
    const tx = bytes.readUInt32LE(at + 16) * 3600 + bytes.readUInt32LE(at + 20) * 60 + bytes.readDoubleLE(at + 128);
    const rx = bytes.readUInt32LE(at + 24) * 3600 + bytes.readUInt32LE(at + 28) * 60 + bytes.readDoubleLE(at + 136);
    if (tx < boundaryOfDay && rx > boundaryOfDay + 0.01) held++;
  }
  return held;
}

function run(argv: string[]): Promise<{ code: number; output: string }> {
  return new Promise((done) =>
    execFile(argv[0]!, argv.slice(1), { cwd: ROOT, timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      done({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, output: stdout + stderr }),
    ),
  );
}

describe.skipIf(problem !== undefined)(`D-ITG B15 with a receiver paused across a second boundary${problem ? ` (skipped: ${problem})` : ""}`, () => {
  let dir: string;
  let receiver: ChildProcess;
  let logs: { senderLog: string; receiverLog: string };
  let senderOutput: string;
  /** The second boundary ITGRecv slept across, epoch ms. */
  let boundaryMs: number;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "rtt-stall-"));
    // A private network namespace that lives as long as ITGRecv: unshare and both shells exec, so the child's pid is ITGRecv's.
    const [sh, ...args] = receiverCommand({ signalingPort: SIGNALING_PORT, family: "ipv4" });
    receiver = spawn(
      "unshare",
      ["-n", "sh", "-c", `ip link set lo up && ip addr add ${ADDRESS}/32 dev lo && exec "$@"`, "sh", sh!, ...args],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    // ITGRecv prints a Finish line once a flow's log is written (backends/ditg-close-wait.ts): each flow waits for one more.
    let printed = "";
    let finishes = 0;
    const waiting: { count: number; resolve: () => void }[] = [];
    receiver.stdout!.on("data", (d: Buffer) => {
      printed += d.toString();
      finishes = (printed.match(/^Finish on UDP port/gm) ?? []).length;
      for (const w of waiting.filter((x) => x.count <= finishes)) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve();
      }
    });
    const finishLine = (count: number) => new Promise<void>((resolve) => (finishes >= count ? resolve() : waiting.push({ count, resolve })));
    // Polled from its socket table until it listens, however long a loaded host takes to start it (the hook's timeout bounds it).
    while (!(await listening(receiver.pid!))) {
      if (receiver.exitCode !== null) throw new Error(`ITGRecv exited with ${receiver.exitCode}`);
      await sleep(50);
    }

    // The pause is timed by this process's timers, which a loaded host delays: an attempt whose pause missed the
    // boundary, or outgrew STALL_MAX_MS, is run again with a new flow. What the test reads is a flow the fault took.
    const misses: string[] = [];
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const cmd = senderCommand({
        traffic: { protocol: "UDP", meter: "rttm", payloadBytes: 512, packetsPerSecond: 1000 },
        durationS: FLOW_S,
        target: { address: ADDRESS, signalingPort: SIGNALING_PORT, dataPort: DATA_PORT },
        logs: flowLogs(`stalled-${attempt}`, { senderDir: dir, receiverDir: dir }),
        linkMbps: 0,
      });
      const sender = spawn("nsenter", ["-t", String(receiver.pid), "-n", ...cmd.argv], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      const collect = (d: Buffer) => (output += d.toString());
      sender.stdout!.on("data", collect);
      sender.stderr!.on("data", collect);
      const closed = new Promise<void>((resolve) => sender.once("close", () => resolve()));
      // ITGSend says when its flow starts sending (the line comes at once, not at its exit).
      const startedAt = await new Promise<number>((resolve, reject) => {
        sender.stdout!.on("data", () => /Started sending packets of flow ID/.test(output) && resolve(Date.now()));
        sender.once("close", (code) => reject(new Error(`ITGSend ended (${code}) before it started sending: ${output}`)));
      });
      // The first whole second at least half a second into the flow, with the pause around it.
      const boundary = Math.ceil((startedAt + 500) / 1000) * 1000;
      await sleep(boundary - STALL_HALF_MS - Date.now());
      const stopBefore = Date.now();
      process.kill(receiver.pid!, "SIGSTOP");
      const stopAfter = Date.now();
      await sleep(boundary + STALL_HALF_MS - Date.now());
      const continueBefore = Date.now();
      process.kill(receiver.pid!, "SIGCONT");
      const continueAfter = Date.now();
      await closed;
      await finishLine(attempt);
      const took =
        stopAfter < boundary - 10 && continueBefore > boundary + 10 && continueAfter - stopBefore < STALL_MAX_MS && (await heldAcross(cmd.logs.receiverLog, boundary)) > 0;
      if (took) {
        logs = cmd.logs;
        senderOutput = output;
        boundaryMs = boundary;
        if (misses.length > 0) console.info(`paused receiver: the fault took at attempt ${attempt} after\n${misses.join("\n")}`);
        return;
      }
      misses.push(`attempt ${attempt}: paused from ${stopBefore - boundary} to ${continueAfter - boundary} ms around the boundary, ${await heldAcross(cmd.logs.receiverLog, boundary)} packets held across it`);
    }
    throw new Error(`the pause missed the second boundary or outgrew ${STALL_MAX_MS} ms on every attempt (a busy host's timers):\n${misses.join("\n")}`);
  }, 600_000);

  afterAll(async () => {
    receiver?.kill("SIGKILL");
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("the flow ran and the fault took: packets sent before the boundary reached ITGRecv only after it", async () => {
    expect(senderOutput).toContain("Finished sending packets of flow ID: 1");
    expect(receiver.exitCode, "ITGRecv survives the pause").toBeNull();
    // Not a decoder failure if this fails: the pause missed the boundary (signals late on a loaded host). One packet
    // held across it is the fault: its echo is logged a second long (B15). A busy host's ITGSend sends few in the pause.
    expect(await heldAcross(logs.receiverLog, boundaryMs), "packets held across the second boundary by the pause (the fault)").toBeGreaterThan(0);
    const decoded = await decodePairedLogs(logs.senderLog, logs.receiverLog);
    expect(judgeFlow(senderOutput, decoded, { records: 1, minShare: 1 })).toEqual({ ok: true });
  });

  it("the meter's own numbers carry the bug: records of a second or more, exactly as ITGDec prints them", async () => {
    const meter = await decodeLogFile(logs.senderLog, { views: ["logged"] });
    expectSameAsItgDec(meter, await runItgDec(logs.senderLog));
    expect(meter.total.delayMaxS).toBeGreaterThanOrEqual(1);
    const logged = await loggedDelays(logs.senderLog);
    expect(logged.filter((d) => d >= 1e6).length).toBeGreaterThan(0);
  });

  it("the paired decode equals the independent pairing of the two logs to the microsecond, and shows the true stall", async () => {
    const truth = await independentRoundTrips(logs.senderLog, logs.receiverLog);
    expect(truth.unpaired).toBe(0);
    const paired = await decodePairedLogs(logs.senderLog, logs.receiverLog);
    expect([paired.total.delaySource, paired.total.excludedRecords, paired.total.packets]).toEqual(["paired", 0, truth.paired.length]);
    expectDelaysOf(paired.total, truth.paired, "paired total");
    expectDelaysOf(paired.flows[0]!, truth.paired, "paired flow");
    // The exact maximum is the pause (up to 2 x STALL_HALF_MS plus a late signal), not a second.
    expect(paired.total.delayMaxS).toBeGreaterThan(STALL_HALF_MS / 1000);
    expect(paired.total.delayMaxS).toBeLessThan(RTTM_SIGNATURE_S);
    const cli = await run([process.execPath, "--import", "tsx", "cli/main.ts", "decode", logs.senderLog, "--receiver-log", logs.receiverLog, "--json"]);
    expect(JSON.parse(cli.output)).toEqual(JSON.parse(JSON.stringify(paired)));
  });

  it("the records tell what wrote each log: ITGSend's round-trip log by B15's stamps, ITGRecv's by its destination", async () => {
    expect((await decodeLogFile(logs.senderLog)).content?.kind).toBe("round-trip");
    expect((await decodeLogFile(logs.receiverLog)).content?.kind).toBe("one-way");
    const alone = await decodeLogAlone(logs.senderLog);
    expect(alone.view).toBe("sender");
    await expect(decodePairedLogs(logs.receiverLog, logs.senderLog)).rejects.toThrow(/is a receiver's log, not ITGSend's round-trip log/);
  });

  it("the sender log alone leaves out every record of 0.5 s or more, and keeps the rest as logged", async () => {
    const logged = await loggedDelays(logs.senderLog);
    const kept = logged.filter((d) => d < RTTM_SIGNATURE_S * 1e6);
    const sender = await decodeLogFile(logs.senderLog, { views: ["sender"] });
    expect(logged.length - kept.length).toBeGreaterThan(0);
    expect([sender.total.excludedRecords, sender.total.packets]).toEqual([logged.length - kept.length, logged.length]);
    expectDelaysOf(sender.total, kept, "sender log alone");
    expect(sender.total.delayMaxS).toBeLessThan(RTTM_SIGNATURE_S);
  });
});
