// Where the wall time of a campaign goes: named phases, each with the time spent in it and how often
// it ran. The runner times its own phases; a backend may time the parts of its own (the lab: stepping
// aside, installing, checking, flushing conntrack). `testbed lab` prints both at the end.
import { formatDuration } from "./campaign-progress.js";

export interface PhaseTime {
  readonly ms: number;
  readonly count: number;
}

export class PhaseTimes {
  private readonly phases = new Map<string, { ms: number; count: number }>();

  add(phase: string, ms: number): void {
    const p = this.phases.get(phase) ?? { ms: 0, count: 0 };
    p.ms += ms;
    p.count++;
    this.phases.set(phase, p);
  }

  /** Runs the call and adds the time it took to the phase, whether it returns or throws. */
  async time<T>(phase: string, call: () => T | Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await call();
    } finally {
      this.add(phase, performance.now() - start);
    }
  }

  /** Time in the phase so far, ms (0 if it never ran). */
  ms(phase: string): number {
    return this.phases.get(phase)?.ms ?? 0;
  }

  count(phase: string): number {
    return this.phases.get(phase)?.count ?? 0;
  }

  /** Every phase that ran, in the order it first ran. */
  entries(): [string, PhaseTime][] {
    return [...this.phases].map(([name, p]) => [name, { ...p }]);
  }
}

/** One line per phase: "  install  1m12s in 8 (9.0 s each), 8.1 % of the wall". */
export function describePhases(phases: readonly [string, PhaseTime][], wallMs: number): string[] {
  const width = Math.max(0, ...phases.map(([name]) => name.length));
  return phases.map(([name, p]) => {
    const each = p.count > 1 ? ` in ${p.count} (${(p.ms / p.count / 1000).toFixed(p.ms / p.count < 10_000 ? 2 : 0)} s each)` : "";
    return `  ${name.padEnd(width)}  ${formatDuration(p.ms / 1000).padStart(6)}${each}, ${((100 * p.ms) / wallMs).toFixed(1)} % of the wall`;
  });
}

/**
 * Where a campaign's wall time went, in lines: the runner's phases, what is left between them, the
 * flows against their planned length, and the backend's own phases of preparing steps.
 */
export function describeTimings(
  t: { readonly wallMs: number; readonly plannedFlowMs: number; readonly phases: readonly [string, PhaseTime][] },
  backendPhases: readonly [string, PhaseTime][] = [],
): string[] {
  // decodeStage overlaps the flows: not part of the sum.
  const serial = t.phases.filter(([name]) => name !== "decodeStage");
  const accounted = serial.reduce((s, [, p]) => s + p.ms, 0);
  const flow = t.phases.find(([name]) => name === "flow")?.[1];
  const lines = [
    `where the time went: wall ${formatDuration(t.wallMs / 1000)}; the flows' planned length ${formatDuration(t.plannedFlowMs / 1000)} (${((100 * t.plannedFlowMs) / t.wallMs).toFixed(1)} % of the wall)`,
    ...describePhases([...serial, ["other", { ms: Math.max(0, t.wallMs - accounted), count: 1 }]], t.wallMs),
  ];
  if (flow) lines.push(`  flows beyond their planned length (start, signaling, drain): ${formatDuration((flow.ms - t.plannedFlowMs) / 1000)}, ${((flow.ms - t.plannedFlowMs) / flow.count).toFixed(0)} ms per flow`);
  const decode = t.phases.find(([name]) => name === "decodeStage")?.[1];
  if (decode) lines.push(`  decoding, beside the flows: ${formatDuration(decode.ms / 1000)} in ${decode.count}`);
  if (backendPhases.length > 0) lines.push("preparing steps, in detail:", ...describePhases(backendPhases, t.wallMs));
  return lines;
}
