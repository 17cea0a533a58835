// Benchmark: `testbed decode` against ITGDec (stderr to /dev/null) on five-million-record D-ITG logs, whole commands
// with their start-up, alternating, in the same run, then peak memory on logs ten times smaller. Two comparisons:
// - one log: `decode --itgdec --json` (ITGDec's numbers) against ITGDec on a one-way receiver log;
// - paired: `decode SENDER --receiver-log RECEIVER --json` (exact round trips, D-ITG B15: both logs read) against
//   ITGDec on the sender log alone, which is all ITGDec reads of an rttm flow.
// Run: npx tsx bench/decode.ts   (Linux, d-itg installed; needs ~3 GB in the temp directory, deleted at the end)
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { copyFile, mkdtemp, open, readFile, rm, stat, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { flowLogs, receiverCommand, senderCommand } from "../measure/ditg-commands.js";
import { decodeRecord, encodeRecord, RECORD_BYTES, recordBlock, timeOfDay } from "../measure/ditg-log.js";
import type { TrafficProfile } from "../measure/types.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SELF = fileURLToPath(import.meta.url);
const RECORDS = 5_000_000;
const REPETITIONS = 5;
/** Offered rate of the one-way recording: about what ITGRecv logs without loss on 2 vCPUs (250 kpps lost 30%). */
const ONE_WAY_RATE = 100_000;
/** Offered rate of the round-trip recording: ITGSend also receives every echo, so it keeps up with less. */
const ROUND_TRIP_RATE = 20_000;
/** Seconds of the round-trip recording; the logs are then replayed up to RECORDS. */
const ROUND_TRIP_SECONDS = 10;

interface Timed {
  readonly wallS: number;
  readonly maxRssMB: number;
  readonly stdout: string;
}

/** Runs a command under GNU time; wall time is measured around it, peak RSS comes from time -v. */
async function timed(argv: string[], dir: string): Promise<Timed> {
  const report = join(dir, "time.txt");
  const t0 = performance.now();
  const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((done, fail) => {
    // stderr to /dev/null: ITGDec writes a spinner character per record there (B5).
    const child = spawn("/usr/bin/time", ["-v", "-o", report, ...argv], { cwd: ROOT, stdio: ["ignore", "pipe", "ignore"] });
    const chunks: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => chunks.push(c));
    child.on("error", fail);
    child.on("close", (c) => done({ code: c, stdout: Buffer.concat(chunks).toString("utf8") }));
  });
  const wallS = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`${argv.join(" ")} exited with ${code}`);
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(await readFile(report, "utf8"));
  return { wallS, maxRssMB: Number(rss![1]) / 1024, stdout };
}

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => done(port));
    });
    srv.on("error", fail);
  });
}

/** Waits until a TCP socket listens on the port, read from /proc (a probe connection could kill ITGRecv, B1). */
async function waitListening(port: number, child: ChildProcess): Promise<void> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (let i = 0; i < 100; i++) {
    for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      const rows = (await readFile(table, "utf8")).split("\n").map((l) => l.trim().split(/\s+/));
      if (rows.some((r) => r[1]?.endsWith(hex) && r[3] === "0A")) return;
    }
    if (child.exitCode !== null) throw new Error(`ITGRecv exited with ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`ITGRecv does not listen on ${port}`);
}

interface Recorded {
  readonly senderLog: string;
  readonly receiverLog: string;
  readonly seconds: number;
}

/** Records a real UDP flow on loopback with the project's own command lines; returns both logs. */
async function recordFlow(dir: string, name: string, traffic: TrafficProfile, seconds: number): Promise<Recorded> {
  const signalingPort = await freePort();
  const [cmd, ...args] = receiverCommand({ signalingPort, family: "ipv4" });
  const receiver = spawn(cmd!, args, { stdio: "ignore" });
  try {
    await waitListening(signalingPort, receiver);
    const flow = senderCommand({
      traffic,
      durationS: seconds,
      target: { address: "127.0.0.1", signalingPort, dataPort: await freePort() },
      logs: flowLogs(name, { senderDir: dir, receiverDir: dir }),
      linkMbps: 0,
    });
    const sender = spawn(flow.argv[0]!, flow.argv.slice(1), { stdio: "ignore" });
    await new Promise((done) => sender.on("close", done));
    // ITGRecv writes the rest of its log when the flow ends.
    await new Promise((r) => setTimeout(r, 1000));
    return { ...flow.logs, seconds };
  } finally {
    receiver.kill("SIGKILL");
  }
}

const records = async (path: string) => (await stat(path)).size / RECORD_BYTES;
const micros = (t: { hour: number; minute: number; second: number }) => Math.round((t.hour * 3600 + t.minute * 60 + t.second) * 1e6);

/** How a log is replayed past its end: each pass moves sequence numbers and time stamps by these steps. */
interface ReplayShift {
  readonly seqStep: number;
  readonly periodUs: number;
}

/** The shift that replays a log after itself: its last sequence number, its span of receive times. */
async function replayShift(path: string): Promise<ReplayShift> {
  const file = await open(path, "r");
  try {
    const block = recordBlock(1);
    await file.read(block.bytes, 0, RECORD_BYTES, 0);
    const head = decodeRecord(block, 0);
    await file.read(block.bytes, 0, RECORD_BYTES, ((await records(path)) - 1) * RECORD_BYTES);
    const tail = decodeRecord(block, 0);
    return { seqStep: tail.seqNum, periodUs: micros(tail.rx) - micros(head.rx) + 10 };
  } finally {
    await file.close();
  }
}

/**
 * Makes `path` exactly `target` records long: cuts a longer log; extends a shorter one by replaying its own records
 * with sequence numbers and time stamps moved by `shift` per pass, so the result still reads as one flow (and the two
 * logs of one flow, replayed with the same shift, still pair record by record).
 */
async function fitLog(path: string, target: number, shift: ReplayShift): Promise<void> {
  const recorded = await records(path);
  if (recorded >= target) {
    await truncate(path, target * RECORD_BYTES);
    return;
  }
  const file = await open(path, "r+");
  try {
    const block = recordBlock(65_536);
    let written = recorded;
    for (let pass = 1; written < target; pass++) {
      for (let at = 0; at < recorded && written < target; ) {
        const n = Math.min(65_536, recorded - at, target - written);
        await file.read(block.bytes, 0, n * RECORD_BYTES, at * RECORD_BYTES);
        for (let i = 0; i < n; i++) {
          const r = decodeRecord(block, i);
          const us = pass * shift.periodUs;
          encodeRecord(block, i, { ...r, seqNum: r.seqNum + pass * shift.seqStep, tx: timeOfDay(micros(r.tx) + us), rx: timeOfDay(micros(r.rx) + us) });
        }
        await file.write(block.bytes, 0, n * RECORD_BYTES, written * RECORD_BYTES);
        at += n;
        written += n;
      }
    }
  } finally {
    await file.close();
  }
}

async function smallCopy(path: string, dir: string, name: string): Promise<string> {
  const small = join(dir, name);
  await copyFile(path, small);
  await truncate(small, Math.min(await records(path), RECORDS / 10) * RECORD_BYTES);
  return small;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const f2 = (x: number) => x.toFixed(2);
const count = (n: number) => n.toLocaleString("en");

/** One comparison: commands over the same logs, alternating, their wall times, ratio against the first, peak memory. */
async function compare(
  title: string,
  commands: Record<string, { label: string; argv: (big: boolean) => string[] }>,
  dir: string,
  check: (warm: Record<string, Timed>) => string,
): Promise<void> {
  const names = Object.keys(commands);
  console.log(`\n${title}`);
  // Warm-up (page cache, tsx's transform cache), then check they tell the same numbers.
  const warm: Record<string, Timed> = {};
  for (const n of names) warm[n] = await timed(commands[n]!.argv(true), dir);
  console.log(check(warm));
  const runs = Object.fromEntries(names.map((n) => [n, [] as Timed[]]));
  for (let rep = 0; rep < REPETITIONS; rep++) {
    // Alternate who goes first so that neither always runs on a warmer or busier machine.
    const order = rep % 2 === 0 ? names : [...names].reverse();
    for (const n of order) runs[n]!.push(await timed(commands[n]!.argv(true), dir));
  }
  const wall = (n: string) => median(runs[n]!.map((r) => r.wallS));
  for (const n of names) {
    const w = runs[n]!.map((r) => r.wallS);
    console.log(
      `  ${commands[n]!.label}: wall median ${f2(wall(n))} s (min ${f2(Math.min(...w))}, max ${f2(Math.max(...w))}, ${REPETITIONS} runs), ` +
        `peak RSS ${Math.max(...runs[n]!.map((r) => r.maxRssMB)).toFixed(0)} MB`,
    );
  }
  const [baseline, ...others] = names;
  for (const n of others) console.log(`  ratio ${commands[baseline!]!.label} / ${commands[n]!.label}: ${f2(wall(baseline!) / wall(n))}x faster`);
  const smallRss: Record<string, number> = {};
  for (const n of names) smallRss[n] = (await timed(commands[n]!.argv(false), dir)).maxRssMB;
  console.log(
    `  peak RSS on logs 10x smaller vs the full ones: ` +
      names.map((n) => `${n} ${smallRss[n]!.toFixed(0)} MB vs ${Math.max(...runs[n]!.map((r) => r.maxRssMB)).toFixed(0)} MB`).join("; "),
  );
}

const viaMain = (...args: string[]) => [process.execPath, "--import", "tsx/esm", "cli/main.ts", "decode", ...args];
const verbOnly = (...args: string[]) => [process.execPath, "--import", "tsx/esm", SELF, "--decode-verb-only", ...args];

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "bench-decode-"));
  try {
    // --- One log: ITGDec's numbers from a one-way receiver log.
    const seconds = Math.ceil((RECORDS * 1.05) / ONE_WAY_RATE);
    const oneWay = await recordFlow(dir, "one-way", { protocol: "UDP", meter: "owdm", payloadBytes: 16, packetsPerSecond: ONE_WAY_RATE }, seconds);
    await rm(oneWay.senderLog, { force: true });
    const recorded = await records(oneWay.receiverLog);
    await fitLog(oneWay.receiverLog, RECORDS, await replayShift(oneWay.receiverLog));
    console.log(
      `one-way log: ${count(RECORDS)} records (${((RECORDS * RECORD_BYTES) / 1e6).toFixed(0)} MB) from real ITGSend/ITGRecv on loopback ` +
        `(UDP, 16-byte payload, ${ONE_WAY_RATE} pkt/s offered for ${seconds} s, ${count(recorded)} recorded${recorded < RECORDS ? ", extended by replaying them with shifted sequence numbers and time stamps" : ""})`,
    );
    const small = await smallCopy(oneWay.receiverLog, dir, "small.rlog");
    const log = (big: boolean) => (big ? oneWay.receiverLog : small);
    await compare(
      "one log: ITGDec's numbers",
      {
        itgdec: { label: "ITGDec FILE 2>/dev/null", argv: (big) => ["ITGDec", log(big)] },
        testbed: { label: "node --import tsx/esm cli/main.ts decode FILE --itgdec --json", argv: (big) => viaMain(log(big), "--itgdec", "--json") },
        verb: { label: "the decode verb alone (cli/decode.ts without cli/main.ts's other verbs)", argv: (big) => verbOnly(log(big), "--itgdec", "--json") },
      },
      dir,
      (warm) => {
        const ours = JSON.parse(warm.testbed!.stdout).total;
        const itgTotal = warm.itgdec!.stdout.slice(warm.itgdec!.stdout.indexOf("TOTAL RESULTS"));
        const printed = (label: string) => new RegExp(`${label} *= *(\\S+)`).exec(itgTotal)?.[1];
        const agree = [
          ["Total packets", String(ours.packets)],
          ["Bytes received", String(ours.bytes)],
          ["Average delay", ours.delayMeanS.toFixed(6)],
          ["Delay standard deviation", ours.delayStdS.toFixed(6)],
          ["Average bitrate", ours.bitrateKbps.toFixed(6)],
        ].every(([label, value]) => printed(label!) === value);
        return `  results agree with ITGDec's TOTAL: ${agree ? "yes" : "NO"} (${ours.packets} packets, mean delay ${ours.delayMeanS.toFixed(6)} s, p99.9 ${ours.p999S} s)`;
      },
    );
    await rm(oneWay.receiverLog, { force: true });

    // --- Paired: exact round trips from both logs, against ITGDec on the sender log alone.
    const rtt = await recordFlow(dir, "round-trip", { protocol: "UDP", meter: "rttm", payloadBytes: 16, packetsPerSecond: ROUND_TRIP_RATE }, ROUND_TRIP_SECONDS);
    const recordedPair = [await records(rtt.senderLog), await records(rtt.receiverLog)];
    const shift = await replayShift(rtt.senderLog);
    await fitLog(rtt.senderLog, RECORDS, shift);
    await fitLog(rtt.receiverLog, RECORDS, shift);
    console.log(
      `\nround-trip logs: ${count(RECORDS)} records each from a real rttm flow on loopback (UDP, 16-byte payload, ${ROUND_TRIP_RATE} pkt/s offered for ` +
        `${ROUND_TRIP_SECONDS} s: ${count(recordedPair[0]!)} sender and ${count(recordedPair[1]!)} receiver records, replayed with the same shifts)`,
    );
    const smallPair = [await smallCopy(rtt.senderLog, dir, "small.slog"), await smallCopy(rtt.receiverLog, dir, "small-pair.rlog")];
    const pair = (big: boolean) => (big ? [rtt.senderLog, rtt.receiverLog] : smallPair);
    await compare(
      "paired: exact round trips from both logs, against ITGDec on the sender log alone",
      {
        itgdec: { label: "ITGDec SENDER 2>/dev/null", argv: (big) => ["ITGDec", pair(big)[0]!] },
        testbed: {
          label: "node --import tsx/esm cli/main.ts decode SENDER --receiver-log RECEIVER --json",
          argv: (big) => viaMain(pair(big)[0]!, "--receiver-log", pair(big)[1]!, "--json"),
        },
        verb: { label: "the decode verb alone, paired", argv: (big) => verbOnly(pair(big)[0]!, "--receiver-log", pair(big)[1]!, "--json") },
      },
      dir,
      (warm) => {
        const ours = JSON.parse(warm.testbed!.stdout).total;
        const itgMax = /Maximum delay *= *(\S+)/.exec(warm.itgdec!.stdout.slice(warm.itgdec!.stdout.indexOf("TOTAL RESULTS")))?.[1];
        return (
          `  paired: ${ours.packets} records, ${ours.excludedRecords} without a partner; exact max ${ours.delayMaxS.toFixed(6)} s, ` +
          `std ${ours.delayStdS.toFixed(6)} s; ITGDec's max of the same sender log ${itgMax} s`
        );
      },
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--decode-verb-only") {
  const { decodeCommand } = await import("../cli/decode.js");
  await (await decodeCommand()).parseAsync(process.argv.slice(3), { from: "user" });
} else {
  await main();
}
