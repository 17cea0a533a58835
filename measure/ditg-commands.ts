// D-ITG command lines of one flow and the verdict on what the flow logged.
// Pure functions: backends run the argv lists (directly, over SSH or in a pod) and hand the outcome back.
//
// Policy against ITGRecv's crash when flows with and without `-x` share one receiver (notes B2): every
// sender command built here names a receiver log with `-x`, and the receiver command never takes `-l`
// (which would override `-x`, B11). There is no way to build a flow without `-x`, so none can be mixed.
import type { Family } from "../scenario/cidr.js";
import { isAddress } from "../scenario/cidr.js";
import type { DecodedLog } from "./ditg-log.js";
import type { TrafficProfile } from "./types.js";

/** Records buffered before each log write, on both ends (D-ITG's default of 50 costs a syscall per 50 packets). */
export const LOG_BUFFER_RECORDS = 1000;

/**
 * Smallest share of the expected records a run must log to count. The check catches failed, cut or stalled flows;
 * the rate a run achieved is stored beside it for quality filtering. Paced flows: D-ITG's timer loop runs 1-2%
 * short even with -poll on a busy 2-vCPU host (785 of 800 packets at 400 pkt/s over 2 s, no loss). Link-limited
 * flows: the expectation divides the cap by the payload and ignores TCP/IP header bytes (about 5% with 1448-byte
 * segments) and slow start.
 */
export const MIN_RECORD_SHARE = { paced: 0.95, linkLimited: 0.9 } as const;

/**
 * How much of a flow its records must span for a shortfall to be the sender's: this share of the flow,
 * or all of it but `stallS` seconds (a busy host's longest wait for a core, seen at 0.25 s with two busy
 * loops on 2 cores), whichever asks less. D-ITG skips the send slots that fall due while ITGSend waits,
 * so a busy host thins a flow out over its whole length; records that stop early are a stalled flow or
 * a path that stopped passing packets.
 */
export const MIN_RECORD_SPAN = { share: 0.8, stallS: 0.5 } as const;

/** Where the sender sends: the receiver's address as the sender reaches it (NodeIP, VIP, loopback) and its ports. */
export interface FlowTarget {
  /** IPv4 or IPv6 literal; also the signaling destination. */
  readonly address: string;
  /** ITGRecv's signaling port as the sender reaches it (`-Sdp`, e.g. the signaling NodePort). */
  readonly signalingPort: number;
  /** Data port (`-rp`): the pod port, Service port and NodePort are this one number. */
  readonly dataPort: number;
}

/** The two logs of one flow: D-ITG truncates an existing file of the same name, so both are unique per run. */
export interface FlowLogs {
  /** Written by ITGSend (`-l`) on the sender's host; holds the round trips of an rttm flow. */
  readonly senderLog: string;
  /** Written by ITGRecv (`-x`) on the receiver's host; holds the one-way records. */
  readonly receiverLog: string;
}

export interface FlowExpectation {
  /** Records a complete flow logs: packet rate times duration, or what the link cap lets through if lower. */
  readonly records: number;
  /** Fewer than records × minShare fails the run. */
  readonly minShare: number;
  /** The link cap in Mbit/s when it, not the packet rate, sets `records`. */
  readonly linkMbps?: number;
  /** The flow's duration, s: with it, a shortfall is blamed on the sender only if the records span the flow. */
  readonly durationS?: number;
}

export interface SenderCommand {
  /** ["ITGSend", ...options]: exec it directly, or quote it with shellCommand(). */
  readonly argv: string[];
  readonly logs: FlowLogs;
  /**
   * Which log holds the measurement: the sender's for rttm (one clock; its round trips are exact only paired with
   * the receiver's log, whose send stamps D-ITG B15 does not touch), the receiver's for owdm.
   */
  readonly measuredLog: "sender" | "receiver";
  readonly expected: FlowExpectation;
}

const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function fail(key: string, value: unknown, accepted: string): never {
  throw new Error(`${key}: ${JSON.stringify(value)} is not accepted; accepted: ${accepted}`);
}

function checkPort(key: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) fail(key, port, "an integer port from 1 to 65535");
}

function checkDir(key: string, dir: string): void {
  // No whitespace or quotes: the names travel through ITGSend's signaling and, for remote hosts, through a shell.
  if (typeof dir !== "string" || !/^\/[A-Za-z0-9._/-]*$/.test(dir)) {
    fail(key, dir, "an absolute directory made of letters, digits, '.', '_', '-' and '/'");
  }
}

/** The logs of run `runId`: `<senderDir>/<runId>.slog` and `<receiverDir>/<runId>.rlog`. */
export function flowLogs(runId: string, dirs: { senderDir: string; receiverDir: string }): FlowLogs {
  if (typeof runId !== "string" || !RUN_ID.test(runId)) {
    fail("runId", runId, "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit");
  }
  checkDir("senderDir", dirs.senderDir);
  checkDir("receiverDir", dirs.receiverDir);
  const join = (dir: string, name: string) => `${dir.replace(/\/+$/, "")}/${name}`;
  return { senderLog: join(dirs.senderDir, `${runId}.slog`), receiverLog: join(dirs.receiverDir, `${runId}.rlog`) };
}

/** Records a complete flow of this profile logs, and the share a run must reach. */
export function expectedRecords(traffic: TrafficProfile, durationS: number, linkMbps: number): FlowExpectation {
  const offered = traffic.packetsPerSecond;
  const linkCap = linkMbps > 0 ? (linkMbps * 1e6) / (8 * traffic.payloadBytes) : Infinity;
  const linkLimited = linkCap < offered;
  return {
    records: Math.floor(Math.min(offered, linkCap) * durationS),
    minShare: linkLimited ? MIN_RECORD_SHARE.linkLimited : MIN_RECORD_SHARE.paced,
    ...(linkLimited ? { linkMbps } : {}),
    durationS,
  };
}

/**
 * ITGSend's arguments for one flow of a traffic profile. Throughput and latency profiles differ only in what the
 * scenario says (protocol, meter, payload, rate); every flow gets -p 0 (B12: the help text's default is wrong),
 * -poll (accurate pacing at kpps, B10), -q, a sender log and a receiver log, and TCP flows get -D (no Nagle).
 */
export function senderCommand(flow: {
  traffic: TrafficProfile;
  durationS: number;
  target: FlowTarget;
  logs: FlowLogs;
  /** The scenario's link cap in Mbit/s (0: none); only sets the expectation. */
  linkMbps: number;
}): SenderCommand {
  const { traffic, durationS, target, logs } = flow;
  if (!isAddress(target.address)) fail("target.address", target.address, "an IPv4 or IPv6 address literal, e.g. 198.18.1.10 or 2001:2:0:20::10");
  checkPort("target.signalingPort", target.signalingPort);
  checkPort("target.dataPort", target.dataPort);
  if (!Number.isFinite(durationS) || durationS < 1 || durationS > 3600) fail("durationS", durationS, "seconds from 1 to 3600");
  if (!Number.isInteger(traffic.packetsPerSecond) || traffic.packetsPerSecond < 1) {
    fail("traffic.packetsPerSecond", traffic.packetsPerSecond, "an integer >= 1");
  }
  if (!Number.isInteger(traffic.payloadBytes) || traffic.payloadBytes < 16 || traffic.payloadBytes > 64000) {
    fail("traffic.payloadBytes", traffic.payloadBytes, "an integer from 16 to 64000 (D-ITG's MAX_PAYLOAD_SIZE)");
  }
  const argv = [
    "ITGSend",
    "-a", target.address,
    "-Sdp", String(target.signalingPort),
    "-rp", String(target.dataPort),
    "-T", traffic.protocol,
    ...(traffic.protocol === "TCP" ? ["-D"] : []),
    "-m", traffic.meter,
    "-p", "0",
    "-C", String(traffic.packetsPerSecond),
    "-c", String(traffic.payloadBytes),
    "-t", String(Math.round(durationS * 1000)),
    "-poll",
    "-q", String(LOG_BUFFER_RECORDS),
    "-l", logs.senderLog,
    "-x", logs.receiverLog,
  ];
  return {
    argv,
    logs,
    measuredLog: traffic.meter === "rttm" ? "sender" : "receiver",
    expected: expectedRecords(traffic, durationS, flow.linkMbps),
  };
}

/**
 * The receiver's command: ITGRecv bound to the wildcard address of the family (behind a NodePort the destination
 * address differs from the pod's, B3), with SIGPIPE ignored (an ignored disposition survives exec, B4).
 */
export function receiverCommand(receiver: { signalingPort: number; family: Family }): string[] {
  checkPort("signalingPort", receiver.signalingPort);
  if (receiver.family !== "ipv4" && receiver.family !== "ipv6") fail("family", receiver.family, '"ipv4" or "ipv6"');
  const bind = receiver.family === "ipv4" ? "0.0.0.0" : "::";
  return ["sh", "-c", `trap '' PIPE; exec ITGRecv -Sp ${receiver.signalingPort} -a ${bind} -q ${LOG_BUFFER_RECORDS}`];
}

/** One POSIX shell word per argument, for running an argv list over SSH. */
export function shellCommand(argv: readonly string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_./:=@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
}

/**
 * ITGSend's lines when the receiver's side of a session failed: it could not bind the flow's data
 * socket, or it dropped the session. Observed after such a bind error (D-ITG 2.8.1 on a rehearsed
 * worker): the ITGRecv process lived on, and every later TCP session to it hung with a thread of it
 * blocked on a lock, until it restarted.
 */
const RECEIVER_SESSION_ERROR = /Error on bind to receiver side|Error at Receiver side|Receiver has shut down the connection/i;

/** The first line of ITGSend's output that says the receiver's side of the session failed, if any. */
export function receiverSessionError(senderOutput: string): string | undefined {
  return senderOutput.split("\n").find((l) => RECEIVER_SESSION_ERROR.test(l))?.trim();
}

export type FlowVerdict = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/**
 * Whether a flow succeeded, from what it printed and logged; ITGSend's exit code says nothing (it exits 0 after a
 * receiver-side bind error, B3). `decoded` is the measured log (SenderCommand.measuredLog), paired with the
 * receiver's log for a round trip.
 */
export function judgeFlow(senderOutput: string, decoded: DecodedLog, expected: FlowExpectation): FlowVerdict {
  const errorLine = senderOutput.split("\n").find((l) => /error/i.test(l));
  if (errorLine !== undefined) return { ok: false, reason: `ITGSend reported an error: ${errorLine.trim()}` };
  if (!/Finished sending packets of flow ID/.test(senderOutput)) {
    return { ok: false, reason: "ITGSend did not report 'Finished sending packets' (killed or crashed)" };
  }
  const { total } = decoded;
  if (total.errorLines > 0) {
    return { ok: false, reason: `${decoded.file} has ${total.errorLines} records with out-of-range time fields (corrupt log)` };
  }
  if (decoded.flows.length !== 1) {
    return {
      ok: false,
      reason: decoded.flows.length === 0 ? `${decoded.file} holds no records` : `${decoded.file} holds ${decoded.flows.length} flows, expected one (a log name reused?)`,
    };
  }
  const needed = Math.ceil(expected.records * expected.minShare);
  if (total.packets < needed) return { ok: false, reason: shortfallReason(decoded, expected, needed) };
  // Exact round trips need the receiver's send stamp of every echo: a gap means a cut or lost receiver log.
  if (total.delaySource === "paired" && total.excludedRecords > 0) {
    return {
      ok: false,
      reason: `${decoded.file}: ${total.excludedRecords} of ${total.packets} round trips have no partner in the receiver log (cut or not flushed)`,
    };
  }
  return { ok: true };
}

/**
 * Why a flow logged too few records: a sender that fell behind (a busy host) or a flow the path did not
 * carry whole (a broken pipeline). Sequence numbers start at 1 (-p 0), so the records plus the gaps
 * between them are what ITGSend had sent by the last logged packet; what it sent after that shows as
 * records that stop before the flow's end.
 */
function shortfallReason(decoded: DecodedLog, expected: FlowExpectation, needed: number): string {
  const { packets, dropped, durationS } = decoded.total;
  const sent = packets + dropped;
  const count = `${decoded.file} has ${packets} records, expected at least ${needed} (${expected.minShare * 100}% of ${expected.records})`;
  const lost = `${dropped} of ${sent} packets sent were lost on the path`;
  if (sent >= needed) return `${count}: ${lost}`;
  const span = expected.durationS === undefined ? 0 : Math.min(MIN_RECORD_SPAN.share * expected.durationS, expected.durationS - MIN_RECORD_SPAN.stallS);
  if (expected.durationS !== undefined && !(durationS >= span)) {
    return `${count}: they span ${durationS.toFixed(3)} s of the ${expected.durationS} s flow (a stalled flow, or a path that stopped passing packets)`;
  }
  const target = expected.linkMbps === undefined ? `${expected.records} scheduled` : `the ${expected.records} its ${expected.linkMbps} Mbit/s link cap lets through`;
  return `ITGSend could not hold its rate: sent ${sent} of ${target} (a host too busy to keep pace); ${count}, ${dropped > 0 ? lost : "none lost on the path"}`;
}

/** The rate a flow achieved, from its log: what arrived between the first and the last record. */
export function achievedRate(decoded: DecodedLog): { kbps: number; packetsPerSecond: number } {
  return { kbps: decoded.total.bitrateKbps, packetsPerSecond: decoded.total.packetRate };
}
