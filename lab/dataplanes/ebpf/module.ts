// Cilium's kube-proxy replacement reduced to its tc NodePort path on the lab's worker: the load
// balancer of ebpf-dataplane.ts (compiled, attached to the uplink, its maps filled with one bpftool
// batch). Stepping aside detaches the programs; the filled maps stay pinned until the same step
// comes back.
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { forwardingFrontends, LB_MAPS } from "./service-maps.js";
import { EBPF_DATAPLANE_PREF, EbpfDataplane, ebpfHostProblem, setupEbpfDataplane } from "./kernel.js";
import { LAB_FAMILIES } from "../../lab-scenario.js";
import { run } from "../../netns.js";
import { ipFamilyOf } from "../kube-proxy-inputs.js";
import type { ServiceSpec } from "../../../workloads/service-model.js";
import type { InstalledCounts, LabDataplane, LabDataplaneContext, LabDataplaneModule, LabStep } from "../types.js";

const BPFTOOL_TIMEOUT_MS = 120_000;

class EbpfLabDataplane implements LabDataplane {
  readonly name = "ebpf" as const;
  /** The step whose maps are filled, and whether the programs are attached. */
  private held: { services: number; loadBalancer: EbpfDataplane; active: boolean } | undefined;

  constructor(private readonly context: LabDataplaneContext) {}

  /** The load balancer of the held step. */
  get loadBalancer(): EbpfDataplane | undefined {
    return this.held?.loadBalancer;
  }

  async setUp(step: LabStep): Promise<{ installed: boolean }> {
    if (this.held?.services === step.services) {
      if (!this.held.active) this.held.loadBalancer.resume();
      this.held.active = true;
      return { installed: false };
    }
    await this.remove();
    // Each Service's backend is its endpoint of the step (in the lab: the receiver pod for all).
    const backends = new Map(step.endpoints.map((e) => [`${e.service.namespace}/${e.service.name}`, e.endpoints]));
    const backendOf = (spec: ServiceSpec) => {
      const ips = backends.get(`${spec.namespace}/${spec.name}`);
      return ips && Object.fromEntries(LAB_FAMILIES.map((f) => [f, ips.find((e) => ipFamilyOf(e.ip) === f)?.ip]).filter(([, ip]) => ip !== undefined));
    };
    this.held = { services: step.services, loadBalancer: setupEbpfDataplane(this.context.topology, { services: step.serviceSet, backendOf }), active: true };
    return { installed: true };
  }

  async stepAside(): Promise<void> {
    if (!this.held?.active) return;
    this.held.loadBalancer.detach();
    this.held.active = false;
  }

  async activeTraces(): Promise<string[]> {
    const { topology } = this.context;
    const uplink = topology.plan.worker.uplink;
    return ["ingress", "egress"].flatMap((direction) => {
      // This dataplane's filters only: the hop probes (lab/hops/) share the uplink with every dataplane.
      const filters = topology.run("worker", ["tc", "filter", "show", "dev", uplink, direction, "pref", String(EBPF_DATAPLANE_PREF)]).trim();
      return filters === "" ? [] : [`a tc filter at ${uplink} ${direction}: ${filters.split("\n")[0]}`];
    });
  }

  async counts(): Promise<InstalledCounts> {
    if (!this.held) return {};
    const entries = this.held.loadBalancer.serviceMapEntries();
    return Object.fromEntries(LAB_FAMILIES.map((f) => [`${f} service map entries`, entries[f]]));
  }

  async forwardedClusterIps(): Promise<string[]> {
    const loadBalancer = this.held?.loadBalancer;
    if (!loadBalancer) return [];
    // Every frontend with a backend; the caller keeps the ClusterIPs (NodePort frontends carry the node's address).
    return LAB_FAMILIES.flatMap((family) => forwardingFrontends(loadBalancer.serviceEntries(family)).map((e) => e.address));
  }

  /** Empties the conntrack maps of both families, entry by entry in one bpftool batch per map. */
  flushConnections(): void {
    const loadBalancer = this.held?.loadBalancer;
    if (!loadBalancer) return;
    for (const family of LAB_FAMILIES) {
      const map = loadBalancer.mapPath(LB_MAPS.conntrack[family]);
      const entries = JSON.parse(run(["bpftool", "-j", "map", "dump", "pinned", map], { timeoutMs: BPFTOOL_TIMEOUT_MS })) as { key: string[] }[];
      if (entries.length === 0) continue;
      const batch = join(this.context.topology.runDir, "ct-flush.batch");
      const lines = entries.map((e) => `map delete pinned ${map} key hex ${e.key.map((b) => b.replace(/^0x/, "")).join(" ")}`);
      writeFileSync(batch, `${lines.join("\n")}\n`);
      run(["bpftool", "batch", "file", batch], { timeoutMs: BPFTOOL_TIMEOUT_MS });
      rmSync(batch, { force: true });
    }
  }

  async remove(): Promise<void> {
    const held = this.held;
    this.held = undefined;
    held?.loadBalancer.teardown();
  }
}

export const ebpf: LabDataplaneModule = {
  name: "ebpf",
  hostProblem: ebpfHostProblem,
  // clang, attaching, and one bpftool batch: about 5 s at 10000 Services.
  installSeconds: (services) => 1.5 + (0.35 * services) / 1000,
  create: (context) => new EbpfLabDataplane(context),
};

/** The eBPF load balancer behind a lab dataplane, when it is the eBPF one and holds a step (for checks of its maps and programs). */
export function ebpfLoadBalancer(dataplane: LabDataplane): EbpfDataplane | undefined {
  return dataplane instanceof EbpfLabDataplane ? dataplane.loadBalancer : undefined;
}
