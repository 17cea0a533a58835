// The receiver's start script and probe, run for real: Debian's ITGRecv and ITGSend on the loopback
// of a network namespace this test creates and deletes.
import { testScenario } from "../fixtures/scenario.js";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { settledLog } from "../../backends/ditg-sender.js";
import { receiverStartScript, signalingListenCheck } from "../../workloads/receiver.js";

const isRoot = process.platform === "linux" && process.getuid?.() === 0;
const haveDitg = spawnSync("sh", ["-c", "command -v ITGRecv && command -v ITGSend && command -v ITGDec"]).status === 0;
const reason = !isRoot ? "needs root on Linux (network namespace)" : "needs Debian's d-itg (ITGRecv, ITGSend, ITGDec)";

const s = testScenario();
const NS = `wl-recv-${process.pid}`;

function inNs(args: string[]) {
  return spawnSync("ip", ["netns", "exec", NS, ...args], { encoding: "utf8", timeout: 30_000 });
}

function checkPasses(): boolean {
  return inNs(["sh", "-c", signalingListenCheck(s)]).status === 0;
}

/**
 * Waits until a receiver listens (its check passes), looking every 100 ms, or until it exits: no deadline, which a
 * loaded host's slow start-up would lose to. True when it listens, false when it exited first.
 */
async function listeningOrExited(listens: () => boolean, child: ChildProcess): Promise<boolean> {
  for (;;) {
    if (listens()) return true;
    if (child.exitCode !== null || child.signalCode !== null) return listens();
    await new Promise((r) => setTimeout(r, 100));
  }
}

const exitOf = (child: ChildProcess) =>
  new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once("exit", () => resolve())));

function startReceiver(): ChildProcess {
  // ip netns exec, sh and the first ITGRecv replace each other by exec: the child's pid is the first
  // ITGRecv's; the second runs in the background.
  return spawn("ip", ["netns", "exec", NS, "sh", "-c", receiverStartScript(s)], { stdio: "ignore" });
}

/** The processes in the test's namespace. */
const nsPids = () => spawnSync("ip", ["netns", "pids", NS], { encoding: "utf8" }).stdout.split(/\s+/).filter((p) => /^\d+$/.test(p)).map(Number);

/** The second ITGRecv the start script runs beside the first: the namespace's other ITGRecv. */
function secondReceiver(first: ChildProcess): number | undefined {
  return nsPids().find((p) => p !== first.pid && readFileSync(`/proc/${p}/comm`, "utf8").trim() === "ITGRecv");
}

function totalPackets(log: string): number {
  const out = spawnSync("ITGDec", [log], { encoding: "utf8" }).stdout;
  const all = [...out.matchAll(/Total packets\s+=\s+(\d+)/g)];
  return all.length ? Number(all.at(-1)![1]) : 0;
}

describe.skipIf(!isRoot || !haveDitg)(`D-ITG receiver on loopback (${reason})`, () => {
  let dir = "";
  let receiver: ChildProcess | undefined;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "wl-recv-"));
    expect(spawnSync("ip", ["netns", "add", NS]).status).toBe(0);
    expect(spawnSync("ip", ["-n", NS, "link", "set", "lo", "up"]).status).toBe(0);
  });

  afterAll(() => {
    if (receiver?.exitCode === null) receiver.kill("SIGKILL");
    // Whatever still runs in the namespace (the start script's second ITGRecv) would outlive its name.
    for (const pid of nsPids()) process.kill(pid, "SIGKILL");
    spawnSync("ip", ["netns", "del", NS]);
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves IPv4 and IPv6 flows, TCP and UDP, from each of two `-a ::` ITGRecv with SIGPIPE ignored", async () => {
    receiver = startReceiver();
    expect(await listeningOrExited(checkPasses, receiver)).toBe(true);
    const second = secondReceiver(receiver);
    expect(second).toBeDefined();
    for (const pid of [receiver.pid!, second!]) {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      expect(readFileSync(`/proc/${pid}/comm`, "utf8").trim()).toBe("ITGRecv");
      const ignored = BigInt(`0x${/^SigIgn:\s+([0-9a-f]+)$/m.exec(status)![1]}`);
      expect(ignored & (1n << 12n)).toBe(1n << 12n); // SIGPIPE is signal 13
    }

    const { alternate } = s.receiver;
    const flows = [
      { name: "v4-udp", dst: "127.0.0.1", proto: "UDP", ports: s.receiver },
      { name: "v4-tcp", dst: "127.0.0.1", proto: "TCP", ports: alternate },
      { name: "v6-udp", dst: "::1", proto: "UDP", ports: alternate },
      { name: "v6-tcp", dst: "::1", proto: "TCP", ports: s.receiver },
    ];
    for (const f of flows) {
      const log = join(dir, `${f.name}.rlog`);
      const sent = join(dir, `${f.name}.slog`);
      const r = inNs([
        "ITGSend", "-a", f.dst, "-Sdp", String(f.ports.signalingPort), "-rp", String(f.ports.dataPort),
        "-T", f.proto, "-C", "50", "-c", "64", "-t", "1000", "-l", sent, "-x", log,
      ]);
      // ITGSend exits 0 on some failures: judge by its output and by the receiver's log.
      expect(r.stdout, f.name).toContain("Finished sending");
      expect(r.stdout + r.stderr, f.name).not.toMatch(/Error/);
      expect(existsSync(log), f.name).toBe(true);
      // Every packet the sender logged reached the receiver, however many a busy host got out in a second.
      await settledLog(log);
      expect(totalPackets(sent), f.name).toBeGreaterThan(0);
      expect(totalPackets(log), f.name).toBe(totalPackets(sent));
    }
    expect(receiver.exitCode).toBeNull();
  });

  it("has a probe that never disturbs ITGRecv and fails once either ITGRecv is gone", async () => {
    for (let i = 0; i < 5; i++) expect(checkPasses()).toBe(true);
    expect(receiver!.exitCode).toBeNull();
    // The second one gone: the check fails at once (its socket is gone with it), the first runs on.
    const second = secondReceiver(receiver!)!;
    process.kill(second, "SIGKILL");
    while (nsPids().includes(second)) await new Promise((r) => setImmediate(r));
    expect(checkPasses()).toBe(false);
    expect(receiver!.exitCode).toBeNull();
    const exited = exitOf(receiver!);
    receiver!.kill("SIGKILL");
    await exited;
    expect(checkPasses()).toBe(false);
  });

  it("needs two NodePort numbers: a TCP data flow cannot use the signaling port's number", async () => {
    const port = String(s.receiver.dataPort);
    const shared = spawn("ip", ["netns", "exec", NS, "ITGRecv", "-Sp", port, "-a", "::"], { stdio: "ignore" });
    try {
      const onPort = { signalingPort: s.receiver.dataPort };
      const listening = () => inNs(["sh", "-c", signalingListenCheck({ receiver: { ...s.receiver, ...onPort, alternate: { ...s.receiver.alternate, ...onPort } } })]).status === 0;
      expect(await listeningOrExited(listening, shared)).toBe(true);
      const r = inNs(["ITGSend", "-a", "127.0.0.1", "-Sdp", port, "-rp", port, "-T", "TCP", "-C", "10", "-c", "64", "-t", "500"]);
      expect(r.stdout).toContain("Error on bind to receiver side");
    } finally {
      shared.kill("SIGKILL");
    }
  });

  it("refuses to start when net.ipv6.bindv6only is 1 (IPv4 flows would fail)", () => {
    expect(inNs(["sysctl", "-qw", "net.ipv6.bindv6only=1"]).status).toBe(0);
    try {
      const r = inNs(["sh", "-c", receiverStartScript(s)]);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("net.ipv6.bindv6only is not 0");
      expect(checkPasses()).toBe(false);
    } finally {
      inNs(["sysctl", "-qw", "net.ipv6.bindv6only=0"]);
    }
  });
});
