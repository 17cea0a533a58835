// Shapes shared by the measurement pipeline: what a decoded log says, what one run is,
// and what a backend (the cloud lab or the local lab) must do for the campaign runner.
import type { Dataplane, Scenario } from "../scenario/schema.js";
import type { Family } from "../scenario/cidr.js";

/** ITGDec's summary fields of one flow (or of all flows), in ITGDec's units, plus delay percentiles. */
export interface FlowSummary {
  readonly packets: number;
  readonly bytes: number;
  /** Last receive time minus first receive time, seconds. */
  readonly durationS: number;
  readonly delayMinS: number;
  readonly delayMaxS: number;
  readonly delayMeanS: number;
  /** Population standard deviation, as ITGDec prints it. */
  readonly delayStdS: number;
  /** Mean absolute difference of consecutive delays. */
  readonly jitterS: number;
  readonly bitrateKbps: number;
  readonly packetRate: number;
  /** Packets missing by sequence number. */
  readonly dropped: number;
  readonly p50S: number;
  readonly p90S: number;
  readonly p99S: number;
  readonly p999S: number;
}

/** The scenario's D-ITG traffic profiles (see scenario `traffic`). */
export type Profile = "throughput" | "latency";

/**
 * Which profile a run uses: a D-ITG profile, or "setup", the local lab's connection-setup probe (many
 * new TCP connections, one D-ITG-format record each; lab/connection-setup.ts).
 */
export type RunProfile = Profile | "setup";

/** One planned repetition; its id is derived from these fields alone, so a resumed campaign finds it again. */
export interface RunKey {
  readonly dataplane: Dataplane;
  readonly family: Family;
  readonly profile: RunProfile;
  readonly services: number;
  /** 0-based repetition index within its step. */
  readonly repetition: number;
}

/** A traffic profile (protocol, meter, payload size, packet rate); every profile has this shape. */
export type TrafficProfile = Scenario["traffic"]["latency"];

/**
 * The traffic of each profile a campaign runs: the scenario's D-ITG profiles, plus "setup" where a
 * backend offers it. The campaign runner checks that every planned profile has one.
 */
export type CampaignTraffic = Scenario["traffic"] & { readonly [profile: string]: TrafficProfile };

/** What a backend hands back after one flow: where the log is and what the sender printed. */
export interface FlowOutcome {
  /**
   * Where the binary D-ITG log to decode is (receiver log for one-way, sender log for rttm), in the
   * backend's terms: a local path for local backends, a path on a remote host for the cloud.
   * collectLog() turns it into a local file.
   */
  readonly logPath: string;
  readonly senderOutput: string;
  readonly startedAt: Date;
  readonly endedAt: Date;
}

/**
 * A place where the experiment runs. The campaign runner calls prepare() for each
 * (dataplane, Service count) step, then per repetition receiverAlive() (and restartReceiver() when
 * it is not), runFlow(), and collectLog() off the flow's critical path; teardown() at the end.
 */
export interface Backend {
  readonly name: string;
  /** Bring the dataplane to the given mode and Service count; returns when rules or maps are in place. */
  prepare(step: { dataplane: Dataplane; services: number }): Promise<void>;
  /**
   * Run one D-ITG flow for the key and return its log. `logName` is unique per run and attempt
   * (D-ITG truncates an existing log of the same name). Throws on transport failure.
   */
  runFlow(key: RunKey, flow: { logName: string; durationS: number; traffic: TrafficProfile }): Promise<FlowOutcome>;
  /**
   * Makes the flow's log a local file and returns its path; the caller owns (and deletes) that
   * file. Called while the next flow runs, so it must not disturb the measured path.
   */
  collectLog(outcome: FlowOutcome): Promise<string>;
  /** True when the receiver answers; restartReceiver() brings it back. */
  receiverAlive(): Promise<boolean>;
  restartReceiver(): Promise<void>;
  teardown(): Promise<void>;
}

/** One finished (or finally failed) repetition as the store keeps it. */
export interface RunResult extends RunKey {
  /** Deterministic id derived from the campaign and the RunKey. */
  readonly runId: string;
  readonly status: "ok" | "failed";
  /** Why a failed run failed (sender error text, too few records, ...). */
  readonly failure?: string;
  /** Decoded summary of the run's log; absent for failed runs. */
  readonly summary?: FlowSummary;
  /** Achieved send rate over the flow, Kbit/s (throughput runs: what the link carried). */
  readonly achievedKbps?: number;
  /** HDR histogram of per-packet delays (hdr-histogram-js, compressed base64; unit documented in measure/ditg-log.ts). */
  readonly histogram?: string;
  readonly retries: number;
  readonly startedAt: string;
  readonly endedAt: string;
}
