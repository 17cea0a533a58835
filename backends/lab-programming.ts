// The programming profile in the lab: Service changes written by the step's dataplane as its control
// plane writes them (LabDataplane.program: kube-proxy's proxiers, the Cilium agent's map writes), each
// timed twice: the write (the control plane's sync and the kernel's commit of it) and the time from
// the start of the change until the packets see it, by a probe in the client namespace that opens a
// new connection to the changed Service's NodePort every millisecond (measure/programming-probe.c).
//
// One run, at the step's Service count N, in the run's family (the other family is written after it,
// untimed, as kube-proxy's other proxier would):
//   remove-one   the last NodePort Service of the step goes (the probe: answered, then refused)
//   add-one      it comes back, a new Service with a ready endpoint (refused, then answered)
//   remove-one   it goes again
//   add-100      it comes back with the sweep's next 99 Services, at once
//                (then the 100 go again, untimed, and the control plane's next periodic sync runs)
//   full-sync    the control plane restarts, the Service created again while it was away:
//                kube-proxy's first sync after a restart, the Cilium agent restoring its maps
//   cold-start   (settings.coldStart, first repetition) everything written from nothing, as on a new node; and
//   cold-start-split where the dataplane offers it (nftables: kubernetes issue #139328); not probed
// and leaves the step's Services as they were. A listener in the pod namespace answers on the
// Services' target port. The probe judges each attempt by its own first SYN from its own source port
// (see programming-probe.c), so neither a retransmission nor a conntrack entry made before the
// change can make it late or early.
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { listenerArgs, probeArgs, probeCompileCommand, ProbeSession, PROBE_SOURCE_PORTS, type ProbeTarget } from "../measure/programming-probe.js";
import type { ChangeMeasurement, MeasuredChange, ProgrammingBackend, ProgrammingSettings, RunKey } from "../measure/types.js";
import { LAB_DATAPLANES, type LabDataplane, type SyncKind } from "../lab/dataplanes/index.js";
import type { ServiceEndpoints } from "../lab/dataplanes/kube-proxy-inputs.js";
import { run } from "../lab/netns.js";
import type { LabTopology } from "../lab/topology.js";
import type { Dataplane, Scenario } from "../scenario/schema.js";
import type { ServiceSet } from "../workloads/service-model.js";
import { programmingServices } from "../workloads/programming-services.js";

/** The step a lab backend holds: its dataplane and the Services it serves. */
export interface HeldStep {
  readonly dataplane: string;
  readonly services: number;
  readonly module: LabDataplane;
  readonly serviceSet: ServiceSet;
  readonly endpoints: readonly ServiceEndpoints[];
}

/** Pure: the Services of one programming run at a step, with their endpoints: the probed one, the step without it, and the step with the add-100 Services. */
export function programmingChanges(
  scenario: Pick<Scenario, "kubernetes" | "families" | "receiver" | "sweep" | "workloads" | "services">,
  step: Pick<HeldStep, "serviceSet" | "endpoints">,
  addMany: number,
): { probed: ServiceEndpoints; without: ServiceEndpoints[]; withMany: ServiceEndpoints[] } {
  const { probed: spec, more } = programmingServices(scenario, step.serviceSet, addMany);
  const probed = step.endpoints.find((e) => e.service === spec);
  if (!probed) throw new Error(`programming: Service ${spec.name} is not among the step's endpoints`);
  return {
    probed,
    without: step.endpoints.filter((e) => e !== probed),
    withMany: [...step.endpoints, ...more.map((service) => ({ service, endpoints: probed.endpoints }))],
  };
}

export class LabProgramming implements ProgrammingBackend {
  private binary: string | undefined;
  private listener: { port: number; child: ChildProcess } | undefined;
  /** Where the probes' source-port cycle goes on: no port comes back within a minute at 1000 attempts a second. */
  private nextPort: number = PROBE_SOURCE_PORTS.first;

  constructor(
    private readonly topology: LabTopology,
    private readonly scenario: Scenario,
    /** The step prepared now. */
    private readonly held: () => HeldStep | undefined,
    /** Called after a run changed the step's dataplane, whether it ended well or not. */
    private readonly changed: (dataplane: Dataplane) => void = () => undefined,
  ) {}

  private build(): string {
    if (this.binary) return this.binary;
    const dir = join(this.topology.runDir, "programming");
    mkdirSync(dir, { recursive: true });
    const binary = join(dir, "programming-probe");
    if (!existsSync(binary)) run(probeCompileCommand(binary));
    return (this.binary = binary);
  }

  /** A listener on the Services' target port in the pod namespace, started once. */
  private async listen(port: number): Promise<void> {
    if (this.listener?.port === port && this.listener.child.exitCode === null) return;
    this.stop();
    const child = this.topology.spawn("pod", [this.build(), ...listenerArgs(port)], { stdio: ["ignore", "pipe", "pipe"] });
    this.listener = { port, child };
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout! }).once("line", (line) => (line === "listening" ? resolve() : reject(new Error(`programming listener: ${line}`))));
      child.once("exit", (code) => reject(new Error(`programming listener on port ${port} exited (${code}): ${stderr.trim()}`)));
    });
  }

  /** Stops the listener. */
  stop(): void {
    const child = this.listener?.child;
    this.listener = undefined;
    if (child && child.exitCode === null) child.kill("SIGTERM");
  }

  async runChanges(key: RunKey, settings: ProgrammingSettings): Promise<ChangeMeasurement[]> {
    const step = this.held();
    if (!step || step.dataplane !== key.dataplane || step.services !== key.services) {
      throw new Error(`programming run ${key.dataplane}/${key.services} asked for, but the lab holds ${step ? `${step.dataplane} with ${step.services} Services` : "nothing"}; prepare() the step first`);
    }
    const { probed, without, withMany } = programmingChanges(this.scenario, step, settings.addMany);
    await this.listen(probed.service.ports[0]!.targetPort);
    const out: ChangeMeasurement[] = [];
    try {
      await this.changes(step, key, settings, { probed, without, withMany }, out);
    } catch (error) {
      // The next runs of the step measure its own Services: put them back before failing.
      await step.module.program({ endpoints: step.endpoints, how: "partial", family: key.family }).catch(() => undefined);
      throw error;
    } finally {
      this.changed(step.module.name);
    }
    return out;
  }

  private async changes(
    step: HeldStep,
    key: RunKey,
    settings: ProgrammingSettings,
    { probed, without, withMany }: ReturnType<typeof programmingChanges>,
    out: ChangeMeasurement[],
  ): Promise<void> {
    const port = probed.service.ports[0]!;
    const target = { address: this.topology.addresses.node[key.family], port: port.nodePort! };
    const probe = async (change: MeasuredChange, endpoints: readonly ServiceEndpoints[], how: SyncKind, expect: ProbeTarget["expect"]) => {
      out.push(await this.measure(step.module, { change, sequence: out.length, endpoints, how, family: key.family }, { ...target, expect }, settings));
    };
    await probe("remove-one", without, "partial", "refused");
    await probe("add-one", step.endpoints, "partial", "answered");
    await probe("remove-one", without, "partial", "refused");
    await probe("add-100", withMany, "partial", "answered");
    await step.module.program({ endpoints: without, how: "partial", family: key.family });
    // The control plane stops after its next periodic sync, and restarts once the Service was created again.
    await step.module.settle();
    await probe("full-sync", step.endpoints, "restart", "answered");
    if (settings.coldStart && key.repetition === 0) {
      const kinds = LAB_DATAPLANES[step.module.name].syncKinds;
      const cold = async (change: MeasuredChange, how: SyncKind) => {
        const { syncS, commitS, writes } = await step.module.program({ endpoints: step.endpoints, how, family: key.family });
        out.push({ change, sequence: out.length, services: step.endpoints.length - 1, syncS, commitS, writes });
      };
      await cold("cold-start", "cold");
      if (kinds.includes("cold-split")) await cold("cold-start-split", "cold-split");
    }
  }

  /** One probed change: the probe sees the state before, the change is written, the probe waits for the state after. */
  private async measure(
    module: LabDataplane,
    change: { change: MeasuredChange; sequence: number; endpoints: readonly ServiceEndpoints[]; how: SyncKind; family: RunKey["family"] },
    target: ProbeTarget,
    settings: ProgrammingSettings,
  ): Promise<ChangeMeasurement> {
    const args = probeArgs(target, { rate: settings.probesPerSecond, startPort: this.nextPort, confirmMs: settings.confirmMs, maxS: settings.timeoutS });
    const child = this.topology.spawn("client", [this.build(), ...args], { stdio: ["pipe", "pipe", "pipe"] });
    try {
      const session = new ProbeSession({ stdout: child.stdout!, stderr: child.stderr, stdin: child.stdin, once: (e, f) => child.once(e, f) });
      await session.ready;
      const start = process.hrtime.bigint();
      const { syncS, commitS, writes } = await module.program({ endpoints: change.endpoints, how: change.how, family: change.family });
      const result = await session.result;
      this.nextPort = result.nextPort;
      if (!result.changed) {
        throw new Error(`${change.change}: no probe through ${target.address}:${target.port} was ${target.expect} within ${settings.timeoutS} s of the change`);
      }
      return {
        change: change.change,
        sequence: change.sequence,
        // The receiver's Service is one of them; the step counts the scaled ones.
        services: change.endpoints.length - 1,
        syncS,
        commitS,
        writes,
        programmedS: Number(result.changed.seenNs - start) / 1e9,
        probes: { sent: result.sent, flaps: result.flaps, timeouts: result.timeouts },
      };
    } finally {
      child.stdin?.end();
      if (child.exitCode === null) child.kill("SIGTERM");
    }
  }
}
