// Cilium's kube-proxy replacement reduced to its tc NodePort path on the lab's worker, and its socket
// load balancer on the client pod's cgroup where the lab has one: the load balancer of kernel.ts
// (with the context's loadBalancer.mode, snat unless told dsr; compiled, attached to the uplink and
// the cgroup, its maps filled with one bpftool batch).
// Changes, a move to another step among them, go entry by entry through the map writer in the
// agent's order (lb-agent.ts). Stepping aside detaches the programs; the filled maps stay pinned.
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Family } from "../../../scenario/cidr.js";
import { namespacedName, serviceSignature, type ServiceEndpoints } from "../kube-proxy-inputs.js";
import { forwardingFrontends, LB_MAPS, planServiceMapsFor, type ServiceMapPlan } from "./service-maps.js";
import type { MapOperation } from "./lb-agent.js";
import { EBPF_DATAPLANE_PREF, EbpfDataplane, ebpfHostProblem, setupEbpfDataplane } from "./kernel.js";
import { LAB_FAMILIES } from "../../lab-scenario.js";
import { run } from "../../netns.js";
import { ipFamilyOf } from "../kube-proxy-inputs.js";
import type { ServiceSpec } from "../../../workloads/service-model.js";
import type { ChangeWrite, StepCosts, InstalledCounts, LabDataplane, LabDataplaneContext, LabDataplaneModule, LabStep, ServiceChange, SyncKind } from "../types.js";

const BPFTOOL_TIMEOUT_MS = 120_000;
const SYNC_KINDS: readonly SyncKind[] = ["partial", "restart", "cold"];

/** Each Service's backend: its endpoint of the step, per family (in the lab: the receiver pod for all). */
function backendsOf(endpoints: readonly ServiceEndpoints[]): (spec: ServiceSpec) => Partial<Record<Family, string>> | undefined {
  const backends = new Map(endpoints.map((e) => [namespacedName(e.service), e.endpoints]));
  return (spec) => {
    const ips = backends.get(namespacedName(spec));
    return ips && Object.fromEntries(LAB_FAMILIES.map((f) => [f, ips.find((e) => ipFamilyOf(e.ip) === f)?.ip]).filter(([, ip]) => ip !== undefined));
  };
}

/** The Services of a step's endpoints that are not in its Service set: the receivers of the paths beyond the paper's. */
function pathReceiversOf(step: LabStep): ServiceSpec[] {
  const inSet = new Set([step.serviceSet.receiver, ...step.serviceSet.scaled].map(namespacedName));
  return step.endpoints.map((e) => e.service).filter((spec) => !inSet.has(namespacedName(spec)));
}

class EbpfLabDataplane implements LabDataplane {
  readonly name = "ebpf" as const;
  /** The step whose maps are filled, and whether the programs are attached. */
  private held: { services: number; endpoints: readonly ServiceEndpoints[]; loadBalancer: EbpfDataplane; active: boolean } | undefined;

  constructor(private readonly context: LabDataplaneContext) {}

  /** The load balancer of the held step. */
  get loadBalancer(): EbpfDataplane | undefined {
    return this.held?.loadBalancer;
  }

  /**
   * The Services whose events the agent sees going from `before` to `after` (created, changed or
   * deleted), by namespace/name, and the plan of those still there. Unchanged Services come as the
   * same objects or with the same signature.
   */
  private events(before: readonly ServiceEndpoints[], after: readonly ServiceEndpoints[]): { services: Set<string>; plan: ServiceMapPlan } {
    const previous = new Map(before.map((e) => [namespacedName(e.service), e]));
    const changed = after.filter((e) => {
      const was = previous.get(namespacedName(e.service));
      return was !== e && (was === undefined || LAB_FAMILIES.some((f) => serviceSignature(was, f) !== serviceSignature(e, f)));
    });
    const present = new Set(after.map((e) => namespacedName(e.service)));
    const services = new Set([...changed.map((e) => namespacedName(e.service)), ...before.filter((e) => !present.has(namespacedName(e.service))).map((e) => namespacedName(e.service))]);
    return { services, plan: this.plan(changed) };
  }

  /** The frontends of the Services, in their order, each to its own endpoint. */
  private plan(endpoints: readonly ServiceEndpoints[]): ServiceMapPlan {
    const { topology } = this.context;
    const services = endpoints.map(({ service }) => ({ spec: service, where: `${service.namespace}/${service.name}` }));
    return planServiceMapsFor(services, { node: topology.addresses.node, pod: topology.addresses.pod, backendOf: backendsOf(endpoints) });
  }

  async setUp(step: LabStep): Promise<{ sync: "full" | "partial" | "none" }> {
    const held = this.held;
    if (held?.services === step.services) {
      if (!held.active) held.loadBalancer.resume();
      held.active = true;
      return { sync: "none" };
    }
    if (held && (this.context.stepSync ?? "partial") === "partial") {
      const lb = held.loadBalancer;
      const { services, plan } = this.events(held.endpoints, step.endpoints);
      await lb.write(lb.agent.change(plan, LAB_FAMILIES, services));
      held.services = step.services;
      held.endpoints = step.endpoints;
      if (!held.active) lb.resume();
      held.active = true;
      return { sync: "partial" };
    }
    await this.remove();
    this.held = {
      services: step.services,
      endpoints: step.endpoints,
      loadBalancer: setupEbpfDataplane(this.context.topology, {
        services: step.serviceSet,
        // The receivers of the paths beyond the paper's come with the step's endpoints, not its Service set.
        pathReceivers: pathReceiversOf(step),
        backendOf: backendsOf(step.endpoints),
        ...(this.context.loadBalancerMode ? { loadBalancerMode: this.context.loadBalancerMode } : {}),
      }),
      active: true,
    };
    return { sync: "full" };
  }

  async program(change: ServiceChange): Promise<ChangeWrite> {
    const held = this.held;
    if (!held?.active) throw new Error("ebpf dataplane: program() needs a step set up and on the packet path; set one up first");
    if (!SYNC_KINDS.includes(change.how)) throw new Error(`ebpf dataplane: a ${change.how} write is not accepted; accepted: ${SYNC_KINDS.join(", ")}`);
    const lb = held.loadBalancer;
    const families: ChangeWrite["families"][number][] = [];
    for (const family of [change.family, ...LAB_FAMILIES.filter((f) => f !== change.family)] as Family[]) {
      // A new node's agent starts from empty maps: they are emptied first, untimed.
      if (change.how === "cold") await lb.write(lb.agent.upsert(this.plan([]), [family]));
      const start = performance.now();
      let ops: MapOperation[];
      if (change.how === "partial") {
        const { services, plan } = this.events(held.endpoints, change.endpoints);
        ops = lb.agent.change(plan, [family], services);
      } else {
        const plan = this.plan(change.endpoints);
        ops = change.how === "restart" ? lb.agent.restore(plan, [family]) : lb.agent.upsert(plan, [family]);
      }
      const { operations, kernelNs } = await lb.write(ops);
      families.push({ family, syncS: (performance.now() - start) / 1000, commitS: kernelNs / 1e9, writes: operations });
    }
    held.endpoints = change.endpoints;
    return { ...families[0]!, families };
  }

  /** The agent deletes nothing later: a removal is complete when its writes are. */
  async settle(): Promise<void> {}

  async stepAside(): Promise<void> {
    if (!this.held?.active) return;
    this.held.loadBalancer.detach();
    this.held.active = false;
  }

  async activeTraces(): Promise<string[]> {
    const { topology } = this.context;
    const uplink = topology.plan.worker.uplink;
    // Worker 1's uplink, and with DSR the other workers' where a held load balancer put programs.
    const places = [{ role: "worker", uplink }, ...(this.held?.loadBalancer.attachments.filter((a) => a.role !== "worker") ?? [])];
    const seen = new Set<string>();
    const filters = places.flatMap(({ role, uplink: dev }) => {
      if (seen.has(`${role}|${dev}`)) return [];
      seen.add(`${role}|${dev}`);
      return ["ingress", "egress"].flatMap((direction) => {
        // This dataplane's filters only: the hop probes (lab/hops/) share the uplink with every dataplane.
        const filters = topology.run(role, ["tc", "filter", "show", "dev", dev, direction, "pref", String(EBPF_DATAPLANE_PREF)]).trim();
        return filters === "" ? [] : [`a tc filter at ${dev} ${direction}: ${filters.split("\n")[0]}`];
      });
    });
    const sockets = this.held?.loadBalancer.sockets;
    const hooks = (sockets?.attached() ?? []).map((h) => `a ${h.attachType} hook (${h.name}) on ${sockets!.cgroup}`);
    return [...filters, ...hooks];
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

  /** Empties the conntrack and NAT maps of both families (every worker's), entry by entry in one bpftool batch per map. */
  flushConnections(): void {
    const loadBalancer = this.held?.loadBalancer;
    if (!loadBalancer) return;
    const mounts = [...new Set(loadBalancer.attachments.map((a) => a.bpffs))];
    for (const bpffs of mounts) {
      for (const family of LAB_FAMILIES) {
        for (const name of [LB_MAPS.conntrack[family], LB_MAPS.nat[family]]) {
          const map = loadBalancer.mapPath(name, bpffs);
          const entries = JSON.parse(run(["bpftool", "-j", "map", "dump", "pinned", map], { timeoutMs: BPFTOOL_TIMEOUT_MS })) as { key: string[] }[];
          if (entries.length === 0) continue;
          const batch = join(this.context.topology.runDir, "ct-flush.batch");
          const lines = entries.map((e) => `map delete pinned ${map} key hex ${e.key.map((b) => b.replace(/^0x/, "")).join(" ")}`);
          writeFileSync(batch, `${lines.join("\n")}\n`);
          run(["bpftool", "batch", "file", batch], { timeoutMs: BPFTOOL_TIMEOUT_MS });
          rmSync(batch, { force: true });
        }
      }
    }
  }

  async remove(): Promise<void> {
    const held = this.held;
    this.held = undefined;
    held?.loadBalancer.teardown();
  }
}

/** What changing the step costs, both families, on the project's 2-core host at a load of 5 to 9 (StepCosts). */
const STEP_COSTS: StepCosts = {
  // Medians over three runs of each bench/step-change.ts command (lab/wall-estimate.ts): the install
  // compiles and attaches the programs and fills the maps in one batch; a move writes the changed
  // Services entry by entry; parking detaches the programs, the maps stay.
  install: { fixedS: 1.1, perServiceS: 0.43e-3 },
  move: { fixedS: 0.3, perServiceS: 0.25e-3, removedPerServiceS: 0.16e-3 },
  resume: { fixedS: 0.08, perServiceS: 0 },
  park: { fixedS: 0.03, perServiceS: 0 },
  count: { fixedS: 0.01, perServiceS: 0.15e-3 },
};

export const ebpf: LabDataplaneModule = {
  name: "ebpf",
  hostProblem: ebpfHostProblem,
  stepCosts: STEP_COSTS,
  syncKinds: SYNC_KINDS,
  create: (context) => new EbpfLabDataplane(context),
};

/** The eBPF load balancer behind a lab dataplane, when it is the eBPF one and holds a step (for checks of its maps and programs). */
export function ebpfLoadBalancer(dataplane: LabDataplane): EbpfDataplane | undefined {
  return dataplane instanceof EbpfLabDataplane ? dataplane.loadBalancer : undefined;
}
