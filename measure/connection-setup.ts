// Connection setup through the NodePort: the metric the paper lacks. What every backend shares: the
// profile, the probe's command lines, its output, the log made from it and the verdict.
//
// kube-proxy's iptables mode walks its nat rules only for the first packet of a connection (every
// KUBE-SERVICES rule, then KUBE-NODEPORTS up to the Service's rule); later packets only hit conntrack.
// Cilium's eBPF path does one hash lookup whatever the Service count. So the per-Service cost shows in
// the time a new connection takes to set up, not in a long flow's throughput.
//
// The probe (connection-setup-probe.c, a small C program built where it runs: the lab's host, the
// cloud's client VM and worker) opens many TCP connections from the client to the receiver's data
// NodePort, one at a time and paced, and times each handshake (connect() to SYN-ACK). Each
// connection is new to every conntrack on the path: its own source port, never reused before
// conntrack is flushed (SourcePortPool). The same program listens in the receiver pod's network
// namespace on the data port, which is free between D-ITG flows (ITGRecv binds it only during one).
//
// The measurements become a D-ITG-format log (one record per connection: tx = connect, rx = SYN-ACK),
// so decoding, the store and the report treat the "setup" profile like a latency profile.
import { fileURLToPath } from "node:url";
import { encodeRecord, recordBlock, timeOfDay, type DecodedLog } from "./ditg-log.js";
import type { FlowVerdict } from "./ditg-commands.js";
import type { Scenario } from "../scenario/schema.js";
import type { CampaignTraffic, TrafficProfile } from "./types.js";

/** The probe's C source; one file, no dependencies beyond libc. */
export const SETUP_PROBE_SOURCE = fileURLToPath(new URL("./connection-setup-probe.c", import.meta.url));
/** What the built probe is called wherever it is built. */
export const SETUP_PROBE_BINARY = "connection-setup-probe";

/** Source ports the probe may use: below Linux's ephemeral range (32768-60999), where ITGSend's own sockets live. */
export const SETUP_SOURCE_PORTS = { first: 1024, last: 32767 } as const;
/** A connection not established within this time counts as failed. */
export const SETUP_CONNECT_TIMEOUT_MS = 1000;
/** Smallest share of the planned connections that must succeed for a run to count (as D-ITG's paced flows). */
export const SETUP_MIN_SHARE = 0.95;

/**
 * The "setup" profile as a traffic profile: TCP handshakes timed on the client's clock (a round trip,
 * as D-ITG's rttm), no payload, `packetsPerSecond` new connections per second.
 */
export function setupTraffic(connectionsPerSecond: number): TrafficProfile {
  if (!Number.isInteger(connectionsPerSecond) || connectionsPerSecond < 1 || connectionsPerSecond > 5000) {
    throw new Error(`connectionsPerSecond: ${connectionsPerSecond} is not accepted; accepted: an integer from 1 to 5000`);
  }
  return { protocol: "TCP", meter: "rttm", payloadBytes: 0, packetsPerSecond: connectionsPerSecond };
}

/** A scenario's traffic as a campaign runs it: its D-ITG profiles, and setup at its connection rate (or the given one). */
export function campaignTraffic(traffic: Scenario["traffic"], setupConnectionsPerSecond = traffic.setup.connectionsPerSecond): CampaignTraffic {
  return { throughput: traffic.throughput, latency: traffic.latency, setup: setupTraffic(setupConnectionsPerSecond) };
}

/** Connections one run of `durationS` seconds opens. */
export function plannedConnections(traffic: TrafficProfile, durationS: number): number {
  return Math.floor(traffic.packetsPerSecond * durationS);
}

// ---------------------------------------------------------------------------------------------
// Source ports: no 5-tuple twice between two conntrack flushes.

/** A block of consecutive source ports, or the need to flush conntrack first. */
export type PortGrant = { readonly first: number; readonly last: number; readonly flushFirst: boolean };

/**
 * Hands out source ports per destination (family) without repeating one until conntrack is flushed:
 * a repeated 5-tuple would hit the conntrack entry of an earlier probe (nf_conntrack or the eBPF
 * CT map) and skip the Service lookup being measured.
 */
export class SourcePortPool {
  private readonly next = new Map<string, number>();

  constructor(readonly range: { readonly first: number; readonly last: number } = SETUP_SOURCE_PORTS) {
    if (!(Number.isInteger(range.first) && Number.isInteger(range.last) && range.first >= 1 && range.last <= 65535 && range.first <= range.last)) {
      throw new Error(`source port range ${range.first}-${range.last} is not accepted; accepted: 1 <= first <= last <= 65535`);
    }
  }

  /**
   * Ports for a run that may use up to `count` of them. When the destination's remaining ports are
   * too few, the grant starts the range over and says conntrack must be flushed first.
   */
  take(destination: string, count: number): PortGrant {
    const size = this.range.last - this.range.first + 1;
    if (!Number.isInteger(count) || count < 1 || count > size) {
      throw new Error(`a run needs ${count} source ports; the range ${this.range.first}-${this.range.last} holds ${size}; accepted: fewer connections per run`);
    }
    const cursor = this.next.get(destination) ?? this.range.first;
    const flushFirst = cursor + count - 1 > this.range.last;
    const first = flushFirst ? this.range.first : cursor;
    return { first, last: Math.min(this.range.last, first + count - 1 + Math.ceil(count * 0.05)), flushFirst };
  }

  /** Marks ports below `nextPort` as used (the probe reports where it stopped). */
  used(destination: string, nextPort: number): void {
    this.next.set(destination, nextPort);
  }

  /** Conntrack was flushed: every port is new again. */
  reset(): void {
    this.next.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// The probe's output and the log made from it.

export interface SetupConnection {
  readonly seq: number;
  readonly sourcePort: number;
  readonly txUs: number;
  readonly rxUs: number;
}

export interface SetupFailure {
  readonly seq: number;
  readonly sourcePort: number;
  readonly reason: string;
}

export interface SetupProbeResult {
  readonly connections: readonly SetupConnection[];
  readonly failures: readonly SetupFailure[];
  readonly attempted: number;
  /** First source port the probe did not use. */
  readonly nextPort: number;
  /** A line the probe printed as an error (e.g. ports exhausted), if any. */
  readonly error?: string;
}

/** Pure: reads the probe's output (see connection-setup-probe.c). Throws on a line it does not know. */
export function parseProbeOutput(text: string): SetupProbeResult {
  const connections: SetupConnection[] = [];
  const failures: SetupFailure[] = [];
  let done: { attempted: number; nextPort: number } | undefined;
  let error: string | undefined;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const f = line.trim().split(" ");
    if (f[0] === "ok" && f.length === 5) {
      connections.push({ seq: Number(f[1]), sourcePort: Number(f[2]), txUs: Number(f[3]), rxUs: Number(f[4]) });
    } else if (f[0] === "fail" && f.length === 5) {
      failures.push({ seq: Number(f[1]), sourcePort: Number(f[2]), reason: f[4]! });
    } else if (f[0] === "done" && f.length === 5) {
      done = { attempted: Number(f[1]), nextPort: Number(f[4]) };
    } else if (f[0] === "error:") {
      error = line.trim();
    } else {
      throw new Error(`connection-setup probe printed an unknown line: ${JSON.stringify(line)}`);
    }
  }
  if (!done) throw new Error("connection-setup probe ended without its summary line (killed or crashed)");
  return { connections, failures, attempted: done.attempted, nextPort: done.nextPort, ...(error ? { error } : {}) };
}

/** What the probe's run says in one line, as a sender's output: the judge and the store read it. */
export function describeProbeResult(r: SetupProbeResult): string {
  const reasons = new Map<string, number>();
  for (const f of r.failures) reasons.set(f.reason, (reasons.get(f.reason) ?? 0) + 1);
  const why = [...reasons].map(([reason, n]) => `${n} ${reason}`).join(", ");
  return [
    `connection setup: ${r.attempted} connections, ${r.connections.length} established, ${r.failures.length} failed${why ? ` (${why})` : ""}`,
    ...(r.error ? [r.error] : []),
  ].join("\n");
}

/**
 * Pure: one D-ITG record per established connection (flow 1, sequence number = connection number,
 * tx = connect(), rx = SYN-ACK), so failed connections show as lost packets. Every connection has
 * its own source port, but D-ITG tools group records into flows by ports: the records carry source
 * port 0 so that a run stays one flow.
 */
export function setupLog(result: SetupProbeResult, ends: { source: string; destination: string; destinationPort: number }): Uint8Array {
  const block = recordBlock(result.connections.length);
  result.connections.forEach((c, i) =>
    encodeRecord(block, i, {
      flowId: 1,
      seqNum: c.seq,
      srcAddress: ends.source,
      srcPort: 0,
      destAddress: ends.destination,
      destPort: ends.destinationPort,
      tx: timeOfDay(c.txUs),
      rx: timeOfDay(c.rxUs),
      size: 0,
    }),
  );
  return block.bytes;
}

/** Whether a setup run counts: the probe finished, and enough connections were set up and logged. */
export function judgeSetup(probeOutput: string, decoded: DecodedLog, planned: number): FlowVerdict {
  const errorLine = probeOutput.split("\n").find((l) => l.startsWith("error"));
  if (errorLine !== undefined) return { ok: false, reason: `the connection-setup probe failed: ${errorLine}` };
  if (decoded.total.errorLines > 0) return { ok: false, reason: `${decoded.file} has ${decoded.total.errorLines} records with out-of-range time fields` };
  if (decoded.flows.length !== 1) return { ok: false, reason: `${decoded.file} holds ${decoded.flows.length} flows, expected one` };
  const needed = Math.ceil(planned * SETUP_MIN_SHARE);
  if (decoded.total.packets < needed) {
    return {
      ok: false,
      reason: `${decoded.total.packets} of ${planned} connections were set up, expected at least ${needed} (${SETUP_MIN_SHARE * 100}%): ${probeOutput.split("\n")[0]}`,
    };
  }
  return { ok: true };
}

// ---------------------------------------------------------------------------------------------
// The probe's command lines.

/** The compiler command that builds the probe: C99 and libc only, so any `cc` does. */
export function setupProbeCompileCommand(output: string, compiler = "cc", source = SETUP_PROBE_SOURCE): string[] {
  return [compiler, "-O2", "-Wall", "-o", output, source];
}

/** The listener's argument vector (run in the receiver's network namespace). */
export function setupListenArgs(binary: string, port: number): string[] {
  return [binary, "listen", String(port)];
}

/** What one setup run asks of the probe. */
export interface SetupProbeRun {
  /** The NodePort address and port the connections go to. */
  readonly address: string;
  readonly port: number;
  readonly traffic: TrafficProfile;
  readonly durationS: number;
  readonly ports: PortGrant;
}

/** The probe's argument vector for one run (run on the client). */
export function setupProbeArgs(binary: string, run: SetupProbeRun): string[] {
  return [
    binary, "probe", run.address, String(run.port), String(run.traffic.packetsPerSecond),
    String(Math.round(run.durationS * 1000)), String(run.ports.first), String(run.ports.last), String(SETUP_CONNECT_TIMEOUT_MS),
  ];
}

