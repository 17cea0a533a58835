// kube-proxy in nftables mode on the lab's worker: the transaction of kube-proxy-nftables-rules.ts,
// one `nft -f` per family (nftables-dataplane.ts). Stepping aside parks the tables: dormant, their
// hooks unregistered, everything else kept until the same step comes back. A full sync is what costs
// here: at 10000 Services the kernel spends most of a minute per family committing it
// (bench/lab-install.ts), waking a dormant table takes milliseconds.
import { LAB_FAMILIES } from "../../lab-scenario.js";
import {
  applyKubeProxyNftables,
  countKubeProxyNftables,
  forwardedClusterIps,
  kubeProxyNftablesStates,
  labKubeProxyNftablesRules,
  nftablesHostProblem,
  parkKubeProxyNftables,
  removeKubeProxyNftables,
  resumeKubeProxyNftables,
} from "./kernel.js";
import type { InstalledCounts, LabDataplane, LabDataplaneContext, LabDataplaneModule, LabStep } from "../types.js";

class NftablesDataplane implements LabDataplane {
  readonly name = "nftables" as const;
  /** The step whose tables are in the kernel, and whether they are on the packet path. */
  private held: { services: number; active: boolean } | undefined;

  constructor(private readonly context: LabDataplaneContext) {}

  private get worker(): string {
    return this.context.topology.namespace("worker");
  }

  async setUp(step: LabStep): Promise<{ installed: boolean }> {
    if (this.held?.services === step.services) {
      if (!this.held.active) await resumeKubeProxyNftables(this.worker, LAB_FAMILIES);
      this.held.active = true;
      return { installed: false };
    }
    await this.remove();
    const { scenario, topology } = this.context;
    const rulesets = labKubeProxyNftablesRules(step.endpoints, topology.plan, Object.values(scenario.kubernetes.serviceSubnets));
    this.held = { services: step.services, active: true };
    await applyKubeProxyNftables(this.worker, rulesets);
    return { installed: true };
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

export const nftables: LabDataplaneModule = {
  name: "nftables",
  hostProblem: nftablesHostProblem,
  // The kernel's commit grows with the square of the table's anonymous maps (one per Service port).
  installSeconds: (services) => 0.3 + 0.6 * (services / 1000) ** 2,
  create: (context) => new NftablesDataplane(context),
};
