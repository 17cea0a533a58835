// SPDX-License-Identifier: GPL-2.0
/* The lab's Service load balancer: Cilium's NodePort path for a local backend, reduced to what
 * the lab exercises (bpf/lib/nodeport.h nodeport_lb4/6 and rev_nodeport_lb4/6, bpf/lib/lb.h).
 *
 *   lb_nodeport  tc ingress of the node's uplink (Cilium: cil_from_netdev).
 *                Frontend lookup (address, port, protocol), backend choice remembered in
 *                conntrack, DNAT to the backend, then the kernel routes the packet to the pod
 *                (Cilium on 5.4 with legacy host routing: CTX_ACT_OK for a local backend).
 *   lb_revnat    tc egress of the node's uplink: replies of remembered flows get the frontend
 *                address and port back. Cilium does this when the reply leaves the pod and then
 *                redirects it to the uplink; here the kernel routes it first, because a packet
 *                entering the node with the node's own source address would be dropped as martian.
 *
 * IPv4 and IPv6 (no extension headers), TCP and UDP. Everything else, and fragments, pass
 * untouched. The layouts of the maps are in lb-maps.h.
 */
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lb-maps.h"

/* A packet this program lets through goes on to the hook's next filter (the lab's hop probe after
 * the reverse NAT, lab/hops/hop-probe.c); with none, the kernel passes it as with TC_ACT_OK. */
#define TC_PASS TC_ACT_UNSPEC

char LICENSE[] SEC("license") = "GPL";

union addr {
	__be32 v4;
	__u8 v6[16];
};

/* Where a packet's L3/L4 fields are, and their values. */
struct flow {
	__u32 l3_off;
	__u32 l4_off;
	__u32 csum_off;
	__u16 family; /* ETH_P_IP or ETH_P_IPV6 */
	__u8 proto;
	__be16 sport;
	__be16 dport;
	union addr saddr;
	union addr daddr;
};

#define IP4_SADDR_OFF(f) ((f)->l3_off + offsetof(struct iphdr, saddr))
#define IP4_DADDR_OFF(f) ((f)->l3_off + offsetof(struct iphdr, daddr))
#define IP6_SADDR_OFF(f) ((f)->l3_off + offsetof(struct ipv6hdr, saddr))
#define IP6_DADDR_OFF(f) ((f)->l3_off + offsetof(struct ipv6hdr, daddr))
#define SPORT_OFF(f) ((f)->l4_off)
#define DPORT_OFF(f) ((f)->l4_off + 2)

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
	return 0;
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

static __always_inline int nodeport_lb4(struct __sk_buff *skb, const struct flow *f)
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
	union addr to;

	svc = bpf_map_lookup_elem(&lb4_services, &key);
	if (!svc || !svc->count)
		return TC_PASS;
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
	if (rewrite(skb, f, IP4_DADDR_OFF(f), &f->daddr, &to, DPORT_OFF(f), f->dport, backend->port))
		return TC_ACT_SHOT;
	return TC_PASS;
}

static __always_inline int nodeport_lb6(struct __sk_buff *skb, const struct flow *f)
{
	struct lb6_key key = { .dport = f->dport, .proto = f->proto, .scope = LB_LOOKUP_SCOPE_EXT };
	struct ct6_tuple tuple = {
		.dport = f->dport, .sport = f->sport, .nexthdr = f->proto, .flags = CT_TUPLE_SERVICE,
	};
	struct lb6_backend *backend = NULL;
	struct lb_service *svc;
	struct ct_entry *ct;
	union addr to;

	__builtin_memcpy(key.address, f->daddr.v6, 16);
	svc = bpf_map_lookup_elem(&lb6_services, &key);
	if (!svc || !svc->count)
		return TC_PASS;
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
	if (rewrite(skb, f, IP6_DADDR_OFF(f), &f->daddr, &to, DPORT_OFF(f), f->dport, backend->port))
		return TC_ACT_SHOT;
	return TC_PASS;
}

static __always_inline int rev_nodeport_lb4(struct __sk_buff *skb, const struct flow *f)
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
		return TC_PASS;
	nat = bpf_map_lookup_elem(&lb4_reverse_nat, &ct->rev_nat_index);
	if (!nat)
		return TC_PASS;
	to.v4 = nat->address;
	if (rewrite(skb, f, IP4_SADDR_OFF(f), &f->saddr, &to, SPORT_OFF(f), f->sport, nat->port))
		return TC_ACT_SHOT;
	return TC_PASS;
}

static __always_inline int rev_nodeport_lb6(struct __sk_buff *skb, const struct flow *f)
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
		return TC_PASS;
	nat = bpf_map_lookup_elem(&lb6_reverse_nat, &ct->rev_nat_index);
	if (!nat)
		return TC_PASS;
	__builtin_memcpy(to.v6, nat->address, 16);
	if (rewrite(skb, f, IP6_SADDR_OFF(f), &f->saddr, &to, SPORT_OFF(f), f->sport, nat->port))
		return TC_ACT_SHOT;
	return TC_PASS;
}

SEC("tc/nodeport")
int lb_nodeport(struct __sk_buff *skb)
{
	struct flow f = {};

	if (parse(skb, &f))
		return TC_PASS;
	return f.family == ETH_P_IP ? nodeport_lb4(skb, &f) : nodeport_lb6(skb, &f);
}

SEC("tc/revnat")
int lb_revnat(struct __sk_buff *skb)
{
	struct flow f = {};

	if (parse(skb, &f))
		return TC_PASS;
	return f.family == ETH_P_IP ? rev_nodeport_lb4(skb, &f) : rev_nodeport_lb6(skb, &f);
}
