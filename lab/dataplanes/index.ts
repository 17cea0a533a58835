// The Service dataplanes of the lab's worker, one module each behind one interface, chosen by the
// scenario's dataplane enum through LAB_DATAPLANES. The lab backend drives them through this
// interface only: set up for a step, step aside for another, say what of it is on the packet path,
// count what it installed, tear down. A fourth dataplane is one more module here.
import type { Dataplane, Scenario } from "../../scenario/schema.js";
import type { ServiceSet } from "../../workloads/service-model.js";
import type { IptablesBackend } from "../iptables-dataplane.js";
import type { ServiceEndpoints } from "../kube-proxy-inputs.js";
import type { LabTopology } from "../topology.js";
import { ebpf } from "./ebpf.js";
import { iptables } from "./iptables.js";
import { nftables } from "./nftables.js";

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

export const LAB_DATAPLANES: Readonly<Record<Dataplane, LabDataplaneModule>> = { iptables, nftables, ebpf };

export function labDataplane(name: Dataplane): LabDataplaneModule {
  return LAB_DATAPLANES[name];
}
