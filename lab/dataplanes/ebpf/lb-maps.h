/* Maps of the lab's tc service load balancer, laid out like Cilium's (bpf/lib/common.h, 1.17;
 * the NAT maps as bpf/lib/nat.h's).
 *
 * Userspace (lab/dataplanes/ebpf/service-maps.ts) writes the service, backend and reverse-NAT maps through
 * `bpftool batch`; it encodes the same layouts byte by byte, so a change here must be made there.
 * Byte order: addresses and L4 ports are network order (__be*), every other integer host order.
 *
 * All maps are pinned by name under <bpffs>/tc/globals/, so the ingress and the egress program
 * (two `tc filter add` invocations) share one instance of each.
 */
#ifndef LAB_LB_MAPS_H
#define LAB_LB_MAPS_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

/* Size of the service, backend and reverse-NAT maps: Cilium's bpf.lbMapMax (default 65536).
 * The loader passes the value it needs with -DLB_MAP_MAX=... */
#ifndef LB_MAP_MAX
#define LB_MAP_MAX 65536
#endif
/* Conntrack entries: Cilium's ctAnyMax/ctTcpMax, here one LRU map per family for TCP and UDP. */
#ifndef CT_MAP_MAX
#define CT_MAP_MAX 65536
#endif
/* NAT entries: Cilium's bpf.natMax (default 524288), here the size of the conntrack maps. */
#ifndef NAT_MAP_MAX
#define NAT_MAP_MAX CT_MAP_MAX
#endif

/* lb4_key.scope: external traffic sees the EXT entry (Cilium LB_LOOKUP_SCOPE_EXT). */
#define LB_LOOKUP_SCOPE_EXT 0
#define LB_LOOKUP_SCOPE_INT 1

/* lb_service.flags (Cilium enum svc_flags). */
#define SVC_FLAG_NODEPORT    (1 << 1)
#define SVC_FLAG_LOCAL_SCOPE (1 << 2)
#define SVC_FLAG_ROUTABLE    (1 << 6)

/* ct tuple flags: Cilium TUPLE_F_IN (1) and TUPLE_F_SERVICE (4). */
#define CT_TUPLE_REPLY   1
#define CT_TUPLE_SERVICE 4

/* Cilium lb4_key, 12 bytes. One entry per frontend slot:
 * backend_slot 0 is the frontend itself (its value carries count), 1..count hold backend ids. */
struct lb4_key {
	__be32 address;     /* frontend: ClusterIP or node address */
	__be16 dport;       /* frontend port: Service port or nodePort */
	__u16 backend_slot;
	__u8 proto;         /* IPPROTO_TCP / IPPROTO_UDP (Cilium's --bpf-lb-proto-diff) */
	__u8 scope;         /* LB_LOOKUP_SCOPE_* */
	__u8 pad[2];
};

/* Cilium lb6_key, 24 bytes. */
struct lb6_key {
	__u8 address[16];
	__be16 dport;
	__u16 backend_slot;
	__u8 proto;
	__u8 scope;
	__u8 pad[2];
};

/* Cilium lb4_service / lb6_service (same layout), 12 bytes. */
struct lb_service {
	__u32 backend_id;    /* slot > 0: key of lb4_backends / lb6_backends */
	__u16 count;         /* slot 0: number of backend slots */
	__u16 rev_nat_index; /* service id: key of lb4_reverse_nat / lb6_reverse_nat */
	__u8 flags;          /* SVC_FLAG_* */
	__u8 flags2;
	__u16 qcount;        /* quarantined backends; always 0 here */
};

/* Cilium lb4_backend, 12 bytes; key: __u32 backend id. */
struct lb4_backend {
	__be32 address;      /* pod address */
	__be16 port;         /* targetPort */
	__u8 proto;
	__u8 flags;
	__u16 cluster_id;
	__u8 zone;
	__u8 pad;
};

/* Cilium lb6_backend, 24 bytes. */
struct lb6_backend {
	__u8 address[16];
	__be16 port;
	__u8 proto;
	__u8 flags;
	__u16 cluster_id;
	__u8 zone;
	__u8 pad;
};

/* Cilium lb4_reverse_nat (packed, 6 bytes); key: __u16 rev_nat_index.
 * The frontend a reply must appear to come from. */
struct lb4_reverse_nat {
	__be32 address;
	__be16 port;
} __attribute__((packed));

/* Cilium lb6_reverse_nat (packed, 18 bytes). */
struct lb6_reverse_nat {
	__u8 address[16];
	__be16 port;
} __attribute__((packed));

/* Cilium ipv4_ct_tuple, padded to 16 bytes instead of packed. Entries never expire (Cilium's CT
 * GC and TCP state tracking are left out); the LRU map evicts the least recently used when full.
 * Two entries per flow:
 * CT_TUPLE_SERVICE: the request as it arrives (daddr = frontend), remembers the chosen backend
 *   (Cilium's CT_SERVICE entry);
 * CT_TUPLE_REPLY: the reply as it leaves the node (saddr = backend), leads to the reverse NAT
 *   (Cilium's CT entry with node_port = 1 that rev_nodeport_lb4 looks up). */
struct ct4_tuple {
	__be32 daddr;
	__be32 saddr;
	__be16 dport;
	__be16 sport;
	__u8 nexthdr;
	__u8 flags;          /* CT_TUPLE_* */
	__u8 pad[2];
};

/* Cilium ipv6_ct_tuple, padded to 40 bytes. */
struct ct6_tuple {
	__u8 daddr[16];
	__u8 saddr[16];
	__be16 dport;
	__be16 sport;
	__u8 nexthdr;
	__u8 flags;
	__u8 pad[2];
};

/* snat4_external / snat6_external keys: the ct tuples above with these flags (Cilium's NAT
 * direction in ipv4_ct_tuple.flags: TUPLE_F_OUT 0, TUPLE_F_IN 1). */
#define NAT_TUPLE_OUT 0
#define NAT_TUPLE_IN  1

/* Cilium ipv4_nat_entry, reduced to the address and port it translates to (its created/needs_ct
 * bookkeeping is left out; entries never expire here either, the LRU map evicts when full).
 * Entries, keyed by ct4_tuple, of two kinds:
 *
 * NodePort SNAT on the entry node (snat_v4_new_mapping, loadBalancer.mode snat), two per flow:
 *   NAT_TUPLE_OUT {saddr client, sport client port, daddr backend, dport backend port}
 *     -> {to node address, to SNAT port}: how the request leaves (snat_v4_nat);
 *   NAT_TUPLE_IN  {saddr backend, sport backend port, daddr node address, dport SNAT port}
 *     -> {to client, to client port}: how the reply is given back (snat_v4_rev_nat).
 *   The SNAT port is the client's own when it is in [SNAT_PORT_MIN, SNAT_PORT_MAX] and free,
 *   else one picked from that range; the IN entry's key is what makes a port taken.
 * DSR on the backend's node (snat_v4_create_dsr, loadBalancer.mode dsr), one per flow:
 *   NAT_TUPLE_OUT {saddr backend, sport backend port, daddr client, dport client port}
 *     -> {to frontend address, to frontend port}: the reply's source, from the request's DSR option. */
struct nat4_entry {
	__be32 to_addr;
	__be16 to_port;
	__u16 pad;
};

/* Cilium ipv6_nat_entry, reduced the same way; keyed by ct6_tuple. */
struct nat6_entry {
	__u8 to_addr[16];
	__be16 to_port;
	__u16 pad;
};

/* The part of Cilium's ct_entry this datapath uses. */
struct ct_entry {
	__u32 backend_id;
	__u16 rev_nat_index;
	__u16 pad;
};

#define LB_HASH_MAP(NAME, KEY, VALUE, MAX)                  \
	struct {                                            \
		__uint(type, BPF_MAP_TYPE_HASH);            \
		__uint(max_entries, MAX);                   \
		__type(key, KEY);                           \
		__type(value, VALUE);                       \
		__uint(map_flags, BPF_F_NO_PREALLOC);       \
		__uint(pinning, LIBBPF_PIN_BY_NAME);        \
	} NAME SEC(".maps")

#define LB_LRU_MAP(NAME, KEY, VALUE, MAX)                   \
	struct {                                            \
		__uint(type, BPF_MAP_TYPE_LRU_HASH);        \
		__uint(max_entries, MAX);                   \
		__type(key, KEY);                           \
		__type(value, VALUE);                       \
		__uint(pinning, LIBBPF_PIN_BY_NAME);        \
	} NAME SEC(".maps")

/* cilium_lb4_services_v2 / cilium_lb6_services_v2 */
LB_HASH_MAP(lb4_services, struct lb4_key, struct lb_service, LB_MAP_MAX);
LB_HASH_MAP(lb6_services, struct lb6_key, struct lb_service, LB_MAP_MAX);
/* cilium_lb4_backends_v3 / cilium_lb6_backends_v3 */
LB_HASH_MAP(lb4_backends, __u32, struct lb4_backend, LB_MAP_MAX);
LB_HASH_MAP(lb6_backends, __u32, struct lb6_backend, LB_MAP_MAX);
/* cilium_lb4_reverse_nat / cilium_lb6_reverse_nat */
LB_HASH_MAP(lb4_reverse_nat, __u16, struct lb4_reverse_nat, LB_MAP_MAX);
LB_HASH_MAP(lb6_reverse_nat, __u16, struct lb6_reverse_nat, LB_MAP_MAX);
/* cilium_ct_any4_global / cilium_ct_any6_global (TCP and UDP alike here) */
LB_LRU_MAP(ct4_global, struct ct4_tuple, struct ct_entry, CT_MAP_MAX);
LB_LRU_MAP(ct6_global, struct ct6_tuple, struct ct_entry, CT_MAP_MAX);
/* cilium_snat_v4_external / cilium_snat_v6_external */
LB_LRU_MAP(snat4_external, struct ct4_tuple, struct nat4_entry, NAT_MAP_MAX);
LB_LRU_MAP(snat6_external, struct ct6_tuple, struct nat6_entry, NAT_MAP_MAX);

/* ---- Socket load balancing (sock-lb.c, Cilium's bpf/bpf_sock.c) ----
 * What a socket was translated to, so that replies read from it, and getpeername(), show the
 * Service's frontend. Key: the socket cookie and the backend the socket talks to. */

/* Cilium ipv4_revnat_tuple, 16 bytes. */
struct ipv4_revnat_tuple {
	__u64 cookie;
	__be32 address;      /* backend */
	__be16 port;
	__u16 pad;
};

/* Cilium ipv4_revnat_entry, 8 bytes: the frontend the socket addressed. */
struct ipv4_revnat_entry {
	__be32 address;
	__be16 port;
	__u16 rev_nat_index;
};

/* Cilium ipv6_revnat_tuple, 32 bytes (its tail padding made explicit). */
struct ipv6_revnat_tuple {
	__u64 cookie;
	__u8 address[16];
	__be16 port;
	__u16 pad;
	__u32 pad2;
};

/* Cilium ipv6_revnat_entry, 20 bytes. */
struct ipv6_revnat_entry {
	__u8 address[16];
	__be16 port;
	__u16 rev_nat_index;
};

/* Entries of each reverse map (Cilium sizes them like the CT maps). */
#ifndef SOCK_REVNAT_MAP_MAX
#define SOCK_REVNAT_MAP_MAX CT_MAP_MAX
#endif

/* Only the socket program carries these maps: the tc object stays as it was. */
#ifdef LAB_SOCK_LB
/* cilium_lb4_reverse_sk / cilium_lb6_reverse_sk */
LB_LRU_MAP(lb4_reverse_sk, struct ipv4_revnat_tuple, struct ipv4_revnat_entry, SOCK_REVNAT_MAP_MAX);
LB_LRU_MAP(lb6_reverse_sk, struct ipv6_revnat_tuple, struct ipv6_revnat_entry, SOCK_REVNAT_MAP_MAX);
#endif

#endif /* LAB_LB_MAPS_H */
