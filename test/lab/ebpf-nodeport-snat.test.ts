// The eBPF model on nodeport-remote with loadBalancer.mode snat (Cilium's default), on this kernel:
// a NodePort of worker 1 whose only backend is a pod on worker 2. Worker 1 DNATs to the backend and
// SNATs to its own address, keeping the client's port when it is free; the reply comes back to
// worker 1, is reverse-translated there and reaches the client from the NodePort frontend. A local
// backend in the same maps keeps the client's address (the choice comes from the node's pod block).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Family } from "../../scenario/cidr.js";
import { echoProbe, startEchoListener, type EchoProtocol } from "../../lab/echo-probe.js";
import { setupEbpfDataplane, type EbpfDataplane } from "../../lab/dataplanes/ebpf/kernel.js";
import { LB_MAPS } from "../../lab/dataplanes/ebpf/service-maps.js";
import { run } from "../../lab/netns.js";
import { createTopology, findRunObjects, labHostProblem, type LabTopology } from "../../lab/topology.js";
import { fixtureServiceSet } from "./ebpf-fixtures.js";
import { countRouterForwards } from "./router-forward-counter.js";

const hostProblem = labHostProblem();
const FAMILIES = ["ipv4", "ipv6"] as const;
const ANY: Record<Family, string> = { ipv4: "0.0.0.0", ipv6: "::" };
// svc-0: nodePort 20000 -> targetPort 8000 on worker 2's pod; svc-1: nodePort 20001 -> 8001 on worker 1's pod.
const REMOTE = { nodePort: 20000, targetPort: 8000 };
const LOCAL = { nodePort: 20001, targetPort: 8001 };

describe.skipIf(hostProblem !== undefined)(`eBPF model, nodeport-remote with SNAT, on this kernel${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  let topology: LabTopology;
  let dataplane: EbpfDataplane;
  const services = fixtureServiceSet({ nodePort: 2, clusterIp: 0, protocols: ["TCP", "UDP"] });

  beforeAll(() => {
    topology = createTopology({ workers: 2 });
    const worker2 = topology.plan.workers![1]!;
    dataplane = setupEbpfDataplane(topology, { services, backendOf: (spec) => (spec.name === "svc-0" ? worker2.pod : undefined) });
  });
  afterAll(() => {
    const prefix = topology?.prefix;
    topology?.destroy();
    if (prefix) expect(findRunObjects(prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
  });

  describe.each(FAMILIES)("over %s", (family) => {
    it.each(["tcp", "udp"] as EchoProtocol[])(
      "%s: the receiver on worker 2 sees worker 1's address, the client's port kept; the reply comes back through worker 1 from the NodePort",
      async (protocol) => {
        const node = topology.addresses.node[family];
        const listener = await startEchoListener(topology, "pod2", protocol, ANY[family], REMOTE.targetPort);
        const counter = countRouterForwards(topology);
        try {
          const result = echoProbe(topology, "client", protocol, node, REMOTE.nodePort);
          expect(result).toMatchObject({ ok: true, from: node, fromPort: REMOTE.nodePort });
          // The client's ephemeral port is inside the SNAT range (32768-65535) and free: kept.
          expect(await listener.seen(1)).toContainEqual({ address: node, port: result.localPort });
          expect(listener.peers().map((p) => p.address)).not.toContain(topology.addresses.client[family]);
          // The backend answered worker 1 (its address is the source it saw), never the client directly.
          const forwarded = counter.read();
          expect(forwarded.toWorker1).toBeGreaterThan(0);
          expect(forwarded.toClient).toBe(0);
        } finally {
          counter.remove();
          await listener.stop();
        }
      },
    );

    it("a local backend in the same maps keeps the client's address (not SNATed)", async () => {
      const node = topology.addresses.node[family];
      const listener = await startEchoListener(topology, "pod", "tcp", ANY[family], LOCAL.targetPort);
      try {
        const result = echoProbe(topology, "client", "tcp", node, LOCAL.nodePort);
        expect(result).toMatchObject({ ok: true, from: node, fromPort: LOCAL.nodePort });
        expect(await listener.seen(1)).toContainEqual({ address: topology.addresses.client[family], port: result.localPort });
      } finally {
        await listener.stop();
      }
    });

    it("remembers each remote flow in the SNAT map, both ways (snat_v4_new_mapping's two entries)", () => {
      const entries = JSON.parse(run(["bpftool", "-j", "map", "dump", "pinned", dataplane.mapPath(LB_MAPS.nat[family])])) as {
        formatted: { key: { flags: number }; value: { to_port: number } };
      }[];
      const out = entries.filter((e) => e.formatted.key.flags === 0).length;
      const back = entries.filter((e) => e.formatted.key.flags === 1).length;
      // The two remote flows of this family so far (TCP, UDP); the local backend's flow has none.
      expect({ out, back }).toEqual({ out: 2, back: 2 });
    });
  });
});
