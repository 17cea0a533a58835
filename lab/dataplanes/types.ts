// What every lab dataplane module implements and shares, apart from the registry (index.ts) that
// chooses among them: the modules import this file, the registry imports the modules.
import type { Family } from "../../scenario/cidr.js";
import type { Dataplane, Scenario } from "../../scenario/schema.js";
import type { ServiceSet } from "../../workloads/service-model.js";
import type { IptablesBackend } from "./iptables/kernel.js";
import type { LoadBalancerMode } from "./ebpf/node-config.js";
import type { ServiceEndpoints } from "./kube-proxy-inputs.js";
import type { LabTopology } from "../topology.js";

/** What a dataplane serves at one step of the sweep. */
export interface LabStep {
  readonly services: number;
  readonly serviceSet: ServiceSet;
  /** Every Service with its endpoint on the worker, in kube-proxy's order (lab-scenario.ts). */
  readonly endpoints: readonly ServiceEndpoints[];
}

/**
 * How a dataplane moves from one step's Services to another's: "partial", as its control plane does
 * in a running cluster (kube-proxy's partial sync, the Cilium agent's per-entry updates) and then
 * settled (stale chains deleted, as the next periodic sync does), or "full": everything removed and
 * the new step installed by a first sync, as on a new node.
 */
export type StepSync = "partial" | "full";

/** What every dataplane of one lab shares: the lab and the settings its dataplanes read. */
export interface LabDataplaneContext {
  readonly topology: LabTopology;
  readonly scenario: Scenario;
  /** iptables-legacy or iptables-nft, for kube-proxy's iptables rules. */
  readonly iptablesBackend: IptablesBackend;
  /** How steps change; default "partial". */
  readonly stepSync?: StepSync;
  /** Cilium's loadBalancer.mode for the eBPF model's remote NodePort backends: snat (default) or dsr. kube-proxy has no such choice. */
  readonly loadBalancerMode?: LoadBalancerMode;
}

/**
 * How a change of the Service set is written:
 * - "partial": by the running control plane (kube-proxy's partial sync, the Cilium agent's updates);
 * - "restart": by a control plane that starts on a node holding its table (kube-proxy's first sync
 *   after a restart, the Cilium agent restoring its maps);
 * - "cold": from nothing, as on a new node (what the dataplane holds is removed first, untimed);
 * - "cold-split": cold, split into several transactions (kubernetes issue #139328), where the
 *   dataplane offers it (LabDataplaneModule.syncKinds).
 */
export type SyncKind = "partial" | "restart" | "cold" | "cold-split";
export const SYNC_KINDS: readonly SyncKind[] = ["partial", "restart", "cold", "cold-split"];

/** A change of the Services a dataplane holds, as its control plane writes it. */
export interface ServiceChange {
  /** Every Service after the change with its endpoints on the worker, in kube-proxy's order. */
  readonly endpoints: readonly ServiceEndpoints[];
  readonly how: SyncKind;
  /** The family whose write is timed: written first, the other one after it (kube-proxy runs a proxier per family). */
  readonly family: Family;
}

/** What writing a change took in one family. */
export interface FamilyWrite {
  /** The control plane's whole sync: reading the kernel, computing, writing (kube-proxy's sync_proxy_rules_duration), s. */
  readonly syncS: number;
  /** The writes themselves: iptables-restore, every nft -f, the bpf(2) map calls, s. */
  readonly commitS: number;
  /** The restores (iptables), transactions (nftables) or map operations (eBPF) it took. */
  readonly writes: number;
}

/** What writing a change took, for the timed family, and each family's write in the order written (a control plane's syncs, one per family). */
export interface ChangeWrite extends FamilyWrite {
  readonly families: readonly ({ readonly family: Family } & FamilyWrite)[];
}

/** What a dataplane holds in the kernel, as the kernel reports it: a count per kind and family, e.g. `ipv4 nat rules`. */
export type InstalledCounts = Readonly<Record<string, number>>;

export interface LabDataplane {
  readonly name: Dataplane;
  /**
   * Serves the step's Services from now on: installs them (a full sync, as the real dataplane makes
   * when it starts), moves what it holds for another step to them (a partial sync, with stepSync
   * "partial"), or puts back on the packet path what it parked for the same step. Says which.
   */
  setUp(step: LabStep): Promise<{ readonly sync: "full" | "partial" | "none" }>;
  /**
   * Writes a change of the Services it holds (set up, on the packet path) as its control plane would;
   * the change's Services are what it holds afterwards. Throws, naming what failed, when a kind of
   * write it does not offer is asked for.
   */
  program(change: ServiceChange): Promise<ChangeWrite>;
  /**
   * What its control plane does at its next periodic sync when nothing changed: the chains that went
   * stale are deleted (kube-proxy's nftables mode a second after they went stale, its iptables mode
   * once per sync period in large clusters). The lab lets that time pass at once.
   */
  settle(): Promise<void>;
  /**
   * Takes it off the packet path for another dataplane. What it installed for the step may stay in
   * the kernel, unreachable by any packet, when bringing it back is cheaper than installing it again.
   */
  stepAside(): Promise<void>;
  /**
   * Where it sits on the worker's packet path now, read from the kernel (not from what it believes it
   * did), one line each; empty when no packet can reach it. Finds what another lab run or a crashed
   * step left too.
   */
  activeTraces(): Promise<string[]>;
  /** What it installed, counted from the kernel; empty when it holds nothing. */
  counts(): Promise<InstalledCounts>;
  /**
   * The ClusterIPs (both families) it forwards to a backend, read from the kernel where it keeps them
   * (kube-proxy's jumps into Service chains, its service-ips map, the eBPF service map's frontends
   * with backends): the view the cloud's readiness check reads on a node. Empty when it holds nothing.
   */
  forwardedClusterIps(): Promise<string[]>;
  /** Forgets the connections it tracks itself, beside the kernel's conntrack (the eBPF load balancer's CT maps). */
  flushConnections(): void;
  /** Removes everything it put into the kernel, parked or not; it can be set up again afterwards. */
  remove(): Promise<void>;
}

/** Seconds as a function of a Service count n: fixedS + perServiceS n + perServiceSquaredS n². */
export interface ServiceCost {
  readonly fixedS: number;
  readonly perServiceS: number;
  readonly perServiceSquaredS?: number;
}

/**
 * What changing the step costs a dataplane, both families, as measured on the project's busy 2-core
 * host (bench/step-change.ts; lab/wall-estimate.ts adds them up for the plan's estimate).
 */
export interface StepCosts {
  /** A step installed by a full sync, as on a new node (the dataplane's first step of a campaign). */
  readonly install: ServiceCost;
  /**
   * A move from n to m Services by a partial sync: fixedS, plus for Services added what the
   * install's growth from n to m costs (perServiceS (m - n) + perServiceSquaredS (m² - n²): kube-proxy's
   * nftables transaction grows with the table it joins), or for Services removed removedPerServiceS (n - m).
   */
  readonly move: ServiceCost & { readonly removedPerServiceS: number };
  /** Put back on the packet path, at the Service count it holds. */
  readonly resume: ServiceCost;
  /** Taken off the packet path (parked), at the Service count it holds. */
  readonly park: ServiceCost;
  /** Reading from the kernel how many Services it forwards, after an install or a move. */
  readonly count: ServiceCost;
}

export interface LabDataplaneModule {
  readonly name: Dataplane;
  /** Why this host cannot run it (a tool or header missing), or undefined. */
  hostProblem(): string | undefined;
  /** What changing the step costs it (for the plan's estimate of the wall time). */
  readonly stepCosts: StepCosts;
  /** The kinds of write program() offers. */
  readonly syncKinds: readonly SyncKind[];
  create(context: LabDataplaneContext): LabDataplane;
}
