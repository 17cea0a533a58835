// Benchmark: `testbed decode --json` against ITGDec (stderr to /dev/null) on one five-million-record D-ITG log,
// whole commands with their start-up, alternating, in the same run; then peak memory on a log ten times smaller.
// Run: npx tsx bench/decode.ts   (Linux, d-itg installed; needs ~1.5 GB in the temp directory, deleted at the end)
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { copyFile, mkdtemp, open, readFile, rm, stat, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { flowLogs, receiverCommand, senderCommand } from "../measure/ditg-commands.js";
import { decodeRecord, encodeRecord, RECORD_BYTES, recordBlock, timeOfDay } from "../measure/ditg-log.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SELF = fileURLToPath(import.meta.url);
const RECORDS = 5_000_000;
const REPETITIONS = 5;
/** Offered rate of the recording flow: about what ITGRecv logs without loss on 2 vCPUs (250 kpps lost 30%). */
const RECORD_RATE = 100_000;

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

/** Records a real UDP flow on loopback with the project's own command lines; returns the receiver log. */
async function recordLog(dir: string): Promise<{ path: string; recorded: number; seconds: number }> {
  const signalingPort = await freePort();
  const [cmd, ...args] = receiverCommand({ signalingPort, family: "ipv4" });
  const receiver = spawn(cmd!, args, { stdio: "ignore" });
  try {
    await waitListening(signalingPort, receiver);
    const seconds = Math.ceil((RECORDS * 1.05) / RECORD_RATE);
    const flow = senderCommand({
      traffic: { protocol: "UDP", meter: "owdm", payloadBytes: 16, packetsPerSecond: RECORD_RATE },
      durationS: seconds,
      target: { address: "127.0.0.1", signalingPort, dataPort: await freePort() },
      logs: flowLogs("bench", { senderDir: dir, receiverDir: dir }),
      linkMbps: 0,
    });
    const sender = spawn(flow.argv[0]!, flow.argv.slice(1), { stdio: "ignore" });
    await new Promise((done) => sender.on("close", done));
    await rm(flow.logs.senderLog, { force: true });
    const recorded = (await stat(flow.logs.receiverLog)).size / RECORD_BYTES;
    return { path: flow.logs.receiverLog, recorded, seconds };
  } finally {
    receiver.kill("SIGKILL");
  }
}

/**
 * Makes `path` exactly `records` long: cuts a longer log; extends a shorter one by replaying its own records with
 * sequence numbers and time stamps moved past the end, so the result still reads as one lossless-as-recorded flow.
 */
async function fitLog(path: string, recorded: number, records: number): Promise<void> {
  if (recorded >= records) {
    await truncate(path, records * RECORD_BYTES);
    return;
  }
  const file = await open(path, "r+");
  try {
    const block = recordBlock(65_536);
    await file.read(block.bytes, 0, RECORD_BYTES, 0);
    const head = decodeRecord(block, 0);
    await file.read(block.bytes, 0, RECORD_BYTES, (recorded - 1) * RECORD_BYTES);
    const tail = decodeRecord(block, 0);
    const micros = (t: { hour: number; minute: number; second: number }) => Math.round((t.hour * 3600 + t.minute * 60 + t.second) * 1e6);
    const periodUs = micros(tail.rx) - micros(head.rx) + 10;
    let written = recorded;
    for (let pass = 1; written < records; pass++) {
      for (let at = 0; at < recorded && written < records; ) {
        const n = Math.min(65_536, recorded - at, records - written);
        await file.read(block.bytes, 0, n * RECORD_BYTES, at * RECORD_BYTES);
        for (let i = 0; i < n; i++) {
          const r = decodeRecord(block, i);
          const shift = pass * periodUs;
          encodeRecord(block, i, { ...r, seqNum: r.seqNum + pass * tail.seqNum, tx: timeOfDay(micros(r.tx) + shift), rx: timeOfDay(micros(r.rx) + shift) });
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

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const f2 = (x: number) => x.toFixed(2);

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "bench-decode-"));
  try {
    const rec = await recordLog(dir);
    const big = rec.path;
    await fitLog(big, rec.recorded, RECORDS);
    const how =
      rec.recorded >= RECORDS
        ? `the first ${RECORDS.toLocaleString("en")} of ${rec.recorded.toLocaleString("en")} records`
        : `${rec.recorded.toLocaleString("en")} records, extended by replaying them with shifted sequence numbers and time stamps`;
    console.log(
      `log: ${RECORDS.toLocaleString("en")} records (${((RECORDS * RECORD_BYTES) / 1e6).toFixed(0)} MB) from real ITGSend/ITGRecv on loopback ` +
        `(UDP, 16-byte payload, ${RECORD_RATE} pkt/s offered for ${rec.seconds} s): ${how}`,
    );

    const small = join(dir, "small.rlog");
    await copyFile(big, small);
    await truncate(small, (RECORDS / 10) * RECORD_BYTES);

    const commands = {
      itgdec: (f: string) => ["ITGDec", f],
      testbed: (f: string) => [process.execPath, "--import", "tsx/esm", "cli/main.ts", "decode", f, "--json"],
      verb: (f: string) => [process.execPath, "--import", "tsx/esm", SELF, "--decode-verb-only", f],
    };
    const labels = {
      itgdec: "ITGDec FILE 2>/dev/null",
      testbed: "node --import tsx/esm cli/main.ts decode FILE --json",
      verb: "the decode verb alone (cli/decode.ts without cli/main.ts's other verbs)",
    };
    type Name = keyof typeof commands;
    const names = Object.keys(commands) as Name[];

    // Warm-up (page cache, tsx's transform cache), then check both tell the same numbers.
    const warm = {} as Record<Name, Timed>;
    for (const n of names) warm[n] = await timed(commands[n](big), dir);
    const ours = JSON.parse(warm.testbed.stdout).total;
    const itgTotal = warm.itgdec.stdout.slice(warm.itgdec.stdout.indexOf("TOTAL RESULTS"));
    const printed = (label: string) => new RegExp(`${label} *= *(\\S+)`).exec(itgTotal)?.[1];
    const agree = [
      ["Total packets", String(ours.packets)],
      ["Bytes received", String(ours.bytes)],
      ["Average delay", ours.delayMeanS.toFixed(6)],
      ["Delay standard deviation", ours.delayStdS.toFixed(6)],
      ["Average bitrate", ours.bitrateKbps.toFixed(6)],
    ].every(([label, value]) => printed(label!) === value);
    console.log(`results agree with ITGDec's TOTAL: ${agree ? "yes" : "NO"} (${ours.packets} packets, mean delay ${ours.delayMeanS.toFixed(6)} s, p99.9 ${ours.p999S} s)`);

    const runs = Object.fromEntries(names.map((n) => [n, [] as Timed[]])) as Record<Name, Timed[]>;
    for (let rep = 0; rep < REPETITIONS; rep++) {
      // Alternate who goes first so that neither always runs on a warmer or busier machine.
      const order = rep % 2 === 0 ? names : [...names].reverse();
      for (const n of order) runs[n].push(await timed(commands[n](big), dir));
    }
    const wall = (n: Name) => median(runs[n].map((r) => r.wallS));
    for (const n of names) {
      const w = runs[n].map((r) => r.wallS);
      console.log(
        `${labels[n]}: wall median ${f2(wall(n))} s (min ${f2(Math.min(...w))}, max ${f2(Math.max(...w))}, ${REPETITIONS} runs), ` +
          `peak RSS ${Math.max(...runs[n].map((r) => r.maxRssMB)).toFixed(0)} MB`,
      );
    }
    console.log(`ratio ITGDec / testbed decode (via cli/main.ts): ${f2(wall("itgdec") / wall("testbed"))}x faster`);
    console.log(`ratio ITGDec / decode verb alone: ${f2(wall("itgdec") / wall("verb"))}x faster`);

    const smallRss = {} as Record<Name, number>;
    for (const n of names) smallRss[n] = (await timed(commands[n](small), dir)).maxRssMB;
    console.log(
      `peak RSS on a 10x smaller log (${(RECORDS / 10).toLocaleString("en")} records) vs the full log: ` +
        names.map((n) => `${n} ${smallRss[n].toFixed(0)} MB vs ${Math.max(...runs[n].map((r) => r.maxRssMB)).toFixed(0)} MB`).join("; "),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--decode-verb-only") {
  const { decodeCommand } = await import("../cli/decode.js");
  await (await decodeCommand()).parseAsync([process.argv[3]!, "--json"], { from: "user" });
} else {
  await main();
}
