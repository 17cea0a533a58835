// Address arithmetic shared by the schema, the OpenStack layer and the lab.
// Parsing is ipaddr.js's; sizes and overlaps are computed on BigInt so IPv6 /48s are exact.
import ipaddr from "ipaddr.js";

export type Family = "ipv4" | "ipv6";

export interface Cidr {
  readonly family: Family;
  /** Network address as an unsigned integer. */
  readonly network: bigint;
  readonly prefix: number;
  /** The CIDR as written by the user, normalised to its network address. */
  readonly text: string;
}

const BITS: Record<Family, number> = { ipv4: 32, ipv6: 128 };

function toBigInt(addr: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  return addr.toByteArray().reduce((acc, byte) => (acc << 8n) | BigInt(byte), 0n);
}

function fromBigInt(value: bigint, family: Family): string {
  const bytes: number[] = [];
  for (let i = 0; i < BITS[family] / 8; i++) {
    bytes.unshift(Number(value & 0xffn));
    value >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

/** Parses "a.b.c.d/n" or "x::/n"; returns undefined for anything else. */
export function parseCidr(text: string): Cidr | undefined {
  if (typeof text !== "string" || !ipaddr.isValidCIDR(text)) return undefined;
  const [addr, prefix] = ipaddr.parseCIDR(text);
  const family: Family = addr.kind() === "ipv4" ? "ipv4" : "ipv6";
  const bits = BITS[family];
  const hostBits = BigInt(bits - prefix);
  const network = (toBigInt(addr) >> hostBits) << hostBits;
  return { family, network, prefix, text: `${fromBigInt(network, family)}/${prefix}` };
}

export function isAddress(text: string, family?: Family): boolean {
  if (typeof text !== "string" || !ipaddr.isValid(text)) return false;
  const kind = ipaddr.parse(text).kind();
  return family === undefined || kind === family;
}

/** Number of addresses in the block. */
export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(BITS[c.family] - c.prefix);
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const shorter = Math.min(a.prefix, b.prefix);
  const hostBits = BigInt(BITS[a.family] - shorter);
  return a.network >> hostBits === b.network >> hostBits;
}

/** The n-th address of a block (0 = network address), as text. */
export function nthAddress(c: Cidr, n: number | bigint): string {
  const offset = BigInt(n);
  if (offset < 0n || offset >= cidrSize(c)) {
    throw new RangeError(`address #${offset} is outside ${c.text}`);
  }
  return fromBigInt(c.network + offset, c.family);
}

/** True when the block holds the given address. */
export function cidrContains(c: Cidr, address: string): boolean {
  if (!isAddress(address)) return false;
  const parsed = ipaddr.parse(address);
  if ((parsed.kind() === "ipv4" ? "ipv4" : "ipv6") !== c.family) return false;
  const hostBits = BigInt(BITS[c.family] - c.prefix);
  return toBigInt(parsed) >> hostBits === c.network >> hostBits;
}

/** The smallest block that holds both blocks (of one family). */
export function coveringCidr(a: Cidr, b: Cidr): Cidr {
  if (a.family !== b.family) throw new Error(`${a.text} and ${b.text} are of different families`);
  let prefix = Math.min(a.prefix, b.prefix);
  while (prefix > 0 && !cidrsOverlap({ ...a, prefix }, { ...b, prefix })) prefix--;
  return parseCidr(`${nthAddress(a, 0)}/${prefix}`)!;
}
