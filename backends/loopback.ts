// A backend on this host's loopback: real ITGRecv and ITGSend processes, no dataplane.
import { spawn, type ChildProcess } from "node:child_process";
import { createSocket } from "node:dgram";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Family } from "../scenario/cidr.js";
import type { Dataplane } from "../scenario/schema.js";
import { flowLogs, receiverCommand, senderCommand, type FlowTarget } from "../measure/ditg-commands.js";
import { awaitSender, LocalFlowLogs } from "./ditg-sender.js";
import type { Backend, CollectedLogs, FlowOutcome, RunKey, RunProfile, TrafficProfile } from "../measure/types.js";

const LOOPBACK: Record<Family, string> = { ipv4: "127.0.0.1", ipv6: "::1" };
/** How much of a receiver's stderr to keep for error messages. */
const OUTPUT_TAIL_CHARS = 2000;

/** One supervised ITGRecv process serving one address family. */
interface Receiver {
  readonly family: Family;
  readonly target: FlowTarget;
  child: ChildProcess | undefined;
  output: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * TCP ports in LISTEN state on this host (Linux /proc), or in the network namespace of a process
 * (`/proc/<pid>/net`); from both families' tables, or the ones named (each read walks every socket of
 * the host, a few milliseconds on a busy one).
 */
export function listeningTcpPorts(netDir = "/proc/net", tables: readonly ("tcp" | "tcp6")[] = ["tcp", "tcp6"]): Set<number> {
  const ports = new Set<number>();
  for (const file of tables.map((t) => `${netDir}/${t}`)) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === "0A") ports.add(parseInt(cols[1]!.split(":").pop()!, 16));
    }
  }
  return ports;
}

/** A port free for TCP and UDP on both families right now (the OS picks it; a later race is possible but unlikely). */
async function freePort(): Promise<number> {
  for (let tries = 0; tries < 20; tries++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once("error", reject);
      srv.listen(0, "::", () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => resolve(p));
      });
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const sock = createSocket({ type: "udp6", ipv6Only: false });
      sock.once("error", () => resolve(false));
      sock.bind(port, "::", () => sock.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
  throw new Error("found no port free for both TCP and UDP on loopback");
}

/**
 * The loopback backend: a dry run of the whole measurement pipeline on this host.
 *
 * There is no Service dataplane on loopback: prepare() only records the step it was asked for,
 * and every run measures the same kernel path, whatever its dataplane and Service count. What is
 * real: ITGRecv (one supervised process per address family, bound to the family's wildcard
 * address on free ports), ITGSend per flow to 127.0.0.1 or ::1 with the scenario's traffic
 * profile, the logs they write, and everything downstream (decoding, judging, the store).
 */
/** D-ITG's profiles only: no dataplane, so nothing for connection setup to measure. */
export const LOOPBACK_PROFILES: readonly RunProfile[] = ["throughput", "latency"];

export class LoopbackBackend implements Backend {
  readonly name = "loopback";
  readonly profiles = LOOPBACK_PROFILES;
  /** Sender and receiver are processes of this host. */
  readonly sharedClock = true;
  /** Steps prepare() was asked for, in order. */
  readonly steps: { dataplane: Dataplane; services: number }[] = [];
  private readonly receivers: Receiver[];
  private readonly logs = new LocalFlowLogs();

  private constructor(
    /** Directory of the flows' logs; removed by teardown(). */
    readonly workDir: string,
    receivers: Receiver[],
  ) {
    this.receivers = receivers;
  }

  /**
   * Picks free ports, starts one receiver per family and waits until they listen. `workDir` (default:
   * a new temporary directory) holds the flows' logs; it is emptied first and removed by teardown(),
   * so a campaign killed before its teardown leaves it for the next start to clear.
   */
  static async start(opts: { families?: readonly Family[]; workDir?: string } = {}): Promise<LoopbackBackend> {
    const workDir = opts.workDir ?? mkdtempSync(path.join(tmpdir(), "testbed-loopback-"));
    rmSync(workDir, { recursive: true, force: true });
    mkdirSync(workDir, { recursive: true });
    const receivers: Receiver[] = [];
    for (const family of opts.families ?? (["ipv4", "ipv6"] as const)) {
      const target = { address: LOOPBACK[family], signalingPort: await freePort(), dataPort: await freePort() };
      receivers.push({ family, target, child: undefined, output: "" });
    }
    const backend = new LoopbackBackend(path.resolve(workDir), receivers);
    try {
      for (const r of receivers) await backend.startReceiver(r);
    } catch (err) {
      await backend.teardown();
      throw err;
    }
    return backend;
  }

  /** Process ids of the running receivers, by family. */
  receiverPids(): Partial<Record<Family, number>> {
    return Object.fromEntries(this.receivers.filter((r) => r.child?.pid).map((r) => [r.family, r.child!.pid!]));
  }

  /** Where each family's flows go (loopback address, signaling and data ports). */
  targets(): Partial<Record<Family, FlowTarget>> {
    return Object.fromEntries(this.receivers.map((r) => [r.family, r.target]));
  }

  private isRunning(r: Receiver): boolean {
    return r.child !== undefined && r.child.exitCode === null && r.child.signalCode === null;
  }

  private async startReceiver(r: Receiver): Promise<void> {
    const [cmd, ...args] = receiverCommand({ signalingPort: r.target.signalingPort, family: r.family });
    // Same process group as the campaign: a signal to the campaign's group also ends its receivers.
    const child = spawn(cmd!, args, { cwd: this.workDir, stdio: ["ignore", "ignore", "pipe"] });
    r.child = child;
    r.output = "";
    child.stderr!.on("data", (d: Buffer) => (r.output = (r.output + d.toString()).slice(-OUTPUT_TAIL_CHARS)));
    const spawnError = new Promise<never>((_, reject) => child.once("error", (e) => reject(new Error(`cannot start ITGRecv: ${e.message}`))));
    // Until its socket is in the table or it exits: no deadline, which a loaded host's slow start-up would lose to.
    const listening = (async () => {
      // Watch /proc rather than connecting: a probe connection that resets kills ITGRecv (notes B1).
      while (!listeningTcpPorts().has(r.target.signalingPort)) {
        if (!this.isRunning(r)) throw new Error(`ITGRecv (${r.family}) exited at start: ${r.output.trim() || "no output"}`);
        await sleep(20);
      }
    })();
    await Promise.race([listening, spawnError]);
  }

  private async stopReceiver(r: Receiver): Promise<void> {
    const child = r.child;
    if (!child || !this.isRunning(r)) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
    await exited;
    clearTimeout(timer);
  }

  /** Nothing to program: every step measures the same path. */
  async prepare(step: { dataplane: Dataplane; services: number }): Promise<undefined> {
    this.steps.push({ ...step });
    return undefined;
  }

  async runFlow(key: RunKey, flow: { logName: string; durationS: number; traffic: TrafficProfile }): Promise<FlowOutcome> {
    const receiver = this.receivers.find((r) => r.family === key.family);
    if (!receiver) throw new Error(`the loopback backend was started without an ${key.family} receiver`);
    const logs = flowLogs(flow.logName, { senderDir: this.workDir, receiverDir: this.workDir });
    const cmd = senderCommand({ traffic: flow.traffic, durationS: flow.durationS, target: receiver.target, logs, linkMbps: 0 });
    const startedAt = new Date();
    const [exe, ...args] = cmd.argv;
    return this.logs.remember(await awaitSender(spawn(exe!, args, { cwd: this.workDir, stdio: ["ignore", "pipe", "pipe"] }), cmd, startedAt));
  }

  collectLog(outcome: FlowOutcome): Promise<CollectedLogs> {
    return this.logs.collect(outcome);
  }

  async receiverAlive(): Promise<boolean> {
    if (!this.receivers.every((r) => this.isRunning(r))) return false;
    const listening = listeningTcpPorts();
    return this.receivers.every((r) => listening.has(r.target.signalingPort));
  }

  /** Restarts every receiver that is not running and listening. */
  async restartReceiver(): Promise<void> {
    const listening = listeningTcpPorts();
    for (const r of this.receivers) {
      if (this.isRunning(r) && listening.has(r.target.signalingPort)) continue;
      await this.stopReceiver(r);
      await this.startReceiver(r);
    }
  }

  async teardown(): Promise<void> {
    for (const r of this.receivers) await this.stopReceiver(r);
    rmSync(this.workDir, { recursive: true, force: true });
  }
}
