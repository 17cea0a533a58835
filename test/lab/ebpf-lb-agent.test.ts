// The Cilium agent model's map writes: the order of pkg/service and pkg/maps/lbmap (1.17), checked as
// what a packet could see between any two writes, and its ids across changes.
import { describe, expect, it } from "vitest";
import { LbMapAgent, writerBatch, type MapOperation } from "../../lab/dataplanes/ebpf/lb-agent.js";
import { parseWriterReply } from "../../lab/dataplanes/ebpf/kernel.js";
import { encodeServiceKey, planServiceMaps, planServiceMapsFor, type ServiceMapPlan } from "../../lab/dataplanes/ebpf/service-maps.js";
import type { ServiceSpec } from "../../workloads/service-model.js";
import { fixtureServiceSet } from "./ebpf-fixtures.js";

const endpoints = {
  node: { ipv4: "198.18.1.2", ipv6: "2001:2:0:20::2" },
  pod: { ipv4: "198.18.2.2", ipv6: "2001:2:0:40::2" },
};
const set = fixtureServiceSet({ nodePort: 3, clusterIp: 2 });
const services = [set.receiver, ...set.scaled];
const planOf = (specs: readonly ServiceSpec[]) => planServiceMapsFor(specs.map((spec) => ({ spec, where: spec.name })), endpoints);

/** The maps after each write, as hex key -> hex value, per map. */
class Maps {
  readonly maps = new Map<string, Map<string, string>>();
  apply(op: MapOperation): void {
    const m = this.maps.get(op.map) ?? new Map<string, string>();
    this.maps.set(op.map, m);
    const key = op.key.toString("hex");
    if (op.op === "update") m.set(key, op.value!.toString("hex"));
    else if (!m.delete(key)) throw new Error(`delete of a missing entry of ${op.map}: ${key}`);
  }
  get(map: string, key: Buffer): Buffer | undefined {
    const v = this.maps.get(map)?.get(key.toString("hex"));
    return v === undefined ? undefined : Buffer.from(v, "hex");
  }
}

/**
 * What the datapath finds for every frontend of the plan: undefined when the master entry is absent
 * or counts no backend; else every slot resolves to a backend and the reverse NAT exists. Throws on a
 * half-made Service.
 */
function lookups(maps: Maps, plan: ServiceMapPlan, family: "ipv4" | "ipv6"): void {
  const prefix = family === "ipv4" ? "lb4" : "lb6";
  for (const f of plan.frontends.filter((x) => x.family === family)) {
    const master = maps.get(`${prefix}_services`, encodeServiceKey(f, 0));
    if (!master) continue;
    const count = master.readUInt16LE(4);
    const revNat = master.readUInt16LE(6);
    if (!maps.get(`${prefix}_reverse_nat`, Buffer.from([revNat & 0xff, revNat >> 8]))) throw new Error(`${f.address}:${f.port}: master without reverse NAT ${revNat}`);
    for (let slot = 1; slot <= count; slot++) {
      const entry = maps.get(`${prefix}_services`, encodeServiceKey(f, slot));
      if (!entry) throw new Error(`${f.address}:${f.port}: master counts ${count}, slot ${slot} missing`);
      const id = entry.readUInt32LE(0);
      const idKey = Buffer.alloc(4);
      idKey.writeUInt32LE(id);
      if (!maps.get(`${prefix}_backends`, idKey)) throw new Error(`${f.address}:${f.port}: slot ${slot} names backend ${id}, missing`);
    }
  }
}

/** Applies the writes one by one and checks every frontend of both plans after each. */
function replay(maps: Maps, ops: readonly MapOperation[], ...plans: ServiceMapPlan[]): void {
  for (const op of ops) {
    maps.apply(op);
    for (const plan of plans) for (const family of plan.families) lookups(maps, plan, family);
  }
}

describe("LbMapAgent", () => {
  it("fills, adds, removes and restores without a packet ever seeing a half-made Service", () => {
    const agent = new LbMapAgent();
    const maps = new Maps();
    const full = planOf(services);
    replay(maps, agent.upsert(full, full.families), full);
    const fewer = planOf(services.slice(0, 3));
    replay(maps, agent.upsert(fewer, fewer.families), full, fewer);
    replay(maps, agent.upsert(full, full.families), full, fewer);
    replay(maps, agent.restore(full, full.families), full);
    for (const family of full.families) expect(agent.serviceEntries(family)).toBe(full.serviceEntries[family]);
    expect([...maps.maps.get("lb4_services")!.keys()]).toHaveLength(full.serviceEntries.ipv4);
  });

  it("writes a new Service's backend, slots, reverse NAT, then master; deletes a removed one master first, its reverse NAT, then its backend", () => {
    const agent = new LbMapAgent();
    const before = planOf(services.slice(0, 4));
    agent.upsert(before, ["ipv4"]);
    const added = agent.upsert(planOf(services), ["ipv4"]);
    const kinds = added.map((o) => `${o.op} ${o.map}`);
    // Two ClusterIP Services, each with its own backend (the fixture's target ports differ): one slot each.
    expect(kinds).toEqual(Array.from({ length: 2 }, () => ["update lb4_backends", "update lb4_services", "update lb4_reverse_nat", "update lb4_services"]).flat());
    expect(added.filter((o) => o.map === "lb4_services").map((o) => o.key.readUInt16LE(6))).toEqual([1, 0, 1, 0]);
    const removed = agent.upsert(before, ["ipv4"]);
    expect(removed.map((o) => `${o.op} ${o.map} ${o.map === "lb4_services" ? o.key.readUInt16LE(6) : ""}`.trim())).toEqual([
      ...Array.from({ length: 2 }, () => ["delete lb4_services 0", "delete lb4_services 1", "delete lb4_reverse_nat"]).flat(),
      "delete lb4_backends",
      "delete lb4_backends",
    ]);
  });

  it("keeps the ids of frontends it holds and never hands a freed service id out again before wrapping", () => {
    const agent = new LbMapAgent();
    agent.upsert(planOf(services), ["ipv4"]);
    const ids = new Map(agent.heldFrontends().map((f) => [`${f.address}:${f.port}`, f.revNatIndex]));
    agent.upsert(planOf(services.slice(0, 5)), ["ipv4"]);
    agent.upsert(planOf(services), ["ipv4"]);
    const again = new Map(agent.heldFrontends().map((f) => [`${f.address}:${f.port}`, f.revNatIndex]));
    const last = services.at(-1)!;
    for (const [frontend, id] of again) {
      if (frontend.startsWith(last.clusterIPs.ipv4!)) expect(id).toBeGreaterThan(Math.max(...ids.values()));
      else expect(id).toBe(ids.get(frontend));
    }
  });

  it("writes nothing for unchanged Services, and rewrites every frontend on a restore without adding backends", () => {
    const agent = new LbMapAgent();
    const full = planServiceMaps(set, endpoints);
    agent.upsert(full, full.families);
    expect(agent.upsert(full, full.families)).toEqual([]);
    const restored = agent.restore(full, full.families);
    expect(restored.filter((o) => o.map.endsWith("_backends"))).toEqual([]);
    expect(restored.filter((o) => o.map.endsWith("_services"))).toHaveLength(full.serviceEntries.ipv4 + full.serviceEntries.ipv6);
  });
});

describe("the map writer's protocol", () => {
  it("sends one line per operation and ends the batch", () => {
    const agent = new LbMapAgent();
    const ops = agent.upsert(planOf(services.slice(0, 2)), ["ipv4"]);
    const lines = writerBatch(ops, (m) => `/b/${m}`).trimEnd().split("\n");
    expect(lines.at(-1)).toBe("c");
    expect(lines.slice(0, -1).every((l) => /^u \/b\/lb4_\w+ [0-9a-f]+ [0-9a-f]+$/.test(l))).toBe(true);
    expect(writerBatch([], (m) => m)).toBe("c\n");
  });

  it("reads the time of a batch, and names the operation the kernel refused", () => {
    const ops = new LbMapAgent().upsert(planOf(services.slice(0, 1)), ["ipv4"]);
    expect(parseWriterReply("ok 12 34567", ops)).toEqual({ operations: 12, kernelNs: 34567 });
    expect(() => parseWriterReply("error 2 7 Argument list too long", ops)).toThrow(/eBPF map write 2 of \d+ \(update lb4_\w+ key [0-9a-f]+\) failed: errno 7 Argument list too long/);
    expect(() => parseWriterReply("what", ops)).toThrow(/unexpected answer "what"/);
  });
});
