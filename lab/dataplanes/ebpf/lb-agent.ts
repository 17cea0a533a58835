// What the Cilium agent writes into the load balancer's maps when Services change, entry by entry and
// in its order, so that no packet sees a half-made Service (the legacy control plane of 1.17, which
// runs on kernel 5.4: pkg/service upsertServiceIntoLBMaps and deleteServiceLocked over
// pkg/maps/lbmap's upsertServiceProto and deleteServiceProto):
//
// - a Service is added or changed: its new backends into the backend map first; then per frontend the
//   backend slots 1..n, the reverse-NAT entry, and last the master entry (slot 0), whose count is what
//   the datapath looks up; then the slots beyond the new count are deleted;
// - a Service is removed: per frontend the master entry first (slot 0, then the slots), so lookups
//   fail before anything they lead to goes; then its reverse-NAT entry; then the backends no Service
//   uses any more;
// - the agent restarts: it restores its state from the maps (ids kept) and upserts every Service
//   again, rewriting every slot, reverse-NAT and master entry; backends it restored are not new.
//
// Service ids (the reverse-NAT index) and backend ids come from allocators that hand out the next
// free id and reuse freed ones only after wrapping around (pkg/service/id.go), so they depend on the
// history of changes, not only on the Services.
import type { Family } from "../../../scenario/cidr.js";
import {
  encodeBackend,
  encodeReverseNat,
  encodeServiceKey,
  encodeServiceValue,
  hexBytes,
  LB_MAPS,
  u16,
  u32,
  type Backend,
  type Frontend,
  type ServiceMapPlan,
} from "./service-maps.js";

/** One bpf(2) map write. */
export interface MapOperation {
  readonly op: "update" | "delete";
  /** The pinned name of the map (LB_MAPS). */
  readonly map: string;
  readonly family: Family;
  readonly key: Buffer;
  readonly value?: Buffer;
}

/** Cilium's service ids are 16 bits (0 means none); backend ids are 32 bits. */
const MAX_SERVICE_ID = 0xffff;
const MAX_BACKEND_ID = 0xffffffff;

/** The namespace/name of the Service a frontend serves (its servicePort is "namespace/name:port"). */
const serviceOf = (f: Pick<Frontend, "servicePort">) => f.servicePort.slice(0, f.servicePort.lastIndexOf(":"));
const frontendKey = (f: Pick<Frontend, "family" | "address" | "port" | "protocol">) => `${f.family}|${f.address}|${f.port}|${f.protocol}`;
const backendKey = (b: Pick<Backend, "family" | "address" | "port" | "protocol">) => `${b.family}|${b.address}|${b.port}|${b.protocol}`;

/** An id allocator that hands out the next free id and wraps around. */
class IdAllocator {
  private next = 1;
  readonly used = new Set<number>();
  constructor(private readonly max: number) {}
  acquire(what: string): number {
    for (let tried = 0; tried < this.max; tried++) {
      const id = this.next;
      this.next = this.next >= this.max ? 1 : this.next + 1;
      if (!this.used.has(id)) {
        this.used.add(id);
        return id;
      }
    }
    throw new Error(`the Cilium agent model: no free ${what} id (all ${this.max} in use)`);
  }
  release(id: number): void {
    this.used.delete(id);
  }
}

interface HeldFrontend {
  readonly frontend: Frontend;
  /** Backend keys in slot order. */
  readonly backends: readonly string[];
}

/** Frontends a plan wants, with the backend keys of their slots. */
function wanted(plan: ServiceMapPlan, families: readonly Family[]): { frontend: Frontend; backends: Backend[] }[] {
  const byId = new Map(plan.backends.map((b) => [b.id, b]));
  return plan.frontends
    .filter((f) => families.includes(f.family))
    .map((frontend) => ({ frontend, backends: frontend.backendIds.map((id) => byId.get(id)!) }));
}

/**
 * The agent's view of what its maps hold, and the ordered writes that take them to a plan's
 * frontends. A plan's own ids are ignored: the agent keeps the ids of frontends and backends it
 * already holds and allocates new ones.
 */
export class LbMapAgent {
  private readonly serviceIds = new IdAllocator(MAX_SERVICE_ID);
  private readonly backendIds = new IdAllocator(MAX_BACKEND_ID);
  private readonly frontends = new Map<string, HeldFrontend>();
  private readonly backends = new Map<string, { backend: Backend; users: number }>();

  /** Entries the maps hold now, per family (service map: one per frontend plus one per slot). */
  serviceEntries(family: Family): number {
    let n = 0;
    for (const { frontend } of this.frontends.values()) if (frontend.family === family) n += 1 + frontend.backendIds.length;
    return n;
  }

  /** The frontends held, with the agent's ids. */
  heldFrontends(): Frontend[] {
    return [...this.frontends.values()].map((h) => h.frontend);
  }

  private backendEntry(b: Backend): MapOperation {
    return { op: "update", map: LB_MAPS.backends[b.family], family: b.family, key: u32(b.id), value: encodeBackend(b) };
  }

  /** upsertServiceProto: slots 1..n, reverse NAT, master; then the obsolete slots. */
  private writeFrontend(f: Frontend, previousCount: number): MapOperation[] {
    const map = LB_MAPS.services[f.family];
    const ops: MapOperation[] = [];
    for (let slot = 1; slot <= f.backendIds.length; slot++) {
      ops.push({ op: "update", map, family: f.family, key: encodeServiceKey(f, slot), value: encodeServiceValue(f, slot) });
    }
    ops.push({ op: "update", map: LB_MAPS.reverseNat[f.family], family: f.family, key: u16(f.revNatIndex), value: encodeReverseNat(f) });
    ops.push({ op: "update", map, family: f.family, key: encodeServiceKey(f, 0), value: encodeServiceValue(f, 0) });
    for (let slot = f.backendIds.length + 1; slot <= previousCount; slot++) ops.push({ op: "delete", map, family: f.family, key: encodeServiceKey(f, slot) });
    return ops;
  }

  /** deleteServiceProto: slots 0..count, then the reverse NAT. */
  private deleteFrontend(f: Frontend): MapOperation[] {
    const map = LB_MAPS.services[f.family];
    const ops: MapOperation[] = [];
    for (let slot = 0; slot <= f.backendIds.length; slot++) ops.push({ op: "delete", map, family: f.family, key: encodeServiceKey(f, slot) });
    ops.push({ op: "delete", map: LB_MAPS.reverseNat[f.family], family: f.family, key: u16(f.revNatIndex) });
    return ops;
  }

  private takeBackend(b: Backend, ops: MapOperation[]): number {
    const key = backendKey(b);
    const held = this.backends.get(key);
    if (held) {
      held.users++;
      return held.backend.id;
    }
    const backend = { ...b, id: this.backendIds.acquire("backend") };
    this.backends.set(key, { backend, users: 1 });
    ops.push(this.backendEntry(backend));
    return backend.id;
  }

  /**
   * The writes that make the maps of `families` hold the plan's frontends: removed Services first,
   * then added or changed ones in the plan's order (unchanged ones are not written), then the
   * backends no frontend uses any more. The agent's state follows.
   */
  upsert(plan: ServiceMapPlan, families: readonly Family[]): MapOperation[] {
    return this.write(plan, families, false);
  }

  /**
   * The writes for the events of some Services (namespace/name): their frontends in `plan` added or
   * changed, their other frontends removed; every other Service's frontends left alone, as the agent
   * handles one Service event at a time. `plan` holds only Services of `services`.
   */
  change(plan: ServiceMapPlan, families: readonly Family[], services: ReadonlySet<string>): MapOperation[] {
    return this.write(plan, families, false, services);
  }

  /**
   * The writes of an agent restart that restored these maps: every frontend of the plan written
   * again (slots, reverse NAT, master), new ones added, gone ones removed.
   */
  restore(plan: ServiceMapPlan, families: readonly Family[]): MapOperation[] {
    return this.write(plan, families, true);
  }

  private write(plan: ServiceMapPlan, families: readonly Family[], everything: boolean, scope?: ReadonlySet<string>): MapOperation[] {
    const want = wanted(plan, families);
    const wantedKeys = new Set(want.map((w) => frontendKey(w.frontend)));
    const ops: MapOperation[] = [];
    const released: string[] = [];
    for (const [key, held] of this.frontends) {
      if (!families.includes(held.frontend.family) || wantedKeys.has(key)) continue;
      if (scope && !scope.has(serviceOf(held.frontend))) continue;
      ops.push(...this.deleteFrontend(held.frontend));
      this.serviceIds.release(held.frontend.revNatIndex);
      this.frontends.delete(key);
      released.push(...held.backends);
    }
    for (const { frontend, backends } of want) {
      const key = frontendKey(frontend);
      const held = this.frontends.get(key);
      const keys = backends.map(backendKey);
      const same = held !== undefined && held.frontend.flags === frontend.flags && held.backends.join(",") === keys.join(",");
      if (same && !everything) continue;
      const backendIds = backends.map((b) => this.takeBackend(b, ops));
      if (held) released.push(...held.backends);
      const next: Frontend = {
        ...frontend,
        revNatIndex: held?.frontend.revNatIndex ?? this.serviceIds.acquire("service"),
        backendIds,
      };
      ops.push(...this.writeFrontend(next, held?.frontend.backendIds.length ?? 0));
      this.frontends.set(key, { frontend: next, backends: keys });
    }
    for (const key of released) {
      const held = this.backends.get(key)!;
      if (--held.users > 0) continue;
      ops.push({ op: "delete", map: LB_MAPS.backends[held.backend.family], family: held.backend.family, key: u32(held.backend.id) });
      this.backendIds.release(held.backend.id);
      this.backends.delete(key);
    }
    return ops;
  }
}

/**
 * Pure: a `bpftool batch file` of the operations, one bpf(2) call per line in their order.
 * mapPath gives the pinned path of a map by its name.
 */
export function bpftoolBatch(ops: readonly MapOperation[], mapPath: (name: string) => string): string {
  const line = (o: MapOperation) =>
    o.op === "update"
      ? `map update pinned ${mapPath(o.map)} key hex ${hexBytes(o.key)} value hex ${hexBytes(o.value!)}`
      : `map delete pinned ${mapPath(o.map)} key hex ${hexBytes(o.key)}`;
  return `${ops.map(line).join("\n")}\n`;
}

/** Pure: the lines lb-map-writer.c reads for the operations, ending the batch. */
export function writerBatch(ops: readonly MapOperation[], mapPath: (name: string) => string): string {
  const hex = (b: Buffer) => b.toString("hex");
  const line = (o: MapOperation) => (o.op === "update" ? `u ${mapPath(o.map)} ${hex(o.key)} ${hex(o.value!)}` : `d ${mapPath(o.map)} ${hex(o.key)}`);
  return `${ops.map(line).join("\n")}${ops.length ? "\n" : ""}c\n`;
}
