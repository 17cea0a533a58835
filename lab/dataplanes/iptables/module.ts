// kube-proxy in iptables mode on the lab's worker: one proxier per family (KubeProxyIptables, the
// generator of rules.ts with its state between syncs, MinimizeIPTablesRestore) writing one
// iptables-restore per sync, and its jumps on full syncs (kernel.ts). A step is installed by a first
// sync, moved to another step by a partial sync, and changed by program() as kube-proxy writes a
// change. Stepping aside parks the rules: the jumps from the built-in chains go, the KUBE-* chains
// stay unreachable; a parked table is written without its jumps, which come back when it resumes.
import type { Family } from "../../../scenario/cidr.js";
import { LAB_FAMILIES } from "../../lab-scenario.js";
import { ControlPlaneClock } from "../control-plane-clock.js";
import type { ServiceEndpoints } from "../kube-proxy-inputs.js";
import {
  applyKubeProxyRules,
  countNatRules,
  forwardedClusterIps,
  IPTABLES_BACKENDS,
  kubeNatChainNames,
  kubeProxyJumps,
  labIptablesNode,
  nftXtablesPresent,
  parkKubeProxyRules,
  removeKubeProxyRules,
  resumeKubeProxyRules,
  writeKubeProxyRules,
} from "./kernel.js";
import { LegacyJumpReader } from "./jump-reader.js";
import { IPTABLES_SYNC_PERIOD_S, KubeProxyIptables, largeClusterModeOf, type IptablesSync } from "./rules.js";
import type { ChangeWrite, StepCosts, InstalledCounts, LabDataplane, LabDataplaneContext, LabDataplaneModule, LabStep, ServiceChange, SyncKind } from "../types.js";

const SYNC_KINDS: readonly SyncKind[] = ["partial", "restart", "cold"];

class IptablesDataplane implements LabDataplane {
  readonly name = "iptables" as const;
  /** The step whose rules are in the kernel, the Services they hold, their proxiers, and whether they are on the packet path. */
  private held: { services: number; endpoints: readonly ServiceEndpoints[]; proxiers: Record<Family, KubeProxyIptables>; active: boolean } | undefined;
  private readonly clock = new ControlPlaneClock();
  private readonly jumpReader: LegacyJumpReader;

  constructor(private readonly context: LabDataplaneContext) {
    this.jumpReader = new LegacyJumpReader(context.topology.runDir);
  }

  private get worker(): string {
    return this.context.topology.namespace("worker");
  }

  private proxier(family: Family): KubeProxyIptables {
    return new KubeProxyIptables(labIptablesNode(this.context.topology.plan, family));
  }

  /** One sync of one family: generated, then written (its jumps only while on the packet path). Returns the sync and the restore's time, ms. */
  private async sync(proxier: KubeProxyIptables, endpoints: readonly ServiceEndpoints[], options: { full?: boolean } = {}): Promise<{ sync: IptablesSync; restoreMs: number }> {
    const { iptablesBackend } = this.context;
    const family = proxier.node.family;
    const sync = proxier.sync(endpoints, { now: this.clock.now(), ...options, natChains: () => kubeNatChainNames(this.worker, family, iptablesBackend) });
    try {
      const restoreMs = await writeKubeProxyRules(this.worker, this.held?.active === false ? { ...sync, jumps: [] } : sync, iptablesBackend);
      return { sync, restoreMs };
    } catch (error) {
      proxier.restoreFailed();
      throw error;
    }
  }

  async setUp(step: LabStep): Promise<{ sync: "full" | "partial" | "none" }> {
    const { iptablesBackend } = this.context;
    const held = this.held;
    if (held?.services === step.services) {
      if (!held.active) await resumeKubeProxyRules(this.worker, LAB_FAMILIES, iptablesBackend);
      held.active = true;
      return { sync: "none" };
    }
    if (held && (this.context.stepSync ?? "partial") === "partial") {
      // A step of a campaign lasts longer than kube-proxy's sync period: when its Services change,
      // the large-cluster cleanup is due, so the move's own sync deletes the chains of the Services
      // gone and the sync of settle() has nothing left to do.
      this.clock.skip(IPTABLES_SYNC_PERIOD_S + 1);
      for (const family of LAB_FAMILIES) {
        // Crossing the large-cluster threshold changes every endpoint rule's comments: kube-proxy's next
        // full sync (within FullSyncPeriod) writes them all, so the step gets it now.
        const crossed = largeClusterModeOf(held.endpoints, family) !== largeClusterModeOf(step.endpoints, family);
        await this.sync(held.proxiers[family], step.endpoints, { full: crossed });
      }
      this.held = { ...held, services: step.services, endpoints: step.endpoints };
      await this.settle();
      if (!held.active) await resumeKubeProxyRules(this.worker, LAB_FAMILIES, iptablesBackend);
      this.held.active = true;
      return { sync: "partial" };
    }
    await this.remove();
    const proxiers = Object.fromEntries(LAB_FAMILIES.map((f) => [f, this.proxier(f)])) as Record<Family, KubeProxyIptables>;
    const ruleSets = LAB_FAMILIES.map((f) => proxiers[f].sync(step.endpoints, { now: this.clock.now() }));
    await applyKubeProxyRules(this.worker, ruleSets, iptablesBackend);
    this.held = { services: step.services, endpoints: step.endpoints, proxiers, active: true };
    return { sync: "full" };
  }

  async program(change: ServiceChange): Promise<ChangeWrite> {
    const held = this.held;
    if (!held?.active) throw new Error("iptables dataplane: program() needs a step set up and on the packet path; set one up first");
    if (!SYNC_KINDS.includes(change.how)) throw new Error(`iptables dataplane: a ${change.how} write is not accepted; accepted: ${SYNC_KINDS.join(", ")}`);
    const families: ChangeWrite["families"][number][] = [];
    for (const family of [change.family, ...LAB_FAMILIES.filter((f) => f !== change.family)]) {
      if (change.how === "cold") await removeKubeProxyRules(this.worker, [family], this.context.iptablesBackend);
      if (change.how !== "partial") held.proxiers[family] = this.proxier(family);
      const start = performance.now();
      const { restoreMs } = await this.sync(held.proxiers[family], change.endpoints);
      families.push({ family, syncS: (performance.now() - start) / 1000, commitS: restoreMs / 1000, writes: 1 });
    }
    held.endpoints = change.endpoints;
    return { ...families[0]!, families };
  }

  async settle(): Promise<void> {
    const held = this.held;
    // Below the large-cluster threshold every sync deletes the stale chains already; above it, a sync
    // that found the cleanup due did too. Nothing stale: the periodic sync would rewrite what is there.
    if (!held || !LAB_FAMILIES.some((f) => held.proxiers[f].holdsStaleChains)) return;
    this.clock.skip(IPTABLES_SYNC_PERIOD_S + 1);
    for (const family of LAB_FAMILIES) await this.sync(held.proxiers[family], held.endpoints);
  }

  async stepAside(): Promise<void> {
    if (!this.held?.active) return;
    await parkKubeProxyRules(this.worker, LAB_FAMILIES, this.context.iptablesBackend);
    this.held.active = false;
  }

  async activeTraces(): Promise<string[]> {
    // Both backends: rules of iptables-legacy and of iptables-nft are walked alike. The legacy tables
    // are read from the kernel's blobs (jump-reader.ts): iptables-legacy-save lists every rule. The
    // iptables-nft tables are listed only where there are some: iptables-nft-save reads every chain
    // of the family, kube-proxy's nftables table's too.
    const traces: string[] = [];
    for (const backend of IPTABLES_BACKENDS) {
      for (const family of LAB_FAMILIES) {
        const jumps =
          backend === "legacy"
            ? this.jumpReader.jumps(this.worker, family)
            : nftXtablesPresent(this.worker, family)
              ? await kubeProxyJumps(this.worker, family, backend)
              : [];
        for (const t of jumps) {
          traces.push(`kube-proxy's iptables rules (${backend}, ${family}, ${t.table}: ${t.jumps.length} jump(s) into KUBE-* chains)`);
        }
      }
    }
    return traces;
  }

  async counts(): Promise<InstalledCounts> {
    if (!this.held) return {};
    const counts: Record<string, number> = {};
    for (const family of LAB_FAMILIES) {
      const nat = await countNatRules(this.worker, family, this.context.iptablesBackend);
      counts[`${family} nat rules`] = nat.kube;
      counts[`${family} KUBE-* nat chains`] = nat.kubeChains;
    }
    return counts;
  }

  async forwardedClusterIps(): Promise<string[]> {
    if (!this.held) return [];
    const ips: string[] = [];
    for (const family of LAB_FAMILIES) ips.push(...(await forwardedClusterIps(this.worker, family, this.context.iptablesBackend)));
    return ips;
  }

  flushConnections(): void {}

  async remove(): Promise<void> {
    if (!this.held) return;
    this.held = undefined;
    await removeKubeProxyRules(this.worker, LAB_FAMILIES, this.context.iptablesBackend);
  }
}

/** What changing the step costs, both families, on the project's 2-core host at a load of 5 to 9 (StepCosts). */
const STEP_COSTS: StepCosts = {
  // Medians over three runs of each bench/step-change.ts command (lab/wall-estimate.ts): the first
  // install fixes kube-proxy's jumps and nfacct counters one command at a time; every later write
  // rewrites the whole legacy nat table (libiptc), so parking and resuming grow with the step too.
  install: { fixedS: 1.0, perServiceS: 0.45e-3 },
  move: { fixedS: 0.3, perServiceS: 1.0e-3, removedPerServiceS: 0.4e-3 },
  resume: { fixedS: 0.03, perServiceS: 0.09e-3 },
  park: { fixedS: 0.05, perServiceS: 0.075e-3 },
  count: { fixedS: 0.03, perServiceS: 0.11e-3 },
};

export const iptables: LabDataplaneModule = {
  name: "iptables",
  // The lab's own tool check covers iptables-legacy-restore and ip6tables-legacy-restore.
  hostProblem: () => undefined,
  stepCosts: STEP_COSTS,
  syncKinds: SYNC_KINDS,
  create: (context) => new IptablesDataplane(context),
};
