// `cilium-dbg service list -o json` in the Cilium agent's pod on the worker, answered from what the
// lab's eBPF model of Cilium holds in the kernel: its service and backend maps (laid out like
// Cilium's lb4/lb6 maps, lab/dataplanes/ebpf/lb-maps.h), read with bpftool by map id. One entry per
// frontend, with the fields Cilium's JSON carries that its callers read: spec.id, frontend-address,
// backend-addresses, flags.type, and flags.namespace and flags.name, which the agent takes from its
// Service cache (here: the API's Services, by ClusterIP and port or by NodePort).
import { spawnSync } from "node:child_process";
import type { Family } from "../../scenario/cidr.js";
import type { ServiceSpec } from "../../workloads/service-model.js";
import { decodeBackend, decodeBackendId, decodeServiceEntry, LB_MAPS, SVC_FLAG, type Backend, type ServiceEntry } from "../../lab/dataplanes/ebpf/service-maps.js";

/** A map's entries as `bpftool -j map dump` prints them (raw bytes as "0x.." strings). */
export type MapDump = readonly { readonly key: readonly string[]; readonly value: readonly string[] }[];

export interface CiliumService {
  readonly spec: CiliumServiceSpec;
  readonly status: { readonly realized: CiliumServiceSpec };
}

interface CiliumServiceSpec {
  readonly id: number;
  readonly "frontend-address": { readonly ip: string; readonly port: number; readonly protocol: string; readonly scope: "external" | "internal" };
  readonly "backend-addresses": readonly { readonly ip: string; readonly port: number; readonly protocol: string; readonly state: "active"; readonly preferred: boolean; readonly weight: number }[];
  readonly flags: {
    readonly type: "ClusterIP" | "NodePort";
    readonly trafficPolicy: "Cluster";
    readonly extTrafficPolicy: "Local" | "Cluster";
    readonly intTrafficPolicy: "Cluster";
    readonly natPolicy: "";
    readonly namespace?: string;
    readonly name?: string;
  };
}

/** Which Service a frontend serves, as the agent's Service cache knows it. */
export type ServiceOfFrontend = (frontend: { address: string; port: number; nodePort: boolean }) => { namespace: string; name: string } | undefined;

/** Pure: the frontends' Services from the Services themselves: ClusterIP and port, or the NodePort on any node address. */
export function servicesByFrontend(services: readonly ServiceSpec[]): ServiceOfFrontend {
  const byKey = new Map<string, { namespace: string; name: string }>();
  for (const s of services) {
    for (const p of s.ports) {
      for (const ip of Object.values(s.clusterIPs)) byKey.set(`${ip}|${p.port}`, { namespace: s.namespace, name: s.name });
      if (p.nodePort !== undefined) byKey.set(`node|${p.nodePort}`, { namespace: s.namespace, name: s.name });
    }
  }
  return (f) => byKey.get(f.nodePort ? `node|${f.port}` : `${f.address}|${f.port}`);
}

/** Pure: the service list from the dumps of both families' service and backend maps. */
export function ciliumServiceList(dumps: Readonly<Record<Family, { services: MapDump; backends: MapDump }>>, serviceOf: ServiceOfFrontend = () => undefined): CiliumService[] {
  const out: CiliumService[] = [];
  for (const family of ["ipv4", "ipv6"] as const) {
    const backends = new Map<number, Backend>();
    for (const e of dumps[family].backends) {
      const bytes = (hex: readonly string[]) => hex.map((h) => Number.parseInt(h, 16));
      const id = decodeBackendId(bytes(e.key));
      backends.set(id, decodeBackend(family, id, bytes(e.value)));
    }
    const frontends = new Map<string, { head?: ServiceEntry; slots: ServiceEntry[] }>();
    for (const e of dumps[family].services) {
      const entry = decodeServiceEntry(family, e.key.map((h) => Number.parseInt(h, 16)), e.value.map((h) => Number.parseInt(h, 16)));
      const id = `${entry.address}|${entry.port}|${entry.protocol}`;
      const f = frontends.get(id) ?? { slots: [] };
      if (entry.backendSlot === 0) f.head = entry;
      else f.slots.push(entry);
      frontends.set(id, f);
    }
    for (const { head, slots } of frontends.values()) {
      if (!head) continue;
      const nodePort = (head.flags & SVC_FLAG.NODEPORT) !== 0;
      const service = serviceOf({ address: head.address, port: head.port, nodePort });
      const spec: CiliumServiceSpec = {
        id: head.revNatIndex,
        "frontend-address": { ip: head.address, port: head.port, protocol: String(head.protocol), scope: "external" },
        "backend-addresses": slots
          .filter((s) => s.backendSlot <= head.count)
          .sort((a, b) => a.backendSlot - b.backendSlot)
          .flatMap((s) => {
            const b = backends.get(s.backendId);
            return b ? [{ ip: b.address, port: b.port, protocol: b.protocol, state: "active" as const, preferred: true, weight: 1 }] : [];
          }),
        flags: {
          type: head.flags & SVC_FLAG.NODEPORT ? "NodePort" : "ClusterIP",
          trafficPolicy: "Cluster",
          extTrafficPolicy: head.flags & SVC_FLAG.LOCAL_SCOPE ? "Local" : "Cluster",
          intTrafficPolicy: "Cluster",
          natPolicy: "",
          ...(service ? { namespace: service.namespace, name: service.name } : {}),
        },
      };
      out.push({ spec, status: { realized: spec } });
    }
  }
  return out.sort((a, b) => a.spec.id - b.spec.id);
}

/** Reads the maps by id (bpftool) and prints the list as `cilium-dbg service list -o json` does. */
export function printServiceList(mapIds: Readonly<Record<string, number>>, serviceOf?: ServiceOfFrontend): string {
  const dump = (name: string): MapDump => {
    const id = mapIds[name];
    if (id === undefined) return [];
    const r = spawnSync("bpftool", ["-j", "map", "dump", "id", String(id)], { encoding: "utf8", maxBuffer: 256 << 20 });
    if (r.status !== 0) throw new Error(`bpftool map dump id ${id} (${name}): ${r.stderr.trim()}`);
    return JSON.parse(r.stdout) as MapDump;
  };
  const dumps = {
    ipv4: { services: dump(LB_MAPS.services.ipv4), backends: dump(LB_MAPS.backends.ipv4) },
    ipv6: { services: dump(LB_MAPS.services.ipv6), backends: dump(LB_MAPS.backends.ipv6) },
  };
  return `${JSON.stringify(ciliumServiceList(dumps, serviceOf), null, 2)}\n`;
}
