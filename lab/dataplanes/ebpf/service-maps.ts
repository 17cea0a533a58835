// What the lab's eBPF load balancer holds for a ServiceSet, and its bytes (layouts in lb-maps.h).
//
// Like Cilium's legacy control plane with one node address per family: every Service port gets a
// ClusterIP frontend per family, every NodePort Service port also a nodeIP:nodePort frontend; each
// frontend takes slot 0 plus one slot per backend in the service map, and its own service id
// (rev-NAT index). The one backend is the receiver pod at the port's targetPort.
// Cilium adds a 0.0.0.0:nodePort frontend for socket-LB and a second, internal-scope frontend for
// externalTrafficPolicy=Local; neither serves traffic arriving at the node's uplink, so they are left out.
import { endianness } from "node:os";
import ipaddr from "ipaddr.js";
import { isAddress, type Family } from "../../../scenario/cidr.js";
import type { L4Protocol, ServiceSet, ServiceSpec } from "../../../workloads/service-model.js";

/** Pinned names of the maps (lb-maps.h), per family. */
export const LB_MAPS = {
  services: { ipv4: "lb4_services", ipv6: "lb6_services" },
  backends: { ipv4: "lb4_backends", ipv6: "lb6_backends" },
  reverseNat: { ipv4: "lb4_reverse_nat", ipv6: "lb6_reverse_nat" },
  conntrack: { ipv4: "ct4_global", ipv6: "ct6_global" },
  nat: { ipv4: "snat4_external", ipv6: "snat6_external" },
} as const satisfies Record<string, Record<Family, string>>;

/** lb_service.flags, as in Cilium's enum svc_flags. */
export const SVC_FLAG = { NODEPORT: 1 << 1, LOCAL_SCOPE: 1 << 2, ROUTABLE: 1 << 6 } as const;
export const LB_LOOKUP_SCOPE_EXT = 0;
const IPPROTO: Record<L4Protocol, number> = { TCP: 6, UDP: 17 };
/** Cilium's default bpf.lbMapMax. */
export const DEFAULT_LB_MAP_MAX = 65536;
/** Service ids are 16 bits in Cilium's datapath; 0 means "no reverse NAT". */
const MAX_REV_NAT_INDEX = 0xffff;

export interface Frontend {
  readonly family: Family;
  readonly kind: "ClusterIP" | "NodePort";
  readonly address: string;
  readonly port: number;
  readonly protocol: L4Protocol;
  /** "namespace/name:portName" of the Service port it serves. */
  readonly servicePort: string;
  readonly revNatIndex: number;
  readonly flags: number;
  readonly backendIds: readonly number[];
}

export interface Backend {
  readonly id: number;
  readonly family: Family;
  readonly address: string;
  readonly port: number;
  readonly protocol: L4Protocol;
}

export interface ServiceMapPlan {
  readonly families: readonly Family[];
  readonly frontends: readonly Frontend[];
  readonly backends: readonly Backend[];
  /** Entries of lb4_services / lb6_services: each frontend's slot 0 plus one slot per backend. */
  readonly serviceEntries: Readonly<Record<Family, number>>;
}

/** Addresses of the node (NodePort frontends) and of the pod (the backend), per family. */
export interface LbEndpoints {
  readonly node: Readonly<Partial<Record<Family, string>>>;
  readonly pod: Readonly<Partial<Record<Family, string>>>;
  /** A Service's own backend, where it is not `pod` (a cluster whose Services select different pods). */
  readonly backendOf?: (service: ServiceSpec) => Readonly<Partial<Record<Family, string>>> | undefined;
}

function familyOf(address: string): Family | undefined {
  if (!isAddress(address)) return undefined;
  return ipaddr.parse(address).kind() === "ipv4" ? "ipv4" : "ipv6";
}

function checkPort(where: string, key: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new Error(`${where}.${key}: ${String(value)} is not a port; accepted: an integer 1-65535`);
  }
  return value;
}

/**
 * Pure: the frontends and backends for a ServiceSet (the receiver's Service first), and for `more`
 * Services after it (the paths' receivers). Throws, naming
 * the Service and key, on input the maps cannot hold; nothing is written before this succeeds.
 */
export function planServiceMaps(set: ServiceSet, endpoints: LbEndpoints, lbMapMax = DEFAULT_LB_MAP_MAX, more: readonly ServiceSpec[] = []): ServiceMapPlan {
  return planServiceMapsFor(
    [
      { spec: set.receiver, where: "receiver" },
      ...set.scaled.map((spec, i) => ({ spec, where: `scaled[${i}]` })),
      ...more.map((spec, i) => ({ spec, where: `paths[${i}]` })),
    ],
    endpoints,
    lbMapMax,
  );
}

/**
 * Pure: the frontends and backends for Services in the given order, each named `where` in errors;
 * service ids and backend ids numbered from 1 in that order.
 */
export function planServiceMapsFor(services: readonly { spec: ServiceSpec; where: string }[], endpoints: LbEndpoints, lbMapMax = DEFAULT_LB_MAP_MAX): ServiceMapPlan {
  if (!Number.isInteger(lbMapMax) || lbMapMax < 1) {
    throw new Error(`lbMapMax: ${lbMapMax} is not accepted; accepted: a positive integer (Cilium's default is ${DEFAULT_LB_MAP_MAX})`);
  }
  const families: Family[] = [];
  for (const family of ["ipv4", "ipv6"] as const) {
    for (const role of ["node", "pod"] as const) {
      const address = endpoints[role][family];
      if (address !== undefined && familyOf(address) !== family) {
        throw new Error(`${role}.${family}: "${address}" is not an ${family === "ipv4" ? "IPv4" : "IPv6"} address`);
      }
    }
    if (endpoints.node[family] && endpoints.pod[family]) families.push(family);
  }
  if (families.length === 0) throw new Error("node and pod addresses: no family has both; accepted: ipv4 and/or ipv6 addresses for each");

  const frontends: Frontend[] = [];
  const backends = new Map<string, Backend>();
  const taken = new Map<string, string>();
  let nextRevNat = 1;
  const backendFor = (family: Family, port: number, protocol: L4Protocol, service: ServiceSpec): number => {
    const address = endpoints.backendOf?.(service)?.[family] ?? endpoints.pod[family]!;
    const key = `${address}|${port}|${protocol}`;
    let backend = backends.get(key);
    if (!backend) {
      backend = { id: backends.size + 1, family, address, port, protocol };
      backends.set(key, backend);
    }
    return backend.id;
  };

  for (const { spec, where } of services) {
    spec.ports.forEach((p, j) => {
      const at = `${where}(${spec.namespace}/${spec.name}).ports[${j}]`;
      const servicePort = `${spec.namespace}/${spec.name}:${p.name}`;
      if (p.protocol !== "TCP" && p.protocol !== "UDP") {
        throw new Error(`${at}.protocol: "${String(p.protocol)}" is not accepted; accepted: TCP, UDP`);
      }
      checkPort(at, "port", p.port);
      checkPort(at, "targetPort", p.targetPort);
      if (spec.type === "NodePort") checkPort(at, "nodePort", p.nodePort);
      for (const family of families) {
        const wanted: { kind: Frontend["kind"]; address: string; port: number; flags: number }[] = [];
        const clusterIP = spec.clusterIPs[family];
        if (clusterIP !== undefined) {
          if (familyOf(clusterIP) !== family) {
            throw new Error(`${where}(${spec.namespace}/${spec.name}).clusterIPs.${family}: "${clusterIP}" is not an ${family} address`);
          }
          wanted.push({ kind: "ClusterIP", address: clusterIP, port: p.port, flags: 0 });
        }
        if (spec.type === "NodePort") {
          const local = spec.externalTrafficPolicy === "Local" ? SVC_FLAG.LOCAL_SCOPE : 0;
          wanted.push({ kind: "NodePort", address: endpoints.node[family]!, port: p.nodePort!, flags: SVC_FLAG.NODEPORT | SVC_FLAG.ROUTABLE | local });
        }
        for (const w of wanted) {
          const key = `${w.address}|${w.port}|${p.protocol}`;
          const owner = taken.get(key);
          if (owner !== undefined) {
            throw new Error(`${at}: frontend ${w.address}:${w.port}/${p.protocol} is already used by ${owner}; accepted: distinct address, port and protocol per frontend`);
          }
          taken.set(key, servicePort);
          if (nextRevNat > MAX_REV_NAT_INDEX) {
            throw new Error(`services: more than ${MAX_REV_NAT_INDEX} frontends; Cilium's service id (rev-NAT index) is 16 bits`);
          }
          frontends.push({
            family,
            kind: w.kind,
            address: w.address,
            port: w.port,
            protocol: p.protocol,
            servicePort,
            revNatIndex: nextRevNat++,
            flags: w.flags,
            backendIds: [backendFor(family, p.targetPort, p.protocol, spec)],
          });
        }
      }
    });
  }
  const serviceEntries = { ipv4: 0, ipv6: 0 };
  for (const f of frontends) serviceEntries[f.family] += 1 + f.backendIds.length;
  for (const family of families) {
    if (serviceEntries[family] > lbMapMax) {
      throw new Error(
        `lbMapMax: ${lbMapMax} is too small; the ${family} service map needs ${serviceEntries[family]} entries; accepted: at least ${serviceEntries[family]}`,
      );
    }
  }
  return { families, frontends, backends: [...backends.values()], serviceEntries };
}

// ---------------------------------------------------------------------------------------------
// Encoding: network order for addresses and L4 ports, host order for everything else.

const LITTLE = endianness() === "LE";

/** Host order, as the maps hold ids. */
export function u16(value: number): Buffer {
  const b = Buffer.alloc(2);
  if (LITTLE) b.writeUInt16LE(value);
  else b.writeUInt16BE(value);
  return b;
}

/** Host order, as the maps hold ids. */
export function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  if (LITTLE) b.writeUInt32LE(value);
  else b.writeUInt32BE(value);
  return b;
}

function be16(value: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(value);
  return b;
}

const u8 = (...values: number[]) => Buffer.from(values);
const addressBytes = (address: string) => Buffer.from(ipaddr.parse(address).toByteArray());

/** lb4_key / lb6_key. */
export function encodeServiceKey(f: Pick<Frontend, "address" | "port" | "protocol">, backendSlot: number): Buffer {
  return Buffer.concat([addressBytes(f.address), be16(f.port), u16(backendSlot), u8(IPPROTO[f.protocol], LB_LOOKUP_SCOPE_EXT, 0, 0)]);
}

/** lb_service: slot 0 carries the count, slot n the n-th backend id. */
export function encodeServiceValue(f: Pick<Frontend, "revNatIndex" | "flags" | "backendIds">, backendSlot: number): Buffer {
  const backendId = backendSlot === 0 ? 0 : f.backendIds[backendSlot - 1]!;
  const count = backendSlot === 0 ? f.backendIds.length : 0;
  return Buffer.concat([u32(backendId), u16(count), u16(f.revNatIndex), u8(f.flags, 0), u16(0)]);
}

/** lb4_backend / lb6_backend. */
export function encodeBackend(b: Backend): Buffer {
  return Buffer.concat([addressBytes(b.address), be16(b.port), u8(IPPROTO[b.protocol], 0), u16(0), u8(0, 0)]);
}

/** lb4_reverse_nat / lb6_reverse_nat (packed). */
export function encodeReverseNat(f: Pick<Frontend, "address" | "port">): Buffer {
  return Buffer.concat([addressBytes(f.address), be16(f.port)]);
}

/** The text of one map entry's bytes as bpftool reads them. */
export const hexBytes = (b: Buffer) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");

/** A service map entry as the kernel holds it (the inverse of encodeServiceKey/encodeServiceValue). */
export interface ServiceEntry {
  readonly address: string;
  readonly port: number;
  readonly protocol: L4Protocol | number;
  readonly backendSlot: number;
  readonly scope: number;
  /** Slot 0: backends of the frontend. */
  readonly count: number;
  readonly flags: number;
  /** Slot > 0: the backend's id (key of lb4_backends / lb6_backends). */
  readonly backendId: number;
  /** The frontend's service id (rev-NAT index). */
  readonly revNatIndex: number;
}

/** Pure: decodes one lb4_services / lb6_services entry from its key and value bytes (a bpftool dump's). */
export function decodeServiceEntry(family: Family, key: readonly number[], value: readonly number[]): ServiceEntry {
  const k = Buffer.from(key);
  const v = Buffer.from(value);
  const n = family === "ipv4" ? 4 : 16;
  const address = ipaddr.fromByteArray([...k.subarray(0, n)]).toString();
  const read16 = (b: Buffer, at: number) => (LITTLE ? b.readUInt16LE(at) : b.readUInt16BE(at));
  const proto = k[n + 4]!;
  const protocol = (Object.entries(IPPROTO).find(([, number]) => number === proto)?.[0] as L4Protocol | undefined) ?? proto;
  const read32 = (b: Buffer, at: number) => (LITTLE ? b.readUInt32LE(at) : b.readUInt32BE(at));
  return {
    address,
    port: k.readUInt16BE(n),
    backendSlot: read16(k, n + 2),
    protocol,
    scope: k[n + 5]!,
    count: read16(v, 4),
    flags: v[8]!,
    backendId: read32(v, 0),
    revNatIndex: read16(v, 6),
  };
}

/**
 * Pure: the frontend addresses that forward to at least one backend (slot 0 with a count), from the
 * entries of a service map: what `cilium-dbg service list` shows as frontends with backends.
 */
export function forwardingFrontends(entries: readonly ServiceEntry[]): ServiceEntry[] {
  return entries.filter((e) => e.backendSlot === 0 && e.count > 0);
}

// ---------------------------------------------------------------------------------------------
// The backends map, read back (what `cilium-dbg service list` shows behind each frontend).

/** lb4_backends / lb6_backends entry: the inverse of encodeBackend. */
export function decodeBackend(family: Family, id: number, value: readonly number[]): Backend {
  const v = Buffer.from(value);
  const n = family === "ipv4" ? 4 : 16;
  const proto = v[n + 2]!;
  const protocol = (Object.entries(IPPROTO).find(([, number]) => number === proto)?.[0] as L4Protocol | undefined) ?? "TCP";
  return { id, family, address: ipaddr.fromByteArray([...v.subarray(0, n)]).toString(), port: v.readUInt16BE(n), protocol };
}

/** A backends map key (the backend id, a host-order u32). */
export function decodeBackendId(key: readonly number[]): number {
  const k = Buffer.from(key);
  return LITTLE ? k.readUInt32LE(0) : k.readUInt32BE(0);
}
