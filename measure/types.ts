// Shapes shared by the measurement pipeline: what a decoded log says, what one run is,
// and what a backend (the cloud lab or the local lab) must do for the campaign runner.
import type { MetricHistogram } from "./control-plane-metrics.js";
import type { Dataplane, Scenario } from "../scenario/schema.js";
import type { Family } from "../scenario/cidr.js";
import type { DelaySource } from "./ditg-log.js";
import type { HopCapture, RunHops } from "./hops.js";
import { DEFAULT_PATH, type ServicePath } from "../scenario/paths.js";

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
 * Which profile a run uses: a D-ITG profile, "setup", the connection-setup probe (many new TCP
 * connections, one D-ITG-format record each; measure/connection-setup.ts), or "programming":
 * Service changes made through the dataplane's control plane and timed (ProgrammingBackend).
 */
export const RUN_PROFILES = ["throughput", "latency", "setup", "programming"] as const satisfies readonly (Profile | "setup" | "programming")[];
export type RunProfile = (typeof RUN_PROFILES)[number];

/** The changes of the programming profile, each measured in every run. */
export const PROGRAMMING_CHANGES = ["add-one", "remove-one", "add-100", "full-sync"] as const;
export type ProgrammingChange = (typeof PROGRAMMING_CHANGES)[number];
/** Timed beside them where the backend can (the lab): a start from nothing, whole and split into several transactions (kubernetes #139328). */
export const COLD_START_CHANGES = ["cold-start", "cold-start-split"] as const;
export type ColdStartChange = (typeof COLD_START_CHANGES)[number];
export type MeasuredChange = ProgrammingChange | ColdStartChange;

/** What the programming profile asks of each run; stored with the campaign. */
export interface ProgrammingSettings {
  /** New connections per second through the changed Service's NodePort (1000 or more). */
  readonly probesPerSecond: number;
  /** Services created at once by add-100. */
  readonly addMany: number;
  /** How long the probe keeps going after it first saw a change, counting attempts that still saw the old state, ms. */
  readonly confirmMs: number;
  /** Longest wait for a change to reach the packets, s: beyond it the run fails. */
  readonly timeoutS: number;
  /** Also time cold starts (COLD_START_CHANGES), where the backend offers them, in the first repetition of each cell (they cost a full sync each). */
  readonly coldStart: boolean;
}

/** One measured change of a programming run: timed by its write (the lab), or by the control plane's own metrics (the cloud), and by the probe. */
export interface ChangeMeasurement {
  readonly change: MeasuredChange;
  /** Its place in the run, from 0. */
  readonly sequence: number;
  /** Services the dataplane holds after it. */
  readonly services: number;
  /**
   * The control plane's sync for the run's family: from its start to its last write (what
   * kubeproxy_sync_proxy_rules_duration_seconds measures), s. Where the backend times the write itself (the lab).
   */
  readonly syncS?: number;
  /** The writes themselves (iptables-restore, nft -f, the bpf(2) map calls): the kernel's commit, s. Where the backend times it (the lab). */
  readonly commitS?: number;
  /** Restores, transactions or map operations written. Where the backend counts them (the lab). */
  readonly writes?: number;
  /**
   * What the control plane's own histograms grew by over the change (measure/control-plane-metrics.ts),
   * where the backend reads them (the cloud: kube-proxy's or the Cilium agent's metrics endpoint).
   */
  readonly metrics?: readonly MetricHistogram[];
  /**
   * From the start of the change to the first connection through the changed Service that saw it
   * (answered for an addition, refused for a removal), s. Absent for changes that are not probed.
   */
  readonly programmedS?: number;
  /** The probe's attempts; flaps: those sent after the first that saw the change and still saw the old state. */
  readonly probes?: { readonly sent: number; readonly flaps: number; readonly timeouts: number };
}

/**
 * What a backend offers for the programming profile: at the prepared step and the run's family, the
 * changes of one run, made through the dataplane's control plane (the lab: its models of kube-proxy
 * and the Cilium agent; the cloud: Services created and deleted through the API) and measured. Its
 * result holds every change of PROGRAMMING_CHANGES, in the order made, and leaves the step's Services
 * as they were.
 */
export interface ProgrammingBackend {
  runChanges(key: RunKey, settings: ProgrammingSettings): Promise<readonly ChangeMeasurement[]>;
}

/** One planned repetition; its id is derived from these fields alone, so a resumed campaign finds it again. */
export interface RunKey {
  readonly dataplane: Dataplane;
  readonly family: Family;
  readonly profile: RunProfile;
  readonly services: number;
  /** 0-based repetition index within its step. */
  readonly repetition: number;
  /**
   * The Service path the run measures (scenario/paths.ts); absent: the paper's, nodeport-local. A
   * key never names nodeport-local, so the keys, run ids and stores of campaigns that measured the
   * paper's path alone stay what they were.
   */
  readonly path?: ServicePath;
}

/** The path of a run key (or of a cell): nodeport-local when it names none. */
export function pathOf(key: { readonly path?: ServicePath | undefined }): ServicePath {
  return key.path ?? DEFAULT_PATH;
}

/** The `path` field of a key for a path: none for the paper's path (RunKey.path). */
export function pathField(path: ServicePath): { path?: ServicePath } {
  return path === DEFAULT_PATH ? {} : { path };
}

/** A traffic profile (protocol, meter, payload size, packet rate); every profile has this shape. */
export type TrafficProfile = Scenario["traffic"]["latency"];

/**
 * The traffic of each profile a campaign runs: the scenario's D-ITG profiles and "setup" (the
 * connection-setup probe as a traffic profile, measure/connection-setup.ts). The campaign runner
 * checks that every planned profile has one.
 */
export type CampaignTraffic = Pick<Scenario["traffic"], "throughput" | "latency"> & { readonly [profile: string]: TrafficProfile };

/** What a backend hands back after one flow: where the logs are and what the sender printed. */
export interface FlowOutcome {
  /**
   * Where the binary D-ITG log to decode is (receiver log for one-way, sender log for rttm), in the
   * backend's terms: a local path for local backends, a path on a remote host for the cloud.
   * collectLog() turns it into a local file.
   */
  readonly logPath: string;
  /**
   * Round-trip (rttm) flows: where the receiver's log of the same flow (-x) is, in the same terms. Its
   * send stamps make the round trips exact (D-ITG B15, measure/ditg-pairing.ts).
   */
  readonly receiverLogPath?: string;
  readonly senderOutput: string;
  readonly startedAt: Date;
  readonly endedAt: Date;
  /** The hop probes' stamps of the run, where the backend has them (the local lab: measure/hops.ts). */
  readonly hops?: HopCapture;
}

/** A flow's logs as local files, handed back by Backend.collectLog(). */
export interface CollectedLogs {
  /** The measured log (FlowOutcome.logPath). */
  readonly log: string;
  /** The receiver's log of a round-trip flow (FlowOutcome.receiverLogPath). */
  readonly receiverLog?: string;
  /**
   * What the sender printed, in full, when it was still closing the flow as runFlow() returned (the
   * lab hands a flow back as soon as its data is in; FlowOutcome.senderOutput is then incomplete).
   */
  readonly senderOutput?: string;
  /** The hop probes' stamps (FlowOutcome.hops); the decoder cuts the run into sections with them. */
  readonly hops?: HopCapture;
}

/**
 * When a prepared step became measurable, and what the dataplane held then: how the campaign knows a
 * step is the one it claims to be (a step down must not be measured on the larger step's rules).
 */
export interface StepReadiness {
  /** Seconds from the change until every Service of the step had a ready endpoint in every family (0 where endpoints are static). */
  readonly endpointsReadyAfterS: number;
  /** Seconds from the change until the dataplane held exactly the step's Services. */
  readonly programmedAfterS: number;
  /** Services the worker's dataplane held per family when the step was found ready: the step's count, or the step failed. */
  readonly programmedServices: Partial<Record<Family, number>>;
}

/** A step's readiness as the store keeps it, with the step and when it was prepared. */
export interface StepRecord extends StepReadiness {
  readonly dataplane: Dataplane;
  readonly services: number;
  readonly preparedAt: string;
}

/**
 * A flow whose receiver session failed or hung (runFlow throws it): ITGRecv may then hold that
 * session's socket or lock and take no later flow, though its process lives on, so the campaign
 * restarts the receiver before the next flow.
 */
export class ReceiverSessionError extends Error {
  override readonly name = "ReceiverSessionError";
}

/**
 * A place where the experiment runs. The campaign runner calls prepare() for each
 * (dataplane, Service count) step, then per repetition receiverAlive() (and restartReceiver() when
 * it is not, or when the last flow's receiver session failed), runFlow(), and collectLog() off the
 * flow's critical path; teardown() at the end.
 */
export interface Backend {
  readonly name: string;
  /**
   * True when sender and receiver read one clock (namespaces or processes of one host): the one-way
   * delays of the receiver's log are then valid, and the campaign keeps them beside the round trips.
   */
  readonly sharedClock?: boolean;
  /** The run profiles it can measure; a campaign asking for another one is refused before it starts. */
  readonly profiles: readonly RunProfile[];
  /** The Service paths it can measure (scenario/paths.ts); absent: the paper's path alone. A campaign asking for another is refused before it starts. */
  readonly paths?: readonly ServicePath[];
  /**
   * Bring the dataplane to the given mode and Service count; returns when the dataplane holds exactly
   * the step's Services, with when that happened (undefined where there is no dataplane to program).
   * Throws when the step cannot be brought about.
   */
  prepare(step: { dataplane: Dataplane; services: number }): Promise<StepReadiness | undefined>;
  /**
   * Run one D-ITG flow for the key and return its log. `logName` is unique per run and attempt
   * (D-ITG truncates an existing log of the same name). Throws on transport failure, and a
   * ReceiverSessionError when the receiver's side of the session failed or hung.
   */
  runFlow(key: RunKey, flow: { logName: string; durationS: number; traffic: TrafficProfile }): Promise<FlowOutcome>;
  /**
   * Makes the flow's logs (the measured one, and the receiver's of a round-trip flow) local files and
   * returns their paths; the caller owns (and deletes) those files. Called while the next flow runs,
   * so it must not disturb the measured path.
   */
  collectLog(outcome: FlowOutcome): Promise<CollectedLogs>;
  /** The programming profile, where the backend offers it (ProgrammingBackend). */
  readonly programming?: ProgrammingBackend;
  /** True when the receiver answers; restartReceiver() brings it back. */
  receiverAlive(): Promise<boolean>;
  restartReceiver(): Promise<void>;
  teardown(): Promise<void>;
}

/**
 * The other readings of a run's delays that the store keeps beside its summary: the round-trip
 * meter's own, from the sender log alone ("sender": B15's signature records left out; "itgdec":
 * every record as logged, what ITGDec prints), and the one-way delays of the receiver's log
 * ("oneWay", kept where both ends share one clock).
 */
export type DelayViewName = "sender" | "itgdec" | "oneWay";
export const DELAY_VIEW_NAMES: readonly DelayViewName[] = ["sender", "itgdec", "oneWay"];

export interface RunDelayView {
  readonly summary: FlowSummary;
  /** Records left out of this reading's delay statistics (sender: B15's signature). */
  readonly excludedRecords: number;
  readonly histogram?: string;
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
  /**
   * Where the summary's send times come from: "paired" (exact round trips from the receiver's log) or
   * "sender" (the measured log's own stamps). Absent for runs stored before exact round trips
   * (results store schema 1), whose round trips are the meter's, as ITGDec reads them.
   */
  readonly delaySource?: DelaySource;
  /** Records of the measured log left out of the summary's delay statistics (unpaired ones, when paired). */
  readonly excludedRecords?: number;
  /** Other readings of the run's delays (round-trip runs). */
  readonly delayViews?: Partial<Record<DelayViewName, RunDelayView>>;
  /** Where the run's delay comes from, section by section (runs with hop probes). */
  readonly hops?: RunHops;
  /** The changes of a programming run. */
  readonly changes?: readonly ChangeMeasurement[];
  readonly retries: number;
  readonly startedAt: string;
  readonly endedAt: string;
}
