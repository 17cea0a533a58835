// The node's own settings compiled into the load balancer (service-lb.c), as Cilium compiles its
// node_config.h into its programs: the node's address per family (NodePort frontend, SNAT
// source), the block of the node's pods (a backend inside it is local, any other remote), and
// loadBalancer.mode (ENABLE_DSR). Pure.
import ipaddr from "ipaddr.js";
import { parseCidr, type Family } from "../../../scenario/cidr.js";

/** Cilium's loadBalancer.mode for remote NodePort backends: snat (its default) or dsr. */
export const LOAD_BALANCER_MODES = ["snat", "dsr"] as const;
export type LoadBalancerMode = (typeof LOAD_BALANCER_MODES)[number];
export const DEFAULT_LOAD_BALANCER_MODE: LoadBalancerMode = "snat";

export interface NodeConfig {
  /** The node's address per family. */
  readonly node: Readonly<Record<Family, string>>;
  /** The node's pod block per family (CIDR). */
  readonly podCidr: Readonly<Record<Family, string>>;
  readonly mode: LoadBalancerMode;
}

/** An address as 32-bit words, most significant first, each as a C hex literal. */
function words(bytes: readonly number[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < bytes.length; i += 4) {
    out.push(`0x${bytes.slice(i, i + 4).map((b) => b.toString(16).padStart(2, "0")).join("")}`);
  }
  return out;
}

function maskBytes(prefix: number, length: number): number[] {
  return Array.from({ length }, (_, i) => {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    return (0xff << (8 - bits)) & 0xff;
  });
}

/**
 * Pure: the -D flags of a node's settings. Throws naming the key when an address or a block is
 * not of its family.
 */
export function nodeConfigDefines(config: NodeConfig): string[] {
  if (!(LOAD_BALANCER_MODES as readonly string[]).includes(config.mode)) {
    throw new Error(`loadBalancerMode: "${String(config.mode)}" is not accepted; accepted: ${LOAD_BALANCER_MODES.join(", ")}`);
  }
  const defines: string[] = [];
  for (const family of ["ipv4", "ipv6"] as const) {
    const length = family === "ipv4" ? 4 : 16;
    const address = config.node[family];
    if (!ipaddr.isValid(address) || ipaddr.parse(address).kind() !== family) {
      throw new Error(`node.${family}: "${address}" is not an ${family === "ipv4" ? "IPv4" : "IPv6"} address`);
    }
    const cidr = parseCidr(config.podCidr[family]);
    if (!cidr || cidr.family !== family) {
      throw new Error(`podCidr.${family}: "${config.podCidr[family]}" is not an ${family === "ipv4" ? "IPv4" : "IPv6"} CIDR`);
    }
    const node = words(ipaddr.parse(address).toByteArray());
    const net = words(ipaddr.parse(cidr.text.split("/")[0]!).toByteArray());
    const mask = words(maskBytes(cidr.prefix, length));
    if (family === "ipv4") {
      defines.push(`-DNODE_IPV4=${node[0]}`, `-DPOD_CIDR4_NET=${net[0]}`, `-DPOD_CIDR4_MASK=${mask[0]}`);
    } else {
      node.forEach((w, i) => defines.push(`-DNODE_IPV6_${i}=${w}`));
      net.forEach((w, i) => defines.push(`-DPOD_CIDR6_NET_${i}=${w}`));
      mask.forEach((w, i) => defines.push(`-DPOD_CIDR6_MASK_${i}=${w}`));
    }
  }
  if (config.mode === "dsr") defines.push("-DLB_MODE_DSR");
  return defines;
}
