// kube-proxy in iptables mode on the lab's worker: the rules of kube-proxy-rules.ts, applied with one
// iptables-restore per family (iptables-dataplane.ts). Stepping aside parks them: the jumps from the
// built-in chains go, the KUBE-* chains stay unreachable until the same step comes back.
import {
  applyKubeProxyRules,
  countNatRules,
  forwardedClusterIps,
  IPTABLES_BACKENDS,
  kubeProxyJumps,
  labKubeProxyRules,
  parkKubeProxyRules,
  removeKubeProxyRules,
  resumeKubeProxyRules,
} from "./kernel.js";
import type { KubeProxyRules } from "./rules.js";
import { LAB_FAMILIES } from "../../lab-scenario.js";
import type { InstalledCounts, LabDataplane, LabDataplaneContext, LabDataplaneModule, LabStep } from "../types.js";

class IptablesDataplane implements LabDataplane {
  readonly name = "iptables" as const;
  /** The step whose rules are in the kernel, and whether they are on the packet path. */
  private held: { services: number; ruleSets: KubeProxyRules[]; active: boolean } | undefined;

  constructor(private readonly context: LabDataplaneContext) {}

  private get worker(): string {
    return this.context.topology.namespace("worker");
  }

  async setUp(step: LabStep): Promise<{ installed: boolean }> {
    const { iptablesBackend } = this.context;
    if (this.held?.services === step.services) {
      if (!this.held.active) await resumeKubeProxyRules(this.worker, this.held.ruleSets, iptablesBackend);
      this.held.active = true;
      return { installed: false };
    }
    // A resync onto another step's rules would leave the chains of Services that are gone.
    await this.remove();
    const ruleSets = labKubeProxyRules(step.endpoints, this.context.topology.plan);
    this.held = { services: step.services, ruleSets, active: true };
    await applyKubeProxyRules(this.worker, ruleSets, iptablesBackend);
    return { installed: true };
  }

  async stepAside(): Promise<void> {
    if (!this.held?.active) return;
    await parkKubeProxyRules(this.worker, this.held.ruleSets, this.context.iptablesBackend);
    this.held.active = false;
  }

  async activeTraces(): Promise<string[]> {
    // Both backends: rules of iptables-legacy and of iptables-nft are walked alike.
    const traces: string[] = [];
    for (const backend of IPTABLES_BACKENDS) {
      for (const family of LAB_FAMILIES) {
        for (const t of await kubeProxyJumps(this.worker, family, backend)) {
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

export const iptables: LabDataplaneModule = {
  name: "iptables",
  // The lab's own tool check covers iptables-legacy-restore and ip6tables-legacy-restore.
  hostProblem: () => undefined,
  // Generation and one iptables-restore per family: about 4 s at 10000 Services (bench/lab-install.ts).
  installSeconds: (services) => 0.3 + (0.4 * services) / 1000,
  create: (context) => new IptablesDataplane(context),
};
