// The programming profile's probe (programming-probe.c), for any backend: how to build and start it,
// and what its lines say. The probe runs where the clients are (the lab's client namespace, the
// cloud's client VM); the backend spawns it there and hands its output to a ProbeSession.
import { fileURLToPath } from "node:url";
import type { Readable, Writable } from "node:stream";
import { createInterface } from "node:readline";

export const PROBE_SOURCE = fileURLToPath(new URL("./programming-probe.c", import.meta.url));
/** What the built probe is called where a stack builds it (infra/setup-probe.ts). */
export const PROGRAMMING_PROBE_BINARY = "programming-probe";

/** Source ports the probe cycles through: below Linux's ephemeral range top, above the privileged ports. */
export const PROBE_SOURCE_PORTS = { first: 1024, last: 60999 } as const;
/** An attempt without an answer after this long is closed before the kernel's first SYN retransmission (1 s). */
export const PROBE_ATTEMPT_TIMEOUT_MS = 200;

/** Pure: the compiler command that builds the probe (clang, which the lab needs for its eBPF programs anyway). */
export function probeCompileCommand(output: string): string[] {
  return ["clang", "-O2", "-Wall", "-o", output, PROBE_SOURCE];
}

export interface ProbeTarget {
  readonly address: string;
  readonly port: number;
  /** The outcome after the change: "answered" for an addition, "refused" for a removal. */
  readonly expect: "answered" | "refused";
}

/** Pure: the probe's arguments (after the binary's path). */
export function probeArgs(
  target: ProbeTarget,
  options: { rate: number; startPort: number; confirmMs: number; maxS: number; ports?: { first: number; last: number } },
): string[] {
  const ports = options.ports ?? PROBE_SOURCE_PORTS;
  if (!Number.isInteger(options.rate) || options.rate < 1) throw new Error(`probesPerSecond: ${options.rate} is not accepted; accepted: a whole number, at least 1`);
  return [
    "probe",
    target.address,
    String(target.port),
    String(options.rate),
    String(ports.first),
    String(ports.last),
    String(options.startPort),
    target.expect,
    String(PROBE_ATTEMPT_TIMEOUT_MS),
    String(options.confirmMs),
    String(Math.ceil(options.maxS)),
  ];
}

/** Pure: the listener's arguments: accepts and closes connections on [::]:port. */
export function listenerArgs(port: number): string[] {
  return ["listen", String(port)];
}

/** What a probe saw, on CLOCK_MONOTONIC nanoseconds (process.hrtime.bigint() on Linux reads the same clock). */
export interface ProbeResult {
  /** The first attempt with the expected outcome: when it was sent and answered. */
  readonly changed?: { readonly sentNs: bigint; readonly seenNs: bigint };
  readonly sent: number;
  readonly flaps: number;
  readonly timeouts: number;
  /** Where the next probe continues in the source-port cycle. */
  readonly nextPort: number;
}

/** Pure: one line of the probe's output. */
export type ProbeLine =
  | { readonly kind: "ready"; readonly sent: number }
  | { readonly kind: "changed"; readonly sentNs: bigint; readonly seenNs: bigint }
  | { readonly kind: "done"; readonly sent: number; readonly flaps: number; readonly timeouts: number; readonly nextPort: number }
  | { readonly kind: "gave-up"; readonly sent: number; readonly timeouts: number; readonly nextPort: number }
  | { readonly kind: "mark"; readonly ns: bigint };

export function parseProbeLine(line: string): ProbeLine {
  const w = line.trim().split(" ");
  const n = (i: number) => {
    const x = Number(w[i]);
    if (!Number.isInteger(x)) throw new Error(`programming probe: ${JSON.stringify(line)} is not one of its lines`);
    return x;
  };
  if (w[0] === "ready" && w.length === 2) return { kind: "ready", sent: n(1) };
  if (w[0] === "changed" && w.length === 3 && /^\d+$/.test(w[1]!) && /^\d+$/.test(w[2]!)) return { kind: "changed", sentNs: BigInt(w[1]!), seenNs: BigInt(w[2]!) };
  if (w[0] === "done" && w.length === 5) return { kind: "done", sent: n(1), flaps: n(2), timeouts: n(3), nextPort: n(4) };
  if (w[0] === "gave-up" && w.length === 4) return { kind: "gave-up", sent: n(1), timeouts: n(2), nextPort: n(3) };
  if (w[0] === "mark" && w.length === 2 && /^\d+$/.test(w[1]!)) return { kind: "mark", ns: BigInt(w[1]!) };
  throw new Error(`programming probe: ${JSON.stringify(line)} is not one of its lines`);
}

/**
 * A running probe, read line by line: `ready` resolves once the state before the change has held,
 * `result` when the probe is done (or gave up, without `changed`). Rejects when the probe exits
 * otherwise, with what it printed on stderr.
 */
export class ProbeSession {
  readonly ready: Promise<void>;
  readonly result: Promise<ProbeResult>;
  private readonly marks: ((ns: bigint) => void)[] = [];
  private readonly stdin: Writable | null | undefined;

  /**
   * The probe's clock now, asked over its stdin: where a change starts when the backend's own clock
   * is on another host (the cloud's client VM). Late by the time the line takes to reach the probe.
   */
  mark(): Promise<bigint> {
    if (!this.stdin) return Promise.reject(new Error("programming probe: no stdin to mark the start of a change"));
    const at = new Promise<bigint>((resolve) => this.marks.push(resolve));
    this.stdin.write("mark\n");
    return at;
  }

  constructor(process: { stdout: Readable; stderr?: Readable | null; stdin?: Writable | null; once(event: "exit", f: (code: number | null) => void): unknown }) {
    this.stdin = process.stdin;
    let stderr = "";
    process.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    const lines = createInterface({ input: process.stdout });
    let changed: { sentNs: bigint; seenNs: bigint } | undefined;
    let onReady: () => void;
    let failReady: (e: Error) => void;
    this.ready = new Promise((resolve, reject) => {
      onReady = resolve;
      failReady = reject;
    });
    this.result = new Promise((resolve, reject) => {
      const fail = (e: Error) => {
        failReady(e);
        reject(e);
      };
      lines.on("line", (line) => {
        try {
          const l = parseProbeLine(line);
          if (l.kind === "ready") onReady();
          else if (l.kind === "changed") changed = { sentNs: l.sentNs, seenNs: l.seenNs };
          else if (l.kind === "mark") this.marks.shift()?.(l.ns);
          else if (l.kind === "done") resolve({ ...(changed ? { changed } : {}), sent: l.sent, flaps: l.flaps, timeouts: l.timeouts, nextPort: l.nextPort });
          else {
            failReady(new Error(`programming probe gave up before the state before the change held (${l.sent} attempts, ${l.timeouts} without answer)`));
            resolve({ sent: l.sent, flaps: 0, timeouts: l.timeouts, nextPort: l.nextPort });
          }
        } catch (e) {
          fail(e as Error);
        }
      });
      // Judged once the probe has exited and its output is read to the end: "exit" can come before the
      // last lines (its "done") are read, and a probe that has finished is not one that stopped early.
      let exitCode: number | null | undefined;
      let drained = false;
      const ended = () => {
        if (exitCode !== undefined && drained) fail(new Error(`programming probe exited (${exitCode}) before it was done${stderr.trim() ? `: ${stderr.trim()}` : ""}`));
      };
      process.once("exit", (code) => {
        exitCode = code;
        ended();
      });
      lines.once("close", () => {
        drained = true;
        ended();
      });
    });
    // Whoever awaits only one of them still sees the other's failure there.
    this.ready.catch(() => undefined);
    this.result.catch(() => undefined);
  }
}
