// The node's settings compiled into the eBPF load balancer: addresses and pod blocks as host-order
// words, the mode as ENABLE_DSR's stand-in, bad input refused by key.
import { describe, expect, it } from "vitest";
import { nodeConfigDefines } from "../../lab/dataplanes/ebpf/node-config.js";

const node = { ipv4: "198.18.1.2", ipv6: "2001:2:0:20::2" };
const podCidr = { ipv4: "198.18.2.0/23", ipv6: "2001:2:0:40::/63" };

describe("nodeConfigDefines", () => {
  it("writes the node's address, its pod block's network and mask per family, SNAT mode by default", () => {
    expect(nodeConfigDefines({ node, podCidr, mode: "snat" })).toEqual([
      "-DNODE_IPV4=0xc6120102", "-DPOD_CIDR4_NET=0xc6120200", "-DPOD_CIDR4_MASK=0xfffffe00",
      "-DNODE_IPV6_0=0x20010002", "-DNODE_IPV6_1=0x00000020", "-DNODE_IPV6_2=0x00000000", "-DNODE_IPV6_3=0x00000002",
      "-DPOD_CIDR6_NET_0=0x20010002", "-DPOD_CIDR6_NET_1=0x00000040", "-DPOD_CIDR6_NET_2=0x00000000", "-DPOD_CIDR6_NET_3=0x00000000",
      "-DPOD_CIDR6_MASK_0=0xffffffff", "-DPOD_CIDR6_MASK_1=0xfffffffe", "-DPOD_CIDR6_MASK_2=0x00000000", "-DPOD_CIDR6_MASK_3=0x00000000",
    ]);
  });

  it("adds LB_MODE_DSR for dsr", () => {
    expect(nodeConfigDefines({ node, podCidr, mode: "dsr" }).at(-1)).toBe("-DLB_MODE_DSR");
  });

  it.each([
    [{ node: { ...node, ipv4: "2001:2::1" }, podCidr, mode: "snat" }, 'node.ipv4: "2001:2::1" is not an IPv4 address'],
    [{ node, podCidr: { ...podCidr, ipv6: "198.18.2.0/24" }, mode: "snat" }, 'podCidr.ipv6: "198.18.2.0/24" is not an IPv6 CIDR'],
    [{ node, podCidr, mode: "tunnel" }, 'loadBalancerMode: "tunnel" is not accepted; accepted: snat, dsr'],
  ] as const)("refuses %j", (config, message) => {
    expect(() => nodeConfigDefines(config as never)).toThrow(message);
  });
});
