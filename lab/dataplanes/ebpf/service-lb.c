// SPDX-License-Identifier: GPL-2.0
/* The lab's Service load balancer: Cilium's NodePort path, reduced to what the lab exercises
 * (bpf/lib/nodeport.h, bpf/lib/nat.h, bpf/lib/lb.h, bpf/lib/fib.h of 1.17).
 *
 *   lb_nodeport    tc ingress of the entry node's uplink (Cilium: cil_from_netdev).
 *                  Frontend lookup (address, port, protocol), backend choice remembered in
 *                  conntrack, DNAT to the backend (nodeport_lb4/6). Then:
 *                  - a local backend: the kernel routes the packet to the pod (Cilium on 5.4
 *                    with legacy host routing: CTX_ACT_OK for a local backend);
 *                  - a remote backend, loadBalancer.mode snat (the default): SNAT to the node's
 *                    address (snat_v4_nat / snat_v6_nat), then out toward the backend's node by
 *                    bpf_fib_lookup and bpf_redirect (fib_redirect_v4/v6). The kernel's own
 *                    forwarding would drop a packet that enters with the node's own source
 *                    address as martian;
 *                  - a remote backend, loadBalancer.mode dsr: the client's address stays, the
 *                    frontend travels in an IPv4 option or IPv6 destination option (dsr_set_opt4,
 *                    dsr_set_ext6), out by fib_redirect as well;
 *                  - no frontend, but a reply to an SNAT port of the node: reverse SNAT
 *                    (snat_v4_rev_nat / snat_v6_rev_nat), reverse DNAT (rev_nodeport_lb4/6),
 *                    and back toward the client by fib_redirect.
 *   lb_revnat      tc egress of the entry node's uplink: replies of a local backend get the
 *                  frontend address and port back. Cilium does this when the reply leaves the pod
 *                  and then redirects it to the uplink; here the kernel routes it first, because a
 *                  packet entering the node with the node's own source address would be dropped
 *                  as martian.
 *   lb_dsr_ingress tc ingress of a backend's node uplink (loadBalancer.mode dsr): a request with
 *                  the DSR option leaves a NAT entry for its reply (handle_dsr_v4/v6,
 *                  snat_v4_create_dsr / snat_v6_create_dsr).
 *   lb_dsr_egress  tc egress of that uplink: the reply gets the frontend's address and port as
 *                  its source and goes straight to the client (Cilium rewrites it as it leaves
 *                  the pod, xlate_dsr_v4/v6 in bpf_lxc; here after the node routed it).
 *
 * The node's own settings are compiled in, as Cilium compiles node_config.h into its programs:
 * NODE_IPV4 and NODE_IPV6_0..3 (the node's address, host-order words), POD_CIDR4_NET/_MASK and
 * POD_CIDR6_NET_0..3/_MASK_0..3 (the block of the node's pods: a backend in it is local, as
 * Cilium's __lookup_ip4_endpoint finds a local endpoint), and LB_MODE_DSR (Cilium's ENABLE_DSR).
 *
 * IPv4 and IPv6 (one destination options header at most), TCP and UDP. Everything else, and
 * fragments, pass untouched. The layouts of the maps are in lb-maps.h.
 */
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lb-maps.h"

#if !defined(NODE_IPV4) || !defined(NODE_IPV6_3) || !defined(POD_CIDR4_MASK) || !defined(POD_CIDR6_MASK_3)
#error "the node's settings are compiled in: -DNODE_IPV4=... -DNODE_IPV6_0..3=... -DPOD_CIDR4_NET/MASK=... -DPOD_CIDR6_NET/MASK_0..3=..."
#endif

#ifdef LB_MODE_DSR
#define DSR_ENABLED 1
#else
#define DSR_ENABLED 0
#endif

/* The ports NodePort SNAT hands out: Cilium's NODEPORT_PORT_MIN_NAT (the NodePort range's end + 1)
 * to NODEPORT_PORT_MAX_NAT. Replies to ports below are never reverse-SNATed. */
#ifndef SNAT_PORT_MIN
#define SNAT_PORT_MIN 32768
#endif
#ifndef SNAT_PORT_MAX
#define SNAT_PORT_MAX 65535
#endif
/* Cilium's SNAT_COLLISION_RETRIES: tries before a new mapping gives up (DROP_NAT_NO_MAPPING). */
#define SNAT_COLLISION_RETRIES 32

/* Cilium's DSR dispatch by option (bpf/lib/nodeport.h): an IPv4 option, copied into fragments,
 * number 26; an IPv6 destination option whose type says "skip if unknown" (0x1B). */
#define DSR_IPV4_OPT_TYPE (0x80 | 0x1a)
#define DSR_IPV4_OPT_LEN 8
#define DSR_IPV6_OPT_TYPE 0x1B
#define DSR_IPV6_OPT_LEN (sizeof(struct dsr_opt_v6) - 4)
#define DSR_IPV6_EXT_LEN ((sizeof(struct dsr_opt_v6) - 8) / 8)

/* Cilium's struct dsr_opt_v4: port and address are written in host order (bpf_ntohs/bpf_ntohl of
 * the frontend's), as Cilium writes them. */
struct dsr_opt_v4 {
	__u8 type;
	__u8 len;
	__u16 port;
	__u32 addr;
};

/* Cilium's struct dsr_opt_v6: a destination options header holding one option. */
struct dsr_opt_v6 {
	__u8 nexthdr;
	__u8 hdrlen;
	__u8 opt_type;
	__u8 opt_len;
	__u8 addr[16];
	__be16 port;
	__u16 pad;
};

/* A packet this program lets through goes on to the hook's next filter (the lab's hop probe after
 * the reverse NAT, lab/hops/hop-probe.c); with none, the kernel passes it as with TC_ACT_OK. */
#define TC_PASS TC_ACT_UNSPEC

char LICENSE[] SEC("license") = "GPL";

union addr {
	__be32 v4;
	__u8 v6[16];
	__be32 w[4];
};

/* Where a packet's L3/L4 fields are, and their values. */
struct flow {
	__u32 l3_off;
	__u32 l4_off;
	__u32 csum_off;
	/* IPv6: offset of a destination options header right after the fixed header, else 0. */
	__u32 dstopt_off;
	__u16 family; /* ETH_P_IP or ETH_P_IPV6 */
	__u8 proto;
	__u8 tcp_flags;
	__be16 sport;
	__be16 dport;
	union addr saddr;
	union addr daddr;
};

#define IP4_SADDR_OFF(f) ((f)->l3_off + offsetof(struct iphdr, saddr))
#define IP4_DADDR_OFF(f) ((f)->l3_off + offsetof(struct iphdr, daddr))
#define IP6_SADDR_OFF(f) ((f)->l3_off + offsetof(struct ipv6hdr, saddr))
#define IP6_DADDR_OFF(f) ((f)->l3_off + offsetof(struct ipv6hdr, daddr))
#define SADDR_OFF(f) ((f)->family == ETH_P_IP ? IP4_SADDR_OFF(f) : IP6_SADDR_OFF(f))
#define DADDR_OFF(f) ((f)->family == ETH_P_IP ? IP4_DADDR_OFF(f) : IP6_DADDR_OFF(f))
#define SPORT_OFF(f) ((f)->l4_off)
#define DPORT_OFF(f) ((f)->l4_off + 2)
#define TCP_FLAG_SYN 0x02
/* Address families of bpf_fib_lookup (linux/socket.h, not includable with -target bpf). */
#define AF_INET 2
#define AF_INET6 10

/* Returns 0 for an unfragmented TCP or UDP packet over IPv4 or IPv6. */
static __always_inline int parse(struct __sk_buff *skb, struct flow *f)
{
	__be16 ports[2];
	__be16 h_proto;

	f->l3_off = sizeof(struct ethhdr);
	if (bpf_skb_load_bytes(skb, offsetof(struct ethhdr, h_proto), &h_proto, sizeof(h_proto)))
		return -1;
	if (h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, f->l3_off, &ip, sizeof(ip)) || ip.ihl < 5)
			return -1;
		/* A fragment has no, or only the first part of, the L4 header. */
		if (ip.frag_off & bpf_htons(0x3fff))
			return -1;
		f->family = ETH_P_IP;
		f->proto = ip.protocol;
		f->saddr.v4 = ip.saddr;
		f->daddr.v4 = ip.daddr;
		f->l4_off = f->l3_off + ip.ihl * 4;
	} else if (h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, f->l3_off, &ip6, sizeof(ip6)))
			return -1;
		f->family = ETH_P_IPV6;
		f->proto = ip6.nexthdr;
		__builtin_memcpy(f->saddr.v6, &ip6.saddr, 16);
		__builtin_memcpy(f->daddr.v6, &ip6.daddr, 16);
		f->l4_off = f->l3_off + sizeof(ip6);
		/* The DSR option's header (dsr_set_ext6); no other extension header is walked. */
		if (f->proto == IPPROTO_DSTOPTS) {
			__u8 ext[2];

			if (bpf_skb_load_bytes(skb, f->l4_off, ext, sizeof(ext)))
				return -1;
			f->dstopt_off = f->l4_off;
			f->proto = ext[0];
			f->l4_off += (ext[1] + 1) * 8;
		}
	} else {
		return -1;
	}
	if (f->proto == IPPROTO_TCP)
		f->csum_off = f->l4_off + offsetof(struct tcphdr, check);
	else if (f->proto == IPPROTO_UDP)
		f->csum_off = f->l4_off + offsetof(struct udphdr, check);
	else
		return -1;
	if (bpf_skb_load_bytes(skb, f->l4_off, ports, sizeof(ports)))
		return -1;
	f->sport = ports[0];
	f->dport = ports[1];
	/* The flags byte of the TCP header (offset 13). */
	if (f->proto == IPPROTO_TCP && bpf_skb_load_bytes(skb, f->l4_off + 13, &f->tcp_flags, 1))
		return -1;
	return 0;
}

static __always_inline int addr_eq(__u16 family, const union addr *a, const union addr *b)
{
	if (family == ETH_P_IP)
		return a->v4 == b->v4;
	return a->w[0] == b->w[0] && a->w[1] == b->w[1] && a->w[2] == b->w[2] && a->w[3] == b->w[3];
}

/* The node's address (NodePort frontend, SNAT source), from the compiled-in settings. */
static __always_inline void node_address(__u16 family, union addr *a)
{
	if (family == ETH_P_IP) {
		a->v4 = bpf_htonl(NODE_IPV4);
		return;
	}
	a->w[0] = bpf_htonl(NODE_IPV6_0);
	a->w[1] = bpf_htonl(NODE_IPV6_1);
	a->w[2] = bpf_htonl(NODE_IPV6_2);
	a->w[3] = bpf_htonl(NODE_IPV6_3);
}

/* Whether an address is one of this node's pods: the stand-in for Cilium's local endpoint lookup
 * (__lookup_ip4_endpoint / __lookup_ip6_endpoint) that tells a local backend from a remote one. */
static __always_inline int local_pod(__u16 family, const union addr *a)
{
	if (family == ETH_P_IP)
		return (a->v4 & bpf_htonl(POD_CIDR4_MASK)) == bpf_htonl(POD_CIDR4_NET);
	return (a->w[0] & bpf_htonl(POD_CIDR6_MASK_0)) == bpf_htonl(POD_CIDR6_NET_0) &&
	       (a->w[1] & bpf_htonl(POD_CIDR6_MASK_1)) == bpf_htonl(POD_CIDR6_NET_1) &&
	       (a->w[2] & bpf_htonl(POD_CIDR6_MASK_2)) == bpf_htonl(POD_CIDR6_NET_2) &&
	       (a->w[3] & bpf_htonl(POD_CIDR6_MASK_3)) == bpf_htonl(POD_CIDR6_NET_3);
}

/* Writes address `to` at addr_off and port `to_port` at port_off, keeping the IPv4 header
 * checksum and the L4 checksum (whose pseudo-header holds the address) correct. */
static __always_inline int rewrite(struct __sk_buff *skb, const struct flow *f, __u32 addr_off,
				   const union addr *from, const union addr *to, __u32 port_off,
				   __be16 from_port, __be16 to_port)
{
	/* UDP: keep a zero (absent) IPv4 checksum zero, and never produce one. */
	__u64 udp = f->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (f->family == ETH_P_IP) {
		if (bpf_l4_csum_replace(skb, f->csum_off, from->v4, to->v4,
					BPF_F_PSEUDO_HDR | udp | sizeof(to->v4)) ||
		    bpf_l3_csum_replace(skb, f->l3_off + offsetof(struct iphdr, check), from->v4,
					to->v4, sizeof(to->v4)) ||
		    bpf_skb_store_bytes(skb, addr_off, &to->v4, sizeof(to->v4), 0))
			return -1;
	} else {
		/* IPv6 has no header checksum; the 16-byte change enters the L4 sum as a diff. */
		__s64 diff = bpf_csum_diff((__be32 *)from->v6, 16, (__be32 *)to->v6, 16, 0);

		if (diff < 0 ||
		    bpf_l4_csum_replace(skb, f->csum_off, 0, diff, BPF_F_PSEUDO_HDR | udp) ||
		    bpf_skb_store_bytes(skb, addr_off, to->v6, 16, 0))
			return -1;
	}
	if (from_port != to_port &&
	    (bpf_l4_csum_replace(skb, f->csum_off, from_port, to_port, udp | sizeof(to_port)) ||
	     bpf_skb_store_bytes(skb, port_off, &to_port, sizeof(to_port), 0)))
		return -1;
	return 0;
}

/* The destination and its port rewritten, and the flow updated to match. */
static __always_inline int rewrite_dst(struct __sk_buff *skb, struct flow *f, const union addr *to, __be16 to_port)
{
	if (rewrite(skb, f, DADDR_OFF(f), &f->daddr, to, DPORT_OFF(f), f->dport, to_port))
		return -1;
	f->daddr = *to;
	f->dport = to_port;
	return 0;
}

/* The source and its port rewritten, and the flow updated to match. */
static __always_inline int rewrite_src(struct __sk_buff *skb, struct flow *f, const union addr *to, __be16 to_port)
{
	if (rewrite(skb, f, SADDR_OFF(f), &f->saddr, to, SPORT_OFF(f), f->sport, to_port))
		return -1;
	f->saddr = *to;
	f->sport = to_port;
	return 0;
}

// ---------------------------------------------------------------------------------------------
// Forwarding a translated packet (bpf/lib/fib.h fib_redirect_v4/v6, ipv4_l3 / ipv6_l3).

/* Routes the packet by the node's FIB and sends it out of the interface found, one hop further:
 * TTL or hop limit decremented, MAC addresses of the next hop written. Without a neighbour entry
 * the kernel resolves it (bpf_redirect_neigh, as Cilium's fib_redirect does where the kernel has
 * it: 5.10 and later). */
static __always_inline int fib_redirect(struct __sk_buff *skb, const struct flow *f)
{
	struct bpf_fib_lookup p = { .ifindex = skb->ingress_ifindex ? skb->ingress_ifindex : skb->ifindex };
	int ret;

	/* tot_len 0: the lookup checks the MTU against the packet itself (GSO-aware). */
	if (f->family == ETH_P_IP) {
		struct iphdr ip;
		__u8 ttl;

		if (bpf_skb_load_bytes(skb, f->l3_off, &ip, sizeof(ip)))
			return TC_ACT_SHOT;
		p.family = AF_INET;
		p.tos = ip.tos;
		p.l4_protocol = ip.protocol;
		p.ipv4_src = ip.saddr;
		p.ipv4_dst = ip.daddr;
		ret = bpf_fib_lookup(skb, &p, sizeof(p), 0);
		if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH)
			return TC_ACT_SHOT;
		/* ipv4_dec_ttl: no ICMP time exceeded here either (Cilium's FIXME). */
		if (ip.ttl <= 1)
			return TC_ACT_SHOT;
		ttl = ip.ttl - 1;
		if (bpf_l3_csum_replace(skb, f->l3_off + offsetof(struct iphdr, check), bpf_htons(ip.ttl << 8),
					bpf_htons(ttl << 8), 2) ||
		    bpf_skb_store_bytes(skb, f->l3_off + offsetof(struct iphdr, ttl), &ttl, 1, 0))
			return TC_ACT_SHOT;
	} else {
		struct ipv6hdr ip6;
		__u8 hops;

		if (bpf_skb_load_bytes(skb, f->l3_off, &ip6, sizeof(ip6)))
			return TC_ACT_SHOT;
		p.family = AF_INET6;
		p.l4_protocol = ip6.nexthdr;
		__builtin_memcpy(p.ipv6_src, &ip6.saddr, 16);
		__builtin_memcpy(p.ipv6_dst, &ip6.daddr, 16);
		ret = bpf_fib_lookup(skb, &p, sizeof(p), 0);
		if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH)
			return TC_ACT_SHOT;
		if (ip6.hop_limit <= 1)
			return TC_ACT_SHOT;
		hops = ip6.hop_limit - 1;
		if (bpf_skb_store_bytes(skb, f->l3_off + offsetof(struct ipv6hdr, hop_limit), &hops, 1, 0))
			return TC_ACT_SHOT;
	}
	if (ret == BPF_FIB_LKUP_RET_NO_NEIGH) {
		/* The lookup left the next hop in the destination field. */
		struct bpf_redir_neigh nh = { .nh_family = p.family };

		if (p.family == AF_INET)
			nh.ipv4_nh = p.ipv4_dst;
		else
			__builtin_memcpy(nh.ipv6_nh, p.ipv6_dst, 16);
		return bpf_redirect_neigh(p.ifindex, &nh, sizeof(nh), 0);
	}
	if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), p.dmac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_source), p.smac, ETH_ALEN, 0))
		return TC_ACT_SHOT;
	return bpf_redirect(p.ifindex, 0);
}

// ---------------------------------------------------------------------------------------------
// NAT entries (bpf/lib/nat.h), both families through one key and value.

union nat_tuple {
	struct ct4_tuple v4;
	struct ct6_tuple v6;
};

static __always_inline void nat_tuple(union nat_tuple *t, __u16 family, const union addr *saddr, __be16 sport,
				      const union addr *daddr, __be16 dport, __u8 proto, __u8 flags)
{
	if (family == ETH_P_IP) {
		t->v4 = (struct ct4_tuple){
			.daddr = daddr->v4, .saddr = saddr->v4, .dport = dport, .sport = sport,
			.nexthdr = proto, .flags = flags,
		};
		return;
	}
	t->v6 = (struct ct6_tuple){ .dport = dport, .sport = sport, .nexthdr = proto, .flags = flags };
	__builtin_memcpy(t->v6.daddr, daddr->v6, 16);
	__builtin_memcpy(t->v6.saddr, saddr->v6, 16);
}

/* The entry's target address and port, or -1 when there is no entry. */
static __always_inline int nat_lookup(__u16 family, const union nat_tuple *t, union addr *to, __be16 *to_port)
{
	if (family == ETH_P_IP) {
		struct nat4_entry *e = bpf_map_lookup_elem(&snat4_external, &t->v4);

		if (!e)
			return -1;
		to->v4 = e->to_addr;
		*to_port = e->to_port;
		return 0;
	}
	struct nat6_entry *e = bpf_map_lookup_elem(&snat6_external, &t->v6);

	if (!e)
		return -1;
	__builtin_memcpy(to->v6, e->to_addr, 16);
	*to_port = e->to_port;
	return 0;
}

union nat_value {
	struct nat4_entry v4;
	struct nat6_entry v6;
};

static __always_inline void nat_value(union nat_value *v, __u16 family, const union addr *to, __be16 to_port)
{
	if (family == ETH_P_IP) {
		v->v4 = (struct nat4_entry){ .to_addr = to->v4, .to_port = to_port };
		return;
	}
	v->v6 = (struct nat6_entry){ .to_port = to_port };
	__builtin_memcpy(v->v6.to_addr, to->v6, 16);
}

static __always_inline int nat_update(__u16 family, const union nat_tuple *t, const union nat_value *v, __u64 flags)
{
	return family == ETH_P_IP ? bpf_map_update_elem(&snat4_external, &t->v4, &v->v4, flags)
				  : bpf_map_update_elem(&snat6_external, &t->v6, &v->v6, flags);
}

/* __snat_clamp_port_range */
static __always_inline __u16 clamp_port(__u32 value)
{
	return SNAT_PORT_MIN + value % (SNAT_PORT_MAX - SNAT_PORT_MIN + 1);
}

/* snat_v4_nat / snat_v6_nat for a NodePort request to a remote backend (already DNATed): the
 * flow's mapping, made on its first packet (snat_v4_new_mapping: the client's port kept when it is
 * in the range and free, else a random one, then the next ones), and the source rewritten to the
 * node's address and that port. A port is taken when the reply tuple it makes has an entry:
 * inserting that entry with BPF_NOEXIST claims the port, as Cilium's lookup-then-update does. */
static __always_inline int snat_nat(struct __sk_buff *skb, struct flow *f)
{
	union nat_tuple otuple, rtuple;
	union nat_value ostate, rstate;
	union addr node, to;
	__be16 to_port;
	__u16 port;
	int retries;

	node_address(f->family, &node);
	nat_tuple(&otuple, f->family, &f->saddr, f->sport, &f->daddr, f->dport, f->proto, NAT_TUPLE_OUT);
	if (nat_lookup(f->family, &otuple, &to, &to_port) == 0)
		return rewrite_src(skb, f, &to, to_port);

	/* __snat_try_keep_port */
	port = bpf_ntohs(f->sport);
	if (port < SNAT_PORT_MIN || port > SNAT_PORT_MAX)
		port = clamp_port(bpf_get_prandom_u32());
	nat_tuple(&rtuple, f->family, &f->daddr, f->dport, &node, 0, f->proto, NAT_TUPLE_IN);
	nat_value(&rstate, f->family, &f->saddr, f->sport);
	/* One loop per family: the verifier walks each with its own map. */
	if (f->family == ETH_P_IP) {
		for (retries = 0; retries < SNAT_COLLISION_RETRIES; retries++) {
			rtuple.v4.dport = bpf_htons(port);
			if (bpf_map_update_elem(&snat4_external, &rtuple.v4, &rstate.v4, BPF_NOEXIST) == 0)
				break;
			port = clamp_port(retries ? port + 1 : bpf_get_prandom_u32());
		}
	} else {
		for (retries = 0; retries < SNAT_COLLISION_RETRIES; retries++) {
			rtuple.v6.dport = bpf_htons(port);
			if (bpf_map_update_elem(&snat6_external, &rtuple.v6, &rstate.v6, BPF_NOEXIST) == 0)
				break;
			port = clamp_port(retries ? port + 1 : bpf_get_prandom_u32());
		}
	}
	/* DROP_NAT_NO_MAPPING */
	if (retries == SNAT_COLLISION_RETRIES)
		return -1;
	nat_value(&ostate, f->family, &node, bpf_htons(port));
	if (nat_update(f->family, &otuple, &ostate, BPF_ANY))
		return -1;
	return rewrite_src(skb, f, &node, bpf_htons(port));
}

/* snat_v4_rev_nat / snat_v6_rev_nat: a reply to one of the node's SNAT ports gets the client's
 * address and port back. 1 when translated, 0 when the packet is no such reply, -1 on error. */
static __always_inline int snat_rev_nat(struct __sk_buff *skb, struct flow *f)
{
	union nat_tuple rtuple;
	union addr node, to;
	__be16 to_port;

	/* snat_v4_rev_nat_can_skip: not to the node's address, or below the SNAT ports. */
	node_address(f->family, &node);
	if (!addr_eq(f->family, &f->daddr, &node) || bpf_ntohs(f->dport) < SNAT_PORT_MIN)
		return 0;
	nat_tuple(&rtuple, f->family, &f->saddr, f->sport, &f->daddr, f->dport, f->proto, NAT_TUPLE_IN);
	if (nat_lookup(f->family, &rtuple, &to, &to_port))
		return 0;
	return rewrite_dst(skb, f, &to, to_port) ? -1 : 1;
}

// ---------------------------------------------------------------------------------------------
// DSR (bpf/lib/nodeport.h).

/* dsr_set_opt4 / dsr_set_ext6: the frontend (address and port the client addressed) travels to
 * the backend's node in an IPv4 option or an IPv6 destination options header. TCP: on the SYN
 * only; the backend's node keeps a NAT entry for the rest of the connection. UDP: every packet. */
static __always_inline int dsr_set_opt(struct __sk_buff *skb, const struct flow *f,
				       const union addr *frontend, __be16 frontend_port)
{
	if (f->proto == IPPROTO_TCP && !(f->tcp_flags & TCP_FLAG_SYN))
		return 0;
	if (f->family == ETH_P_IP) {
		struct dsr_opt_v4 opt = {
			.type = DSR_IPV4_OPT_TYPE, .len = DSR_IPV4_OPT_LEN,
			.port = bpf_ntohs(frontend_port), .addr = bpf_ntohl(frontend->v4),
		};
		struct iphdr ip;
		__u32 old_word, new_word;
		__s64 sum;

		if (bpf_skb_load_bytes(skb, f->l3_off, &ip, sizeof(ip)))
			return -1;
		/* MAX_IPOPTLEN: 40 bytes of options at most. */
		if (ip.ihl * 4 + sizeof(opt) > sizeof(ip) + 40)
			return -1;
		__builtin_memcpy(&old_word, &ip, 4);
		ip.ihl += sizeof(opt) >> 2;
		ip.tot_len = bpf_htons(bpf_ntohs(ip.tot_len) + sizeof(opt));
		__builtin_memcpy(&new_word, &ip, 4);
		sum = bpf_csum_diff(&old_word, 4, &new_word, 4, 0);
		if (sum < 0)
			return -1;
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&opt, sizeof(opt), sum);
		if (sum < 0 ||
		    bpf_skb_adjust_room(skb, sizeof(opt), BPF_ADJ_ROOM_NET, 0) ||
		    bpf_skb_store_bytes(skb, f->l3_off + sizeof(ip), &opt, sizeof(opt), 0) ||
		    bpf_skb_store_bytes(skb, f->l3_off, &new_word, 4, 0) ||
		    bpf_l3_csum_replace(skb, f->l3_off + offsetof(struct iphdr, check), 0, sum, 0))
			return -1;
		return 0;
	}
	struct dsr_opt_v6 opt = {
		.hdrlen = DSR_IPV6_EXT_LEN, .opt_type = DSR_IPV6_OPT_TYPE, .opt_len = DSR_IPV6_OPT_LEN,
		.port = frontend_port,
	};
	struct ipv6hdr ip6;
	__u8 nexthdr = IPPROTO_DSTOPTS;
	__be16 payload_len;

	if (bpf_skb_load_bytes(skb, f->l3_off, &ip6, sizeof(ip6)))
		return -1;
	/* A packet that has extension headers already is left as it is (Cilium's too). */
	if (ip6.nexthdr != IPPROTO_TCP && ip6.nexthdr != IPPROTO_UDP)
		return 0;
	opt.nexthdr = ip6.nexthdr;
	__builtin_memcpy(opt.addr, frontend->v6, 16);
	payload_len = bpf_htons(bpf_ntohs(ip6.payload_len) + sizeof(opt));
	/* The L4 checksum's pseudo-header counts the upper-layer length only: unchanged. */
	if (bpf_skb_adjust_room(skb, sizeof(opt), BPF_ADJ_ROOM_NET, 0) ||
	    bpf_skb_store_bytes(skb, f->l3_off + sizeof(ip6), &opt, sizeof(opt), 0) ||
	    bpf_skb_store_bytes(skb, f->l3_off + offsetof(struct ipv6hdr, nexthdr), &nexthdr, 1, 0) ||
	    bpf_skb_store_bytes(skb, f->l3_off + offsetof(struct ipv6hdr, payload_len), &payload_len, 2, 0))
		return -1;
	return 0;
}

/* nodeport_extract_dsr_v4 / _v6: the frontend a request's DSR option carries. 0 when found. */
static __always_inline int dsr_extract(struct __sk_buff *skb, const struct flow *f, union addr *frontend, __be16 *port)
{
	if (f->family == ETH_P_IP) {
		struct dsr_opt_v4 opt;

		if (f->l4_off - f->l3_off < sizeof(struct iphdr) + sizeof(opt) ||
		    bpf_skb_load_bytes(skb, f->l3_off + sizeof(struct iphdr), &opt, sizeof(opt)) ||
		    opt.type != DSR_IPV4_OPT_TYPE || opt.len != DSR_IPV4_OPT_LEN)
			return -1;
		frontend->v4 = bpf_htonl(opt.addr);
		*port = bpf_htons(opt.port);
		return 0;
	}
	struct dsr_opt_v6 opt;

	if (!f->dstopt_off || bpf_skb_load_bytes(skb, f->dstopt_off, &opt, sizeof(opt)) ||
	    opt.opt_type != DSR_IPV6_OPT_TYPE || opt.opt_len != DSR_IPV6_OPT_LEN)
		return -1;
	__builtin_memcpy(frontend->v6, opt.addr, 16);
	*port = opt.port;
	return 0;
}

// ---------------------------------------------------------------------------------------------
// The NodePort frontend (nodeport_lb4/6) and the reverse DNAT (rev_nodeport_lb4/6).

/* The remote backend of a DNATed request: SNAT or DSR, then out toward the backend's node. */
static __always_inline int nodeport_remote(struct __sk_buff *skb, struct flow *f,
					   const union addr *frontend, __be16 frontend_port)
{
	if (DSR_ENABLED ? dsr_set_opt(skb, f, frontend, frontend_port) : snat_nat(skb, f))
		return TC_ACT_SHOT;
	return fib_redirect(skb, f);
}

static __always_inline int nodeport_lb4(struct __sk_buff *skb, struct flow *f)
{
	struct lb4_key key = {
		.address = f->daddr.v4, .dport = f->dport, .proto = f->proto,
		.scope = LB_LOOKUP_SCOPE_EXT,
	};
	struct ct4_tuple tuple = {
		.daddr = f->daddr.v4, .saddr = f->saddr.v4, .dport = f->dport, .sport = f->sport,
		.nexthdr = f->proto, .flags = CT_TUPLE_SERVICE,
	};
	struct lb4_backend *backend = NULL;
	struct lb_service *svc;
	struct ct_entry *ct;
	union addr to, frontend = f->daddr;
	__be16 frontend_port = f->dport;

	svc = bpf_map_lookup_elem(&lb4_services, &key);
	if (!svc || !svc->count)
		return -1;
	/* A ClusterIP is not reachable from outside the cluster (Cilium: DROP_IS_CLUSTER_IP). */
	if (!(svc->flags & SVC_FLAG_ROUTABLE))
		return TC_ACT_SHOT;

	ct = bpf_map_lookup_elem(&ct4_global, &tuple);
	if (ct)
		backend = bpf_map_lookup_elem(&lb4_backends, &ct->backend_id);
	if (!backend) {
		struct ct_entry entry = { .rev_nat_index = svc->rev_nat_index };
		struct lb_service *slot;
		struct ct4_tuple reply;

		key.backend_slot = bpf_get_prandom_u32() % svc->count + 1;
		slot = bpf_map_lookup_elem(&lb4_services, &key);
		if (!slot)
			return TC_ACT_SHOT;
		entry.backend_id = slot->backend_id;
		backend = bpf_map_lookup_elem(&lb4_backends, &entry.backend_id);
		if (!backend)
			return TC_ACT_SHOT;
		reply = (struct ct4_tuple){
			.daddr = f->saddr.v4, .saddr = backend->address, .dport = f->sport,
			.sport = backend->port, .nexthdr = f->proto, .flags = CT_TUPLE_REPLY,
		};
		bpf_map_update_elem(&ct4_global, &tuple, &entry, BPF_ANY);
		bpf_map_update_elem(&ct4_global, &reply, &entry, BPF_ANY);
	}
	to.v4 = backend->address;
	if (rewrite_dst(skb, f, &to, backend->port))
		return TC_ACT_SHOT;
	if (local_pod(f->family, &f->daddr))
		return TC_PASS;
	return nodeport_remote(skb, f, &frontend, frontend_port);
}

static __always_inline int nodeport_lb6(struct __sk_buff *skb, struct flow *f)
{
	struct lb6_key key = { .dport = f->dport, .proto = f->proto, .scope = LB_LOOKUP_SCOPE_EXT };
	struct ct6_tuple tuple = {
		.dport = f->dport, .sport = f->sport, .nexthdr = f->proto, .flags = CT_TUPLE_SERVICE,
	};
	struct lb6_backend *backend = NULL;
	struct lb_service *svc;
	struct ct_entry *ct;
	union addr to, frontend = f->daddr;
	__be16 frontend_port = f->dport;

	__builtin_memcpy(key.address, f->daddr.v6, 16);
	svc = bpf_map_lookup_elem(&lb6_services, &key);
	if (!svc || !svc->count)
		return -1;
	if (!(svc->flags & SVC_FLAG_ROUTABLE))
		return TC_ACT_SHOT;

	__builtin_memcpy(tuple.daddr, f->daddr.v6, 16);
	__builtin_memcpy(tuple.saddr, f->saddr.v6, 16);
	ct = bpf_map_lookup_elem(&ct6_global, &tuple);
	if (ct)
		backend = bpf_map_lookup_elem(&lb6_backends, &ct->backend_id);
	if (!backend) {
		struct ct_entry entry = { .rev_nat_index = svc->rev_nat_index };
		struct ct6_tuple reply = {
			.dport = f->sport, .nexthdr = f->proto, .flags = CT_TUPLE_REPLY,
		};
		struct lb_service *slot;

		key.backend_slot = bpf_get_prandom_u32() % svc->count + 1;
		slot = bpf_map_lookup_elem(&lb6_services, &key);
		if (!slot)
			return TC_ACT_SHOT;
		entry.backend_id = slot->backend_id;
		backend = bpf_map_lookup_elem(&lb6_backends, &entry.backend_id);
		if (!backend)
			return TC_ACT_SHOT;
		__builtin_memcpy(reply.daddr, f->saddr.v6, 16);
		__builtin_memcpy(reply.saddr, backend->address, 16);
		reply.sport = backend->port;
		bpf_map_update_elem(&ct6_global, &tuple, &entry, BPF_ANY);
		bpf_map_update_elem(&ct6_global, &reply, &entry, BPF_ANY);
	}
	__builtin_memcpy(to.v6, backend->address, 16);
	if (rewrite_dst(skb, f, &to, backend->port))
		return TC_ACT_SHOT;
	if (local_pod(f->family, &f->daddr))
		return TC_PASS;
	return nodeport_remote(skb, f, &frontend, frontend_port);
}

/* rev_nodeport_lb4/6 (lb4_rev_nat): a reply of a remembered flow gets the frontend's address and
 * port as its source. 1 when translated, 0 when the flow is not remembered, -1 on error. */
static __always_inline int rev_nodeport_lb4(struct __sk_buff *skb, struct flow *f)
{
	struct ct4_tuple tuple = {
		.daddr = f->daddr.v4, .saddr = f->saddr.v4, .dport = f->dport, .sport = f->sport,
		.nexthdr = f->proto, .flags = CT_TUPLE_REPLY,
	};
	struct lb4_reverse_nat *nat;
	struct ct_entry *ct;
	union addr to;

	ct = bpf_map_lookup_elem(&ct4_global, &tuple);
	if (!ct)
		return 0;
	nat = bpf_map_lookup_elem(&lb4_reverse_nat, &ct->rev_nat_index);
	if (!nat)
		return 0;
	to.v4 = nat->address;
	return rewrite_src(skb, f, &to, nat->port) ? -1 : 1;
}

static __always_inline int rev_nodeport_lb6(struct __sk_buff *skb, struct flow *f)
{
	struct ct6_tuple tuple = {
		.dport = f->dport, .sport = f->sport, .nexthdr = f->proto, .flags = CT_TUPLE_REPLY,
	};
	struct lb6_reverse_nat *nat;
	struct ct_entry *ct;
	union addr to;

	__builtin_memcpy(tuple.daddr, f->daddr.v6, 16);
	__builtin_memcpy(tuple.saddr, f->saddr.v6, 16);
	ct = bpf_map_lookup_elem(&ct6_global, &tuple);
	if (!ct)
		return 0;
	nat = bpf_map_lookup_elem(&lb6_reverse_nat, &ct->rev_nat_index);
	if (!nat)
		return 0;
	__builtin_memcpy(to.v6, nat->address, 16);
	return rewrite_src(skb, f, &to, nat->port) ? -1 : 1;
}

static __always_inline int rev_nodeport_lb(struct __sk_buff *skb, struct flow *f)
{
	return f->family == ETH_P_IP ? rev_nodeport_lb4(skb, f) : rev_nodeport_lb6(skb, f);
}

SEC("tc/nodeport")
int lb_nodeport(struct __sk_buff *skb)
{
	struct flow f = {};
	int ret;

	if (parse(skb, &f))
		return TC_PASS;
	ret = f.family == ETH_P_IP ? nodeport_lb4(skb, &f) : nodeport_lb6(skb, &f);
	if (ret != -1)
		return ret;
	/* No frontend: a reply from a remote backend to an SNAT port of the node
	 * (CILIUM_CALL_IPV4_NODEPORT_NAT_INGRESS, then rev_nodeport_lb4 and fib_redirect_v4). */
	ret = snat_rev_nat(skb, &f);
	if (ret == 0)
		return TC_PASS;
	if (ret < 0 || rev_nodeport_lb(skb, &f) != 1)
		return TC_ACT_SHOT;
	return fib_redirect(skb, &f);
}

SEC("tc/revnat")
int lb_revnat(struct __sk_buff *skb)
{
	struct flow f = {};

	if (parse(skb, &f))
		return TC_PASS;
	return rev_nodeport_lb(skb, &f) < 0 ? TC_ACT_SHOT : TC_PASS;
}

SEC("tc/dsr-ingress")
int lb_dsr_ingress(struct __sk_buff *skb)
{
	struct flow f = {};
	union nat_tuple reply;
	union nat_value state;
	union addr frontend;
	__be16 port;

	if (parse(skb, &f) || dsr_extract(skb, &f, &frontend, &port))
		return TC_PASS;
	/* snat_v4_create_dsr: the reply's tuple, leaving this node, to the frontend as its source. */
	nat_tuple(&reply, f.family, &f.daddr, f.dport, &f.saddr, f.sport, f.proto, NAT_TUPLE_OUT);
	nat_value(&state, f.family, &frontend, port);
	if (nat_update(f.family, &reply, &state, BPF_ANY))
		return TC_ACT_SHOT;
	return TC_PASS;
}

SEC("tc/dsr-egress")
int lb_dsr_egress(struct __sk_buff *skb)
{
	struct flow f = {};
	union nat_tuple tuple;
	union addr to;
	__be16 to_port;

	if (parse(skb, &f))
		return TC_PASS;
	nat_tuple(&tuple, f.family, &f.saddr, f.sport, &f.daddr, f.dport, f.proto, NAT_TUPLE_OUT);
	if (nat_lookup(f.family, &tuple, &to, &to_port))
		return TC_PASS;
	return rewrite_src(skb, &f, &to, to_port) ? TC_ACT_SHOT : TC_PASS;
}
