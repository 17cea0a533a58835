// The connection-setup probe's output, the D-ITG-format log made from it, source ports that never
// repeat between conntrack flushes, and the C probe itself, built with the host's compiler and run
// in a network namespace of its own.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  describeProbeResult,
  parseProbeOutput,
  plannedConnections,
  setupLog,
  setupTraffic,
  SourcePortPool,
} from "../../measure/connection-setup.js";
import { decodeDelayHistogram, decodeLogFile } from "../../measure/ditg-log.js";

const DAY_US = 86_400e6;

describe("probe output and its log", () => {
  // A run at 23:59:59.9995 UTC: the last handshake ends after midnight.
  const t0 = 20_000 * DAY_US - 500;
  const output = [
    `ok 1 1024 ${t0} ${t0 + 180}`,
    `fail 2 1025 ${t0 + 5000} ECONNREFUSED`,
    `ok 3 1027 ${t0 + 10_000} ${t0 + 10_420}`,
    `ok 4 1028 ${t0 + 15_000} ${t0 + 15_250}`,
    "done 4 3 1 1029",
  ].join("\n");

  it("reads connections, failures and where the ports stopped", () => {
    const r = parseProbeOutput(output);
    expect(r.connections.map((c) => [c.seq, c.sourcePort, c.rxUs - c.txUs])).toEqual([[1, 1024, 180], [3, 1027, 420], [4, 1028, 250]]);
    expect(r.failures).toEqual([{ seq: 2, sourcePort: 1025, reason: "ECONNREFUSED" }]);
    expect([r.attempted, r.nextPort]).toEqual([4, 1029]);
    expect(describeProbeResult(r)).toBe("connection setup: 4 connections, 3 established, 1 failed (1 ECONNREFUSED)");
  });

  it("refuses output it does not know, or without the summary of a finished probe", () => {
    expect(() => parseProbeOutput("ok 1 1024 5\ndone 1 1 0 1025")).toThrow(/unknown line: "ok 1 1024 5"/);
    expect(() => parseProbeOutput("ok 1 1024 5 9")).toThrow(/without its summary line/);
  });

  it("becomes one D-ITG flow whose delays are the handshakes and whose losses are the failed connections", async () => {
    const dir = mkdtempSync(join(tmpdir(), "setup-log-"));
    try {
      const file = join(dir, "run.slog");
      writeFileSync(file, setupLog(parseProbeOutput(output), { source: "2001:2:0:10::2", destination: "2001:2:0:20::2", destinationPort: 31000 }));
      const decoded = await decodeLogFile(file);
      expect(decoded.flows).toHaveLength(1);
      expect(decoded.flows[0]).toMatchObject({ srcAddress: "2001:2:0:10::2", srcPort: 0, destAddress: "2001:2:0:20::2", destPort: 31000 });
      expect(decoded.total.packets).toBe(3);
      expect(decoded.total.dropped).toBe(1);
      expect(decoded.total.delayMinS).toBeCloseTo(180e-6, 9);
      expect(decoded.total.delayMaxS).toBeCloseTo(420e-6, 9);
      expect(decoded.total.delayMeanS).toBeCloseTo(850e-6 / 3, 9);
      expect(decoded.total.p50S).toBeCloseTo(250e-6, 9);
      // Setup logs with different tails merge (as the report merges a cell's runs).
      const long = parseProbeOutput(`ok 1 2000 ${t0} ${t0 + 3_000_000}\ndone 1 1 0 2001`);
      writeFileSync(file, setupLog(long, { source: "198.18.0.2", destination: "198.18.1.2", destinationPort: 31000 }));
      const merged = decodeDelayHistogram(decoded.histogram);
      merged.add(decodeDelayHistogram((await decodeLogFile(file)).histogram));
      expect(merged.totalCount).toBe(4);
      expect(merged.maxValue).toBeGreaterThanOrEqual(2_990_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("source ports", () => {
  it("never hands out a port twice per destination until conntrack is flushed", () => {
    const pool = new SourcePortPool({ first: 1000, last: 1099 });
    const a = pool.take("198.18.1.2", 40);
    expect(a).toEqual({ first: 1000, last: 1041, flushFirst: false });
    pool.used("198.18.1.2", 1040);
    // Another destination is another 5-tuple: its own sequence.
    expect(pool.take("2001:2:0:20::2", 40)).toMatchObject({ first: 1000, flushFirst: false });
    const b = pool.take("198.18.1.2", 40);
    expect(b).toMatchObject({ first: 1040, flushFirst: false });
    pool.used("198.18.1.2", 1081);
    // 40 more do not fit: start over, after a flush.
    expect(pool.take("198.18.1.2", 40)).toEqual({ first: 1000, last: 1041, flushFirst: true });
    pool.reset();
    expect(pool.take("198.18.1.2", 40)).toMatchObject({ first: 1000, flushFirst: false });
  });

  it("refuses a run larger than the range, and a range outside the port numbers", () => {
    expect(() => new SourcePortPool({ first: 1000, last: 1009 }).take("x", 11)).toThrow("a run needs 11 source ports; the range 1000-1009 holds 10");
    expect(() => new SourcePortPool({ first: 0, last: 10 })).toThrow("source port range 0-10 is not accepted");
  });

  it("sizes setup traffic and refuses rates it cannot pace", () => {
    expect(plannedConnections(setupTraffic(200), 2.5)).toBe(500);
    expect(() => setupTraffic(0)).toThrow("connectionsPerSecond: 0 is not accepted; accepted: an integer from 1 to 5000");
  });
});
