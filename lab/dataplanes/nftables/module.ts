// kube-proxy in nftables mode on the lab's worker: one proxier per family (KubeProxyNftables, the
// generator of rules.ts with its state between syncs) writing through nft (NftablesNetns). A step is
// installed by a first sync, moved to another step by a partial sync (then the sync that deletes the
// chains gone stale, a second later for kube-proxy), and changed by program() as kube-proxy writes a
// change: partial, restarted, cold, or cold and split (kubernetes #139328). Stepping aside parks the
// tables: dormant, their hooks unregistered, everything else kept. A full sync is what costs here: at
// 10000 Services the kernel spends most of a minute per family committing it (bench/lab-install.ts).
import type { Family } from "../../../scenario/cidr.js";
import { LAB_FAMILIES } from "../../lab-scenario.js";
import { ControlPlaneClock } from "../control-plane-clock.js";
import type { ServiceEndpoints } from "../kube-proxy-inputs.js";
import {
  countKubeProxyNftables,
  forwardedClusterIps,
  kubeProxyNftablesStates,
  labNftablesNode,
  nftablesHostProblem,
  NftablesNetns,
  parkKubeProxyNftables,
  removeKubeProxyNftables,
  resumeKubeProxyNftables,
} from "./kernel.js";
import { COLD_START_MAX_OPERATIONS, KubeProxyNftables, STALE_CHAIN_DELAY_S } from "./rules.js";
import type { ChangeWrite, StepCosts, InstalledCounts, LabDataplane, LabDataplaneContext, LabDataplaneModule, LabStep, ServiceChange, SyncKind } from "../types.js";

const SYNC_KINDS: readonly SyncKind[] = ["partial", "restart", "cold", "cold-split"];

class NftablesDataplane implements LabDataplane {
  readonly name = "nftables" as const;
  /** The step whose tables are in the kernel, the Services they hold, their proxiers, and whether they are on the packet path. */
  private held: { services: number; endpoints: readonly ServiceEndpoints[]; proxiers: Record<Family, KubeProxyNftables>; active: boolean } | undefined;
  private readonly clock = new ControlPlaneClock();

  constructor(private readonly context: LabDataplaneContext) {}

  private get worker(): string {
    return this.context.topology.namespace("worker");
  }

  private proxier(family: Family): KubeProxyNftables {
    const { scenario, topology } = this.context;
    return new KubeProxyNftables(labNftablesNode(topology.plan, family, Object.values(scenario.kubernetes.serviceSubnets)));
  }

  async setUp(step: LabStep): Promise<{ sync: "full" | "partial" | "none" }> {
    const held = this.held;
    if (held?.services === step.services) {
      if (!held.active) await resumeKubeProxyNftables(this.worker, LAB_FAMILIES);
      held.active = true;
      return { sync: "none" };
    }
    if (held && (this.context.stepSync ?? "partial") === "partial") {
      // A running kube-proxy sees the Services change; its next sync, a second later, deletes the chains that went stale.
      for (const family of LAB_FAMILIES) held.proxiers[family].sync(step.endpoints, new NftablesNetns(this.worker, family), { now: this.clock.now() });
      this.held = { ...held, services: step.services, endpoints: step.endpoints };
      await this.settle();
      if (!held.active) await resumeKubeProxyNftables(this.worker, LAB_FAMILIES);
      this.held.active = true;
      return { sync: "partial" };
    }
    await this.remove();
    const proxiers = Object.fromEntries(LAB_FAMILIES.map((f) => [f, this.proxier(f)])) as Record<Family, KubeProxyNftables>;
    try {
      for (const family of LAB_FAMILIES) proxiers[family].sync(step.endpoints, new NftablesNetns(this.worker, family), { now: this.clock.now() });
    } catch (error) {
      await removeKubeProxyNftables(this.worker, LAB_FAMILIES).catch(() => undefined);
      throw error;
    }
    this.held = { services: step.services, endpoints: step.endpoints, proxiers, active: true };
    return { sync: "full" };
  }

  async program(change: ServiceChange): Promise<ChangeWrite> {
    const held = this.held;
    if (!held?.active) throw new Error("nftables dataplane: program() needs a step set up and on the packet path; set one up first");
    if (!SYNC_KINDS.includes(change.how)) throw new Error(`nftables dataplane: a ${change.how} write is not accepted; accepted: ${SYNC_KINDS.join(", ")}`);
    const families: ChangeWrite["families"][number][] = [];
    for (const family of [change.family, ...LAB_FAMILIES.filter((f) => f !== change.family)]) {
      if (change.how === "cold" || change.how === "cold-split") await removeKubeProxyNftables(this.worker, [family]);
      if (change.how !== "partial") held.proxiers[family] = this.proxier(family);
      const kernel = new NftablesNetns(this.worker, family);
      const start = performance.now();
      held.proxiers[family].sync(change.endpoints, kernel, {
        now: this.clock.now(),
        ...(change.how === "cold-split" ? { split: COLD_START_MAX_OPERATIONS } : {}),
      });
      families.push({ family, syncS: (performance.now() - start) / 1000, commitS: kernel.commitMs / 1000, writes: kernel.transactions });
    }
    held.endpoints = change.endpoints;
    return { ...families[0]!, families };
  }

  async settle(): Promise<void> {
    const held = this.held;
    // No chain flushed and waiting: the next sync would find nothing to delete and nothing to write.
    if (!held || LAB_FAMILIES.every((f) => held.proxiers[f].stale.size === 0)) return;
    this.clock.skip(STALE_CHAIN_DELAY_S + 0.001);
    for (const family of LAB_FAMILIES) held.proxiers[family].sync(held.endpoints, new NftablesNetns(this.worker, family), { now: this.clock.now() });
  }

  async stepAside(): Promise<void> {
    if (!this.held?.active) return;
    await parkKubeProxyNftables(this.worker, LAB_FAMILIES);
    this.held.active = false;
  }

  async activeTraces(): Promise<string[]> {
    const states = await kubeProxyNftablesStates(this.worker);
    return LAB_FAMILIES.filter((f) => states[f] === "active").map((f) => `kube-proxy's nftables table (${f})`);
  }

  async counts(): Promise<InstalledCounts> {
    const counts: Record<string, number> = {};
    for (const family of LAB_FAMILIES) {
      const held = await countKubeProxyNftables(this.worker, family);
      if (!held) continue;
      counts[`${family} chains`] = held.chains;
      counts[`${family} rules`] = held.rules;
      for (const [name, elements] of Object.entries(held.elements)) counts[`${family} ${name} elements`] = elements;
    }
    return counts;
  }

  async forwardedClusterIps(): Promise<string[]> {
    if (!this.held) return [];
    const ips: string[] = [];
    for (const family of LAB_FAMILIES) ips.push(...(await forwardedClusterIps(this.worker, family)));
    return ips;
  }

  flushConnections(): void {}

  async remove(): Promise<void> {
    if (!this.held) return;
    this.held = undefined;
    await removeKubeProxyNftables(this.worker, LAB_FAMILIES);
  }
}

/** What changing the step costs, both families, on the project's 2-core host at a load of 5 to 9 (StepCosts). */
const STEP_COSTS: StepCosts = {
  // Medians over three runs of each bench/step-change.ts command (lab/wall-estimate.ts), up to 2000
  // Services: the kernel's commit grows with the square of the table's anonymous maps (one per
  // Service port), for a full sync and for a partial one adding Services alike; 107 s at 10000,
  // against 146 s measured there earlier (bench/lab-install.ts, README). Parked by the table's flags.
  install: { fixedS: 0.15, perServiceS: 0.86e-3, perServiceSquaredS: 0.98e-6 },
  move: { fixedS: 0.1, perServiceS: 0.86e-3, perServiceSquaredS: 0.98e-6, removedPerServiceS: 0.75e-3 },
  resume: { fixedS: 0.015, perServiceS: 0 },
  park: { fixedS: 0.02, perServiceS: 0 },
  count: { fixedS: 0.03, perServiceS: 0.09e-3 },
};

export const nftables: LabDataplaneModule = {
  name: "nftables",
  hostProblem: nftablesHostProblem,
  stepCosts: STEP_COSTS,
  syncKinds: SYNC_KINDS,
  create: (context) => new NftablesDataplane(context),
};
