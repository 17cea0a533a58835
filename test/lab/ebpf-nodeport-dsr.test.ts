// The eBPF model on nodeport-remote with loadBalancer.mode dsr, on this kernel: worker 1 DNATs the
// client's request to worker 2's pod without SNAT and carries the frontend in an IPv4 option or an
// IPv6 destination option (dsr_set_opt4 / dsr_set_ext6); worker 2 reads it (handle_dsr_v4/v6) and
// gives the backend's reply the frontend as its source, so the reply goes from worker 2 through the
// router straight to the client, never across worker 1's uplink.
import ipaddr from "ipaddr.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Family } from "../../scenario/cidr.js";
import { echoProbe, startEchoListener, type EchoProtocol } from "../../lab/echo-probe.js";
import { setupEbpfDataplane, type EbpfDataplane } from "../../lab/dataplanes/ebpf/kernel.js";
import { LB_MAPS } from "../../lab/dataplanes/ebpf/service-maps.js";
import { run } from "../../lab/netns.js";
import { createTopology, findRunObjects, labHostProblem, type LabTopology } from "../../lab/topology.js";
import { fixtureServiceSet } from "./ebpf-fixtures.js";
import { countRouterForwards } from "./router-forward-counter.js";
import { bpfObjectGone, mounted } from "./bpf-objects.js";

const hostProblem = labHostProblem();
const FAMILIES = ["ipv4", "ipv6"] as const;
const ANY: Record<Family, string> = { ipv4: "0.0.0.0", ipv6: "::" };
// svc-0: nodePort 20000 -> targetPort 8000 on worker 2's pod.
const REMOTE = { nodePort: 20000, targetPort: 8000 };

describe.skipIf(hostProblem !== undefined)(`eBPF model, nodeport-remote with DSR, on this kernel${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  let topology: LabTopology;
  let dataplane: EbpfDataplane;
  const services = fixtureServiceSet({ nodePort: 1, clusterIp: 0, protocols: ["TCP", "UDP"] });

  beforeAll(() => {
    topology = createTopology({ workers: 2 });
    const worker2 = topology.plan.workers![1]!;
    dataplane = setupEbpfDataplane(topology, { services, backendOf: (spec) => (spec.name === "svc-0" ? worker2.pod : undefined), loadBalancerMode: "dsr" });
  });
  afterAll(() => {
    const prefix = topology?.prefix;
    topology?.destroy();
    if (prefix) expect(findRunObjects(prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
  });

  it("attaches the backend side of DSR to worker 2's uplink, with its own maps", () => {
    const worker2 = topology.plan.workers![1]!;
    const filters = (direction: string) => topology.run(worker2.role, ["tc", "filter", "show", "dev", worker2.uplink, direction]);
    expect(filters("ingress")).toMatch(/\[tc\/dsr-ingress\] direct-action .* name lb_dsr_ingress /);
    expect(filters("egress")).toMatch(/\[tc\/dsr-egress\] direct-action .* name lb_dsr_egress /);
    const mounts = [...new Set(dataplane.attachments.map((a) => a.bpffs))];
    expect(mounts).toHaveLength(2);
    for (const m of mounts) expect(mounted(m)).toBe(true);
  });

  describe.each(FAMILIES)("over %s", (family) => {
    it.each(["tcp", "udp"] as EchoProtocol[])(
      "%s: the receiver on worker 2 sees the client's address; the reply reaches the client from the NodePort without crossing worker 1's uplink",
      async (protocol) => {
        const node = topology.addresses.node[family];
        const listener = await startEchoListener(topology, "pod2", protocol, ANY[family], REMOTE.targetPort);
        const counter = countRouterForwards(topology);
        try {
          const result = echoProbe(topology, "client", protocol, node, REMOTE.nodePort);
          expect(result).toMatchObject({ ok: true, from: node, fromPort: REMOTE.nodePort });
          expect(await listener.seen(1)).toContainEqual({ address: topology.addresses.client[family], port: result.localPort });
          // Worker 2's replies went from the router straight to the client; nothing toward worker 1.
          const forwarded = counter.read();
          expect(forwarded.toWorker1).toBe(0);
          expect(forwarded.toClient).toBeGreaterThan(0);
        } finally {
          counter.remove();
          await listener.stop();
        }
      },
    );

    it("worker 2 learnt the frontend from the option: its NAT map holds worker 1's address and the NodePort; worker 1's holds no SNAT", () => {
      const worker2Fs = dataplane.attachments.find((a) => a.role === "worker2")!.bpffs;
      const dump = (bpffs: string) =>
        JSON.parse(run(["bpftool", "-j", "map", "dump", "pinned", dataplane.mapPath(LB_MAPS.nat[family], bpffs)])) as { value: string[] }[];
      const learnt = dump(worker2Fs);
      // TCP and UDP, one entry each (the reply's tuple -> the frontend).
      expect(learnt).toHaveLength(2);
      const bytes = family === "ipv4" ? 4 : 16;
      const node = topology.addresses.node[family];
      for (const e of learnt) {
        const value = Buffer.from(e.value.map((b) => Number.parseInt(b, 16)));
        expect(ipaddr.fromByteArray([...value.subarray(0, bytes)]).toString()).toBe(ipaddr.parse(node).toString());
        expect(value.readUInt16BE(bytes)).toBe(REMOTE.nodePort);
      }
      expect(dump(dataplane.bpffs)).toEqual([]);
    });
  });

  it("teardown removes the programs and maps of both workers and their bpffs mounts", async () => {
    const ids = dataplane.objectIds();
    expect(ids.programs).toHaveLength(4);
    expect(ids.maps).toHaveLength(20);
    const mounts = [...new Set(dataplane.attachments.map((a) => a.bpffs))];
    dataplane.teardown();
    for (const m of mounts) expect(mounted(m)).toBe(false);
    for (const id of ids.programs) expect(await bpfObjectGone("prog", id), `program ${id}`).toBe(true);
    for (const id of ids.maps) expect(await bpfObjectGone("map", id), `map ${id}`).toBe(true);
    const worker2 = topology.plan.workers![1]!;
    expect(topology.run(worker2.role, ["tc", "qdisc", "show", "dev", worker2.uplink])).not.toMatch(/clsact/);
  });
});
