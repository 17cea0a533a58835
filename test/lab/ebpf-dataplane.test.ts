import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { endianness, tmpdir } from "node:os";
import { join } from "node:path";
import ipaddr from "ipaddr.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Family } from "../../scenario/cidr.js";
import { echoProbe, startEchoListener, type EchoProtocol } from "../../lab/echo-probe.js";
import { setupEbpfDataplane, type EbpfDataplane } from "../../lab/dataplanes/ebpf/kernel.js";
import { run } from "../../lab/netns.js";
import { createTopology, labHostProblem, type LabTopology } from "../../lab/topology.js";
import type { ServiceSet } from "../../workloads/service-model.js";
import { bpfObjectGone, mounted } from "./bpf-objects.js";
import { fixtureServiceSet, RECEIVER_PORTS } from "./ebpf-fixtures.js";

const hostProblem = labHostProblem();
const FAMILIES = ["ipv4", "ipv6"] as const;
const ANY: Record<Family, string> = { ipv4: "0.0.0.0", ipv6: "::" };
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

// bpftool prints BTF-formatted integers in host order; __be fields need their bytes read back.
const LE = endianness() === "LE";
function beBytes(value: number, size: 2 | 4): Buffer {
  const b = Buffer.alloc(size);
  if (size === 2) (LE ? b.writeUInt16LE(value) : b.writeUInt16BE(value));
  else (LE ? b.writeUInt32LE(value) : b.writeUInt32BE(value));
  return b;
}
const addressOf = (v: number | number[]) => ipaddr.fromByteArray(Array.isArray(v) ? v : [...beBytes(v, 4)]).toString();
const portOf = (v: number) => beBytes(v, 2).readUInt16BE();

interface Dumped<K, V> {
  formatted: { key: K; value: V };
}
type SvcKey = { address: number | number[]; dport: number; backend_slot: number; proto: number; scope: number };
type SvcValue = { backend_id: number; count: number; rev_nat_index: number; flags: number };
type BackendValue = { address: number | number[]; port: number; proto: number };
type RevNatValue = { address: number | number[]; port: number };

function dump<K, V>(dataplane: EbpfDataplane, map: string): Dumped<K, V>[] {
  return JSON.parse(run(["bpftool", "-j", "map", "dump", "pinned", dataplane.mapPath(map)])) as Dumped<K, V>[];
}

/** The kernel's maps of one family, read back through the program's BTF, as "frontend -> backend (reverse NAT)" lines. */
function frontendsInKernel(dataplane: EbpfDataplane, family: Family): string[] {
  const v = family === "ipv4" ? "4" : "6";
  const services = dump<SvcKey, SvcValue>(dataplane, `lb${v}_services`).map((e) => e.formatted);
  const backends = new Map(dump<number, BackendValue>(dataplane, `lb${v}_backends`).map((e) => [e.formatted.key, e.formatted.value]));
  const revNat = new Map(dump<number, RevNatValue>(dataplane, `lb${v}_reverse_nat`).map((e) => [e.formatted.key, e.formatted.value]));
  const proto = (n: number) => ({ 6: "TCP", 17: "UDP" })[n] ?? `proto ${n}`;
  const lines: string[] = [];
  for (const master of services.filter((s) => s.key.backend_slot === 0)) {
    const frontend = `${addressOf(master.key.address)}:${portOf(master.key.dport)}/${proto(master.key.proto)} scope ${master.key.scope} flags ${master.value.flags}`;
    for (let slot = 1; slot <= master.value.count; slot++) {
      const entry = services.find((s) => s.key.backend_slot === slot && s.key.address.toString() === master.key.address.toString() &&
        s.key.dport === master.key.dport && s.key.proto === master.key.proto);
      const backend = entry && backends.get(entry.value.backend_id);
      const nat = revNat.get(master.value.rev_nat_index);
      lines.push(`${frontend} -> ${backend ? `${addressOf(backend.address)}:${portOf(backend.port)}/${proto(backend.proto)}` : "missing"}` +
        ` (reply from ${nat ? `${addressOf(nat.address)}:${portOf(nat.port)}` : "missing"})`);
    }
  }
  return lines.sort();
}

/** What the maps must hold for a ServiceSet, derived from the Services directly. */
function expectedFrontends(set: ServiceSet, topology: LabTopology, family: Family): string[] {
  const lines: string[] = [];
  const node = topology.addresses.node[family];
  const pod = topology.addresses.pod[family];
  for (const svc of [set.receiver, ...set.scaled]) {
    for (const p of svc.ports) {
      const backend = `${pod}:${p.targetPort}/${p.protocol}`;
      const cip = svc.clusterIPs[family]!;
      lines.push(`${cip}:${p.port}/${p.protocol} scope 0 flags 0 -> ${backend} (reply from ${cip}:${p.port})`);
      if (svc.type === "NodePort") {
        // NODEPORT | LOCAL_SCOPE | ROUTABLE
        lines.push(`${node}:${p.nodePort}/${p.protocol} scope 0 flags 70 -> ${backend} (reply from ${node}:${p.nodePort})`);
      }
    }
  }
  return lines.sort();
}

function clsactOn(topology: LabTopology): boolean {
  return /qdisc clsact/.test(topology.run("worker", ["tc", "qdisc", "show", "dev", topology.plan.worker.uplink]));
}

describe.skipIf(hostProblem !== undefined)(`eBPF dataplane on this kernel${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  let topology: LabTopology;
  let dataplane: EbpfDataplane;
  // 3 NodePort and 4 ClusterIP Services, each with a TCP and a UDP port; svc-i: nodePort 20000+i -> targetPort 8000+i.
  const services = fixtureServiceSet({ nodePort: 3, clusterIp: 4, protocols: ["TCP", "UDP"] });

  beforeAll(() => {
    topology = createTopology();
    dataplane = setupEbpfDataplane(topology, { services });
  });
  afterAll(() => topology?.destroy());

  it("attaches the load balancer at the uplink's tc ingress and egress, and no iptables rule", () => {
    const filters = (direction: string) => topology.run("worker", ["tc", "filter", "show", "dev", topology.plan.worker.uplink, direction]);
    expect(filters("ingress")).toMatch(/\[tc\/nodeport\] direct-action .* name lb_nodeport /);
    expect(filters("egress")).toMatch(/\[tc\/revnat\] direct-action .* name lb_revnat /);
    for (const save of ["iptables-save", "ip6tables-save"]) {
      expect(topology.run("worker", [save])).not.toMatch(/KUBE-/);
    }
    expect(mounted(dataplane.bpffs)).toBe(true);
  });

  it.each(FAMILIES)("holds exactly the frontends, backends and reverse NAT of the Services (%s), as the kernel reads them", (family) => {
    expect(frontendsInKernel(dataplane, family)).toEqual(expectedFrontends(services, topology, family));
    // 3 receiver ports x 2 frontends + 3 NodePort Services x 2 ports x 2 frontends + 4 ClusterIP x 2 ports; two entries each.
    expect(dataplane.serviceMapEntries()[family]).toBe(2 * (3 * 2 + 3 * 2 * 2 + 4 * 2));
  });

  describe.each(FAMILIES)("NodePort traffic over %s", (family) => {
    it.each(["tcp", "udp"] as EchoProtocol[])("%s to nodeIP:nodePort reaches the pod on the targetPort and the reply comes from nodeIP:nodePort", async (protocol) => {
      const listener = await startEchoListener(topology, "pod", protocol, ANY[family], 8002);
      try {
        const result = echoProbe(topology, "client", protocol, topology.addresses.node[family], 20002);
        expect(result).toMatchObject({ ok: true, from: topology.addresses.node[family], fromPort: 20002 });
        // externalTrafficPolicy=Local: the pod sees the client's own address and port.
        expect(await listener.seen(1)).toContainEqual({ address: topology.addresses.client[family], port: result.localPort });
      } finally {
        await listener.stop();
      }
    });

    it("carries D-ITG flows (UDP and TCP, round-trip meter) through the receiver's NodePorts", async () => {
      const dir = mkdtempSync(join(tmpdir(), `${topology.prefix}-ditg-`));
      const receiver = topology.spawn("pod", ["ITGRecv", "-a", ANY[family]], { stdio: "ignore" });
      try {
        const [sig, data] = [RECEIVER_PORTS[0]!, RECEIVER_PORTS[1]!];
        // No TCP probe of the signaling port (a reset kills ITGRecv): watch the socket table instead, until ITGRecv
        // listens or exits (no deadline, which a loaded host's start-up would lose to).
        while (!new RegExp(`:${sig.targetPort}\\s`).test(topology.run("pod", ["ss", "-H", "-l", "-t", "-n"]))) {
          if (receiver.exitCode !== null || receiver.signalCode !== null) throw new Error(`ITGRecv exited (${receiver.exitCode ?? receiver.signalCode}) before it listened`);
          await wait(50);
        }
        for (const protocol of ["UDP", "TCP"]) {
          const log = join(dir, `${family}-${protocol}.log`);
          const sent = topology.exec("client", [
            "ITGSend", "-a", topology.addresses.node[family], "-Sdp", String(sig.nodePort), "-rp", String(data.nodePort),
            "-T", protocol, "-C", "100", "-c", "512", "-z", "100", "-t", "10000", "-m", "rttm", "-l", log,
          ], { timeoutMs: 30_000 });
          expect(sent.stdout + sent.stderr, protocol).toMatch(/Finished sending packets of flow ID: 1/);
          expect(sent.stdout + sent.stderr, protocol).not.toMatch(/error/i);
          const decoded = run(["ITGDec", log]);
          // 100 packets; rttm logs only packets whose echo came back.
          expect(Number(/Total packets\s*=\s*(\d+)/.exec(decoded)?.[1]), `${protocol}: ${decoded}`).toBe(100);
          expect(decoded).toContain(`To    ${topology.addresses.node[family]}:${data.nodePort}`);
        }
      } finally {
        receiver.kill("SIGTERM");
        await new Promise((r) => (receiver.exitCode === null ? receiver.once("exit", r) : r(null)));
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("lets non-Service traffic through untouched", async () => {
      const listener = await startEchoListener(topology, "pod", "tcp", ANY[family], 8002);
      try {
        // Straight to the pod address: routed, not translated.
        expect(echoProbe(topology, "client", "tcp", topology.addresses.pod[family], 8002)).toMatchObject({
          ok: true,
          from: topology.addresses.pod[family],
          fromPort: 8002,
        });
      } finally {
        await listener.stop();
      }
      // A node port without a Service reaches the node's own stack, which refuses it.
      expect(echoProbe(topology, "client", "tcp", topology.addresses.node[family], 20999).error).toMatch(/ECONNREFUSED/);
    });

    it("drops traffic from outside to a ClusterIP, as Cilium does", async () => {
      const clusterIp = services.scaled[3]!; // the first ClusterIP Service, targetPort 8003
      const address = clusterIp.clusterIPs[family]!;
      const block = family === "ipv4" ? "198.19.128.0/17" : "2001:2:0:ff::/64";
      topology.run("client", ["ip", "route", "replace", block, "via", topology.plan.links.access.gateway.addresses[family]]);
      topology.run("router", ["ip", "route", "replace", block, "via", topology.addresses.node[family]]);
      const listener = await startEchoListener(topology, "pod", "tcp", ANY[family], 8003);
      try {
        // Without the drop the worker would answer "network unreachable" at once (it has no route to the block).
        expect(echoProbe(topology, "client", "tcp", address, 80, 1500).error).toBe("timeout");
        expect(listener.peers()).toEqual([]);
      } finally {
        await listener.stop();
        topology.run("client", ["ip", "route", "del", block]);
        topology.run("router", ["ip", "route", "del", block]);
      }
    });
  });

  it("teardown removes filters, clsact, pinned maps, programs and the bpffs mount, and leaves routing intact", async () => {
    const ids = dataplane.objectIds();
    expect(ids.programs).toHaveLength(2);
    expect(ids.maps).toHaveLength(10);
    dataplane.teardown();
    expect(clsactOn(topology)).toBe(false);
    expect(mounted(dataplane.bpffs)).toBe(false);
    expect(existsSync(dataplane.bpffs)).toBe(false);
    for (const id of ids.programs) expect(await bpfObjectGone("prog", id), `program ${id}`).toBe(true);
    for (const id of ids.maps) expect(await bpfObjectGone("map", id), `map ${id}`).toBe(true);
    const listener = await startEchoListener(topology, "pod", "udp", "0.0.0.0", 8002);
    try {
      // The NodePort is gone with the dataplane: no reply. The pod itself still answers.
      expect(echoProbe(topology, "client", "udp", topology.addresses.node.ipv4, 20002, 1000).ok).toBe(false);
      expect(echoProbe(topology, "client", "udp", topology.addresses.pod.ipv4, 8002).ok).toBe(true);
    } finally {
      await listener.stop();
    }
  });

  it("rejects a map size that cannot hold the Services before creating anything", () => {
    expect(() => setupEbpfDataplane(topology, { services, lbMapMax: 10 })).toThrow(/^lbMapMax: 10 is too small; the ipv4 service map needs 52 entries/);
    expect(clsactOn(topology)).toBe(false);
    expect(existsSync(join(topology.runDir, "bpffs"))).toBe(false);
  });

  it("holds exactly the expected number of entries for 2600 Services, and serves the last NodePort", async () => {
    const large = fixtureServiceSet({ nodePort: 2000, clusterIp: 600 });
    const scaled = setupEbpfDataplane(topology, { services: large });
    try {
      // Receiver: 3 ports x (ClusterIP + NodePort); 2000 NodePort Services x 2 frontends; 600 ClusterIP; slot 0 + 1 backend each.
      const perFamily = 2 * (3 * 2 + 2000 * 2 + 600);
      expect(scaled.serviceMapEntries()).toEqual({ ipv4: perFamily, ipv6: perFamily });
      for (const family of FAMILIES) {
        const listener = await startEchoListener(topology, "pod", "tcp", ANY[family], 8000 + 1999);
        try {
          expect(echoProbe(topology, "client", "tcp", topology.addresses.node[family], 20000 + 1999)).toMatchObject({
            ok: true,
            fromPort: 20000 + 1999,
          });
        } finally {
          await listener.stop();
        }
      }
    } finally {
      scaled.teardown();
    }
  });
});
