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
    // ITGRecv prints its Finish line once the flow's log is written (backends/ditg-close-wait.ts).
    let printed = "";
    const logWritten = new Promise<void>((resolve) =>
      receiver.stdout!.on("data", (d: Buffer) => {
        printed += d.toString();
        if (/^Finish on UDP port/m.test(printed)) resolve();
      }),
    );
    // Polled from its socket table until it listens, however long a loaded host takes to start it (the hook's timeout bounds it).
    while (!(await listening(receiver.pid!))) {
      if (receiver.exitCode !== null) throw new Error(`ITGRecv exited with ${receiver.exitCode}`);
      await sleep(50);
    }

    const cmd = senderCommand({
      traffic: { protocol: "UDP", meter: "rttm", payloadBytes: 512, packetsPerSecond: 1000 },
      durationS: FLOW_S,
      target: { address: ADDRESS, signalingPort: SIGNALING_PORT, dataPort: DATA_PORT },
      logs: flowLogs("stalled", { senderDir: dir, receiverDir: dir }),
      linkMbps: 0,
    });
    logs = cmd.logs;
    const sender = run(["nsenter", "-t", String(receiver.pid), "-n", ...cmd.argv]);
    // The first whole second at least 1.5 s into the flow (signaling takes a few hundred ms).
    boundaryMs = Math.ceil((Date.now() + 1500) / 1000) * 1000;
    await sleep(boundaryMs - STALL_HALF_MS - Date.now());
    process.kill(receiver.pid!, "SIGSTOP");
    await sleep(boundaryMs + STALL_HALF_MS - Date.now());
    process.kill(receiver.pid!, "SIGCONT");
    const sent = await sender;
    senderOutput = sent.output;
    await logWritten;
  }, 120_000);

  afterAll(async () => {
    receiver?.kill("SIGKILL");
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("the flow ran and the fault took: packets sent before the boundary reached ITGRecv only after it", async () => {
    expect(senderOutput).toContain("Finished sending packets of flow ID: 1");
    expect(receiver.exitCode, "ITGRecv survives the pause").toBeNull();
    // Read from ITGRecv's own log, independently of the decoder: send stamp before the boundary, arrival after it.
    const bytes = await readFile(logs.receiverLog);
    const boundaryOfDay = Math.round((boundaryMs / 1000) % 86_400);
    let heldAcross = 0;
    for (let at = 0; at < bytes.length; at += 144) {
      const tx = bytes.readUInt32LE(at + 16) * 3600 + bytes.readUInt32LE(at + 20) * 60 + bytes.readDoubleLE(at + 128);
      const rx = bytes.readUInt32LE(at + 24) * 3600 + bytes.readUInt32LE(at + 28) * 60 + bytes.readDoubleLE(at + 136);
      if (tx < boundaryOfDay && rx > boundaryOfDay + 0.01) heldAcross++;
    }
    // Not a decoder failure if this fails: the pause missed the boundary (signals late on a loaded host).
    expect(heldAcross, "packets held across the second boundary by the pause (the fault)").toBeGreaterThan(10);
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
