// What every lab dataplane module implements and shares, apart from the registry (index.ts) that
// chooses among them: the modules import this file, the registry imports the modules.
import type { Dataplane, Scenario } from "../../scenario/schema.js";
import type { ServiceSet } from "../../workloads/service-model.js";
import type { IptablesBackend } from "./iptables/kernel.js";
import type { ServiceEndpoints } from "./kube-proxy-inputs.js";
import type { LabTopology } from "../topology.js";

/** What a dataplane serves at one step of the sweep. */
export interface LabStep {
  readonly services: number;
  readonly serviceSet: ServiceSet;
  /** Every Service with its endpoint on the worker, in kube-proxy's order (lab-scenario.ts). */
  readonly endpoints: readonly ServiceEndpoints[];
}

/** What every dataplane of one lab shares: the lab and the settings its dataplanes read. */
export interface LabDataplaneContext {
  readonly topology: LabTopology;
  readonly scenario: Scenario;
  /** iptables-legacy or iptables-nft, for kube-proxy's iptables rules. */
  readonly iptablesBackend: IptablesBackend;
}

/** What a dataplane holds in the kernel, as the kernel reports it: a count per kind and family, e.g. `ipv4 nat rules`. */
export type InstalledCounts = Readonly<Record<string, number>>;

export interface LabDataplane {
  readonly name: Dataplane;
  /**
   * Serves the step's Services from now on: installs them (a full sync, as the real dataplane makes
   * when it starts), or puts back on the packet path what it parked for the same step. Says which.
   */
  setUp(step: LabStep): Promise<{ readonly installed: boolean }>;
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

export interface LabDataplaneModule {
  readonly name: Dataplane;
  /** Why this host cannot run it (a tool or header missing), or undefined. */
  hostProblem(): string | undefined;
  /** Rough seconds to install a step of this many Services, both families, on a 2-core host (for the plan's estimate). */
  installSeconds(services: number): number;
  create(context: LabDataplaneContext): LabDataplane;
}
