// The lab's dataplane modules behind their one interface, on this kernel: each serves a NodePort once
// set up, none once it steps aside (what it installed parked, not removed), the same Services again
// once resumed; the backend finds a dataplane left on the packet path, whichever it is, and a new
// Service count removes what the others parked.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LAB_DATAPLANES } from "../../lab/dataplanes/index.js";
import { echoProbe, startEchoListener } from "../../lab/echo-probe.js";
import { kubeProxyNftablesStates } from "../../lab/dataplanes/nftables/kernel.js";
import { labHostProblem } from "../../lab/topology.js";
import { heldServices, LabBackend, labProblem, type PreparedStep } from "../../backends/lab.js";
import { DATAPLANES } from "../../scenario/schema.js";

const hostProblem = labHostProblem() ?? labProblem();
const SERVICES = 50;

describe("the lab's dataplane registry", () => {
  it("has one module per dataplane of the scenario, under its own name", () => {
    expect(Object.keys(LAB_DATAPLANES).sort()).toEqual([...DATAPLANES].sort());
    for (const d of DATAPLANES) expect(LAB_DATAPLANES[d].name).toBe(d);
  });
});

describe.skipIf(hostProblem !== undefined)(`the lab's dataplane modules on this kernel${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  let backend: LabBackend;
  const prepared: PreparedStep[] = [];
  const last = () => prepared.at(-1)!;

  /** Whether a new TCP connection from the client through the first NodePort Service's NodePort reaches the pod. */
  const nodePortAnswers = async (step: PreparedStep): Promise<boolean | string> => {
    const svc = step.serviceSet.scaled.find((s) => s.type === "NodePort")!.ports[0]!;
    const listener = await startEchoListener(step.topology, "pod", "tcp", "0.0.0.0", svc.targetPort);
    try {
      const r = echoProbe(step.topology, "client", "tcp", step.topology.addresses.node.ipv4, svc.nodePort!, 5000);
      return r.ok ? true : (r.error ?? "failed");
    } finally {
      await listener.stop();
    }
  };

  beforeAll(async () => {
    backend = await LabBackend.start({ linkMbps: 0, onPrepared: (step) => void prepared.push(step) });
  }, 120_000);
  afterAll(() => backend?.teardown());

  it.each(DATAPLANES)("%s: serves the NodePort once set up, not once it steps aside, and again once resumed, holding the same all along", async (dataplane) => {
    const readiness = await backend.prepare({ dataplane, services: SERVICES });
    const step = last();
    expect(step.sync).toBe("full");
    // What it forwards, read from the kernel: every ClusterIP of the set, the receiver's too, and nothing else.
    const clusterIps = [step.serviceSet.receiver, ...step.serviceSet.scaled].flatMap((svc) => Object.values(svc.clusterIPs));
    const forwarded = await step.module.forwardedClusterIps();
    expect(new Set(forwarded.filter((a) => clusterIps.includes(a)))).toEqual(new Set(clusterIps));
    expect(heldServices(forwarded, step.serviceSet, backend.scenario.kubernetes.serviceSubnets)).toEqual({ ipv4: SERVICES, ipv6: SERVICES });
    expect(readiness.programmedServices).toEqual({ ipv4: SERVICES, ipv6: SERVICES });
    expect(readiness.programmedAfterS).toBeGreaterThan(0);
    expect(await nodePortAnswers(step)).toBe(true);
    const counts = await step.module.counts();
    expect(Object.values(counts).length).toBeGreaterThan(0);
    expect(Object.values(counts).every((n) => Number.isInteger(n) && n >= 0)).toBe(true);
    for (const family of ["ipv4", "ipv6"]) expect(Object.entries(counts).some(([k, n]) => k.startsWith(`${family} `) && n > 0), family).toBe(true);
    // Every Service has its endpoint and no source ranges: kube-proxy's no-endpoint and firewall sets stay empty.
    for (const [k, n] of Object.entries(counts)) if (/no-endpoint|firewall/.test(k)) expect(n, k).toBe(0);
    expect((await step.module.activeTraces()).length).toBeGreaterThan(0);

    await step.module.stepAside();
    expect(await step.module.activeTraces()).toEqual([]);
    expect(await nodePortAnswers(step)).toMatch(/ECONNREFUSED/);
    expect(await step.module.counts()).toEqual(counts);

    await backend.prepare({ dataplane, services: SERVICES });
    expect(last().sync).toBe("none");
    expect(await nodePortAnswers(last())).toBe(true);
    expect(await last().module.counts()).toEqual(counts);
  });

  it("refuses a step while another dataplane is on the packet path, naming it, whatever left it there", async () => {
    const worker = backend.topology.namespace("worker");
    // A jump into KUBE-SERVICES that no module made (a crashed run, another tool).
    const jump = ["iptables-legacy", "-w", "60", "-t", "nat", "-I", "PREROUTING", "-j", "KUBE-SERVICES"];
    backend.topology.run("worker", jump);
    try {
      await expect(backend.prepare({ dataplane: "ebpf", services: SERVICES })).rejects.toThrow(
        /^ebpf step: the iptables dataplane is still on the packet path: kube-proxy's iptables rules \(legacy, ipv4, nat: 1 jump\(s\) into KUBE-\* chains\)/,
      );
    } finally {
      backend.topology.run("worker", jump.map((a) => (a === "-I" ? "-D" : a)));
    }
    // kube-proxy's ip6 table (parked by the nftables module) woken behind the lab's back.
    expect((await kubeProxyNftablesStates(worker)).ipv6).toBe("dormant");
    backend.topology.run("worker", ["nft", "add", "table", "ip6", "kube-proxy", '{ comment "woken elsewhere" ; }']);
    try {
      await expect(backend.prepare({ dataplane: "iptables", services: SERVICES })).rejects.toThrow(
        /^iptables step: the nftables dataplane is still on the packet path: kube-proxy's nftables table \(ipv6\)/,
      );
    } finally {
      backend.topology.run("worker", ["nft", "add", "table", "ip6", "kube-proxy", "{ flags dormant ; }"]);
    }
    await backend.prepare({ dataplane: "iptables", services: SERVICES });
    expect(await nodePortAnswers(last())).toBe(true);
  });

  it("moves a dataplane to another Service count by a partial sync, leaving the others parked at theirs", async () => {
    const worker = backend.topology.namespace("worker");
    expect(await kubeProxyNftablesStates(worker)).toEqual({ ipv4: "dormant", ipv6: "dormant" });
    await backend.prepare({ dataplane: "ebpf", services: 10 });
    expect(last().sync).toBe("partial");
    expect(await kubeProxyNftablesStates(worker)).toEqual({ ipv4: "dormant", ipv6: "dormant" });
    expect(await nodePortAnswers(last())).toBe(true);
    await backend.prepare({ dataplane: "nftables", services: 10 });
    expect(last().sync).toBe("partial");
    expect(await nodePortAnswers(last())).toBe(true);
    expect((await last().module.counts())["ipv4 service-nodeports elements"]).toBe(10 + 6);
  });
});
