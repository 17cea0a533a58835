// SPDX-License-Identifier: GPL-2.0
/* The lab's socket load balancer: Cilium's bpf/bpf_sock.c (1.17) reduced to what a pod talking to a
 * ClusterIP exercises. cgroup v2 hooks on the client pod's cgroup translate the Service address in
 * the socket call itself, before the first packet exists; no packet of the flow ever carries the
 * ClusterIP, so no tc program walks the Service table for it.
 *
 *   sock4_connect / sock6_connect     connect():  __sock4_xlate_fwd / __sock6_xlate_fwd
 *   sock4_sendmsg / sock6_sendmsg     sendto() on an unconnected (UDP) socket: the same
 *   sock4_recvmsg / sock6_recvmsg     recvfrom(): __sock4_xlate_rev / __sock6_xlate_rev, the reply
 *                                     reads as coming from the frontend
 *   sock4_getpeername / sock6_...     getpeername(): the same reverse translation
 *
 * The frontend lookup is the tc program's: the same pinned service, backend and reverse-NAT maps
 * (lb-maps.h), a frontend's master entry (slot 0, scope EXT) then a backend slot. The reverse
 * translation is remembered per socket cookie in lb4_reverse_sk / lb6_reverse_sk (Cilium's
 * cilium_lb4_reverse_sk / cilium_lb6_reverse_sk).
 *
 * Cilium 1.17 names the entry points cil_sock4_connect() and so on; the functions behind them are
 * named as here.
 *
 * Left out (the lab's Services have none of it): session affinity, the wildcard lookups of NodePort
 * and HostPort frontends (0.0.0.0:nodePort), external IPs (sock4_skip_xlate), local-redirect
 * policies, health-check sockets, bind/post_bind hooks, and the scope switch of two-scope
 * (externalTrafficPolicy Local) frontends, whose internal entries the map plan does not write.
 */
#define LAB_SOCK_LB 1

#include <linux/bpf.h>
#include <linux/errno.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lb-maps.h"

#define SYS_REJECT  0
#define SYS_PROCEED 1

char LICENSE[] SEC("license") = "GPL";

/* Where a socket call goes (or, reversed, where a datagram came from). */
struct sock_addr4 {
	__be32 address;
	__be16 port;
};

struct sock_addr6 {
	__u32 address[4];
	__be16 port;
};

/* ctx_dst_port: user_port holds the port in network order in its low 16 bits. */
static __always_inline __be16 ctx_dst_port(const struct bpf_sock_addr *ctx)
{
	volatile __u32 dport = ctx->user_port;

	return (__be16)dport;
}

/* ctx_set_port */
static __always_inline void ctx_set_port(struct bpf_sock_addr *ctx, __be16 port)
{
	ctx->user_port = (__u32)port;
}

/* ctx_get_v6_address / ctx_set_v6_address: user_ip6 takes 4-byte accesses only. */
static __always_inline void ctx_get_v6_address(const struct bpf_sock_addr *ctx, __u32 *addr)
{
	addr[0] = ctx->user_ip6[0];
	addr[1] = ctx->user_ip6[1];
	addr[2] = ctx->user_ip6[2];
	addr[3] = ctx->user_ip6[3];
}

static __always_inline void ctx_set_v6_address(struct bpf_sock_addr *ctx, const __u32 *addr)
{
	ctx->user_ip6[0] = addr[0];
	ctx->user_ip6[1] = addr[1];
	ctx->user_ip6[2] = addr[2];
	ctx->user_ip6[3] = addr[3];
}

/* sock_local_cookie: on kernels since 5.12 a system-wide unique id of the socket. */
static __always_inline __u64 sock_local_cookie(struct bpf_sock_addr *ctx)
{
	return bpf_get_socket_cookie(ctx);
}

/* sock_select_slot: a random backend per TCP connection; per UDP socket, its cookie (prandom
 * would send one socket's datagrams to several backends). */
static __always_inline __u64 sock_select_slot(struct bpf_sock_addr *ctx)
{
	return ctx->protocol == IPPROTO_TCP ? bpf_get_prandom_u32() : sock_local_cookie(ctx);
}

/* sock_proto_enabled: Cilium's kube-proxy replacement balances TCP and UDP sockets. */
static __always_inline int sock_proto_enabled(__u32 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP;
}

/* is_v4_in_v6: ::ffff:a.b.c.d, what a dual-stack IPv6 socket uses for an IPv4 peer. */
static __always_inline int is_v4_in_v6(const __u32 *addr)
{
	return addr[0] == 0 && addr[1] == 0 && addr[2] == bpf_htonl(0x0000ffff);
}

/* lb4_lookup_service (bpf/lib/lb.h): the frontend's master entry. */
static __always_inline struct lb_service *lb4_lookup_service(struct lb4_key *key)
{
	key->scope = LB_LOOKUP_SCOPE_EXT;
	key->backend_slot = 0;
	return bpf_map_lookup_elem(&lb4_services, key);
}

static __always_inline struct lb_service *lb6_lookup_service(struct lb6_key *key)
{
	key->scope = LB_LOOKUP_SCOPE_EXT;
	key->backend_slot = 0;
	return bpf_map_lookup_elem(&lb6_services, key);
}

/* sock4_update_revnat: what replies on this socket must read as. */
static __always_inline int sock4_update_revnat(struct bpf_sock_addr *ctx, const struct lb4_backend *backend,
					       const struct lb4_key *orig_key, __u16 rev_nat_index)
{
	struct ipv4_revnat_tuple key = {
		.cookie = sock_local_cookie(ctx), .address = backend->address, .port = backend->port,
	};
	struct ipv4_revnat_entry val = {
		.address = orig_key->address, .port = orig_key->dport, .rev_nat_index = rev_nat_index,
	};
	struct ipv4_revnat_entry *tmp;

	tmp = bpf_map_lookup_elem(&lb4_reverse_sk, &key);
	if (tmp && tmp->address == val.address && tmp->port == val.port && tmp->rev_nat_index == val.rev_nat_index)
		return 0;
	return bpf_map_update_elem(&lb4_reverse_sk, &key, &val, BPF_ANY);
}

static __always_inline int sock6_update_revnat(struct bpf_sock_addr *ctx, const struct lb6_backend *backend,
					       const struct lb6_key *orig_key, __u16 rev_nat_index)
{
	struct ipv6_revnat_tuple key = { .cookie = sock_local_cookie(ctx), .port = backend->port };
	struct ipv6_revnat_entry val = { .port = orig_key->dport, .rev_nat_index = rev_nat_index };

	__builtin_memcpy(key.address, backend->address, 16);
	__builtin_memcpy(val.address, orig_key->address, 16);
	return bpf_map_update_elem(&lb6_reverse_sk, &key, &val, BPF_ANY);
}

/* __sock4_xlate_fwd: frontend -> backend, in place. Cilium passes a stack copy of the context for
 * a v4-in-v6 address; here the address travels on its own and ctx serves the helpers. */
static __always_inline int __sock4_xlate_fwd(struct bpf_sock_addr *ctx, struct sock_addr4 *to, const int udp_only)
{
	__u32 proto = ctx->protocol;
	struct lb4_key key = { .address = to->address, .dport = to->port, .proto = proto };
	struct lb4_key orig_key;
	struct lb_service *svc, *slot;
	struct lb4_backend *backend;

	if (!udp_only && !sock_proto_enabled(proto))
		return -EOPNOTSUPP;
	svc = lb4_lookup_service(&key);
	if (!svc)
		return -ENXIO;
	if (svc->count == 0)
		return -EHOSTUNREACH;
	orig_key = key;
	key.backend_slot = (sock_select_slot(ctx) % svc->count) + 1;
	slot = bpf_map_lookup_elem(&lb4_services, &key);
	if (!slot)
		return -ENOENT;
	backend = bpf_map_lookup_elem(&lb4_backends, &slot->backend_id);
	if (!backend)
		return -ENOENT;
	if (sock4_update_revnat(ctx, backend, &orig_key, svc->rev_nat_index) < 0)
		return -ENOMEM;
	to->address = backend->address;
	to->port = backend->port;
	return 0;
}

/* __sock4_xlate_rev: backend -> the frontend this socket addressed, if it is still that frontend's. */
static __always_inline int __sock4_xlate_rev(struct bpf_sock_addr *ctx, struct sock_addr4 *from)
{
	struct ipv4_revnat_tuple key = { .cookie = sock_local_cookie(ctx), .address = from->address, .port = from->port };
	struct ipv4_revnat_entry *val;
	struct lb_service *svc;
	struct lb4_key svc_key;

	val = bpf_map_lookup_elem(&lb4_reverse_sk, &key);
	if (!val)
		return -ENXIO;
	svc_key = (struct lb4_key){ .address = val->address, .dport = val->port, .proto = ctx->protocol };
	svc = lb4_lookup_service(&svc_key);
	/* The Service went or changed its id: a stale entry (Cilium: REASON_LB_REVNAT_STALE). */
	if (!svc || svc->rev_nat_index != val->rev_nat_index || svc->count == 0) {
		bpf_map_delete_elem(&lb4_reverse_sk, &key);
		return -ENOENT;
	}
	from->address = val->address;
	from->port = val->port;
	return 0;
}

static __always_inline int __sock6_xlate_fwd(struct bpf_sock_addr *ctx, struct sock_addr6 *to, const int udp_only)
{
	__u32 proto = ctx->protocol;
	struct lb6_key key = { .dport = to->port, .proto = proto };
	struct lb6_key orig_key;
	struct lb_service *svc, *slot;
	struct lb6_backend *backend;

	if (!udp_only && !sock_proto_enabled(proto))
		return -EOPNOTSUPP;
	__builtin_memcpy(key.address, to->address, 16);
	svc = lb6_lookup_service(&key);
	if (!svc)
		return -ENXIO;
	if (svc->count == 0)
		return -EHOSTUNREACH;
	orig_key = key;
	key.backend_slot = (sock_select_slot(ctx) % svc->count) + 1;
	slot = bpf_map_lookup_elem(&lb6_services, &key);
	if (!slot)
		return -ENOENT;
	backend = bpf_map_lookup_elem(&lb6_backends, &slot->backend_id);
	if (!backend)
		return -ENOENT;
	if (sock6_update_revnat(ctx, backend, &orig_key, svc->rev_nat_index) < 0)
		return -ENOMEM;
	__builtin_memcpy(to->address, backend->address, 16);
	to->port = backend->port;
	return 0;
}

static __always_inline int __sock6_xlate_rev(struct bpf_sock_addr *ctx, struct sock_addr6 *from)
{
	struct ipv6_revnat_tuple key = { .cookie = sock_local_cookie(ctx), .port = from->port };
	struct ipv6_revnat_entry *val;
	struct lb_service *svc;
	struct lb6_key svc_key = {};

	__builtin_memcpy(key.address, from->address, 16);
	val = bpf_map_lookup_elem(&lb6_reverse_sk, &key);
	if (!val)
		return -ENXIO;
	__builtin_memcpy(svc_key.address, val->address, 16);
	svc_key.dport = val->port;
	svc_key.proto = ctx->protocol;
	svc = lb6_lookup_service(&svc_key);
	if (!svc || svc->rev_nat_index != val->rev_nat_index || svc->count == 0) {
		bpf_map_delete_elem(&lb6_reverse_sk, &key);
		return -ENOENT;
	}
	__builtin_memcpy(from->address, val->address, 16);
	from->port = val->port;
	return 0;
}

/* The IPv4 entry points: connect, sendmsg (unconnected UDP), recvmsg and getpeername. */
static __always_inline int sock4_fwd(struct bpf_sock_addr *ctx, const int udp_only)
{
	struct sock_addr4 to = { .address = ctx->user_ip4, .port = ctx_dst_port(ctx) };
	int err = __sock4_xlate_fwd(ctx, &to, udp_only);

	/* A frontend without backends, or no room for the reverse entry: the call fails, as in Cilium
	 * (which sets -EHOSTUNREACH / -ENOMEM as the call's error where the kernel lets it; here EPERM). */
	if (err == -EHOSTUNREACH || err == -ENOMEM)
		return SYS_REJECT;
	if (err == 0) {
		ctx->user_ip4 = to.address;
		ctx_set_port(ctx, to.port);
	}
	return SYS_PROCEED;
}

static __always_inline int sock4_rev(struct bpf_sock_addr *ctx)
{
	struct sock_addr4 from = { .address = ctx->user_ip4, .port = ctx_dst_port(ctx) };

	if (__sock4_xlate_rev(ctx, &from) == 0) {
		ctx->user_ip4 = from.address;
		ctx_set_port(ctx, from.port);
	}
	return SYS_PROCEED;
}

SEC("cgroup/connect4")
int sock4_connect(struct bpf_sock_addr *ctx)
{
	return sock4_fwd(ctx, 0);
}

SEC("cgroup/sendmsg4")
int sock4_sendmsg(struct bpf_sock_addr *ctx)
{
	return sock4_fwd(ctx, 1);
}

SEC("cgroup/recvmsg4")
int sock4_recvmsg(struct bpf_sock_addr *ctx)
{
	return sock4_rev(ctx);
}

SEC("cgroup/getpeername4")
int sock4_getpeername(struct bpf_sock_addr *ctx)
{
	return sock4_rev(ctx);
}

/* The IPv6 entry points. A v4-in-v6 address goes through the IPv4 translation and comes back
 * mapped (sock6_xlate_v4_in_v6, sock6_xlate_rev_v4_in_v6). */
static __always_inline int sock6_fwd(struct bpf_sock_addr *ctx, const int udp_only)
{
	struct sock_addr6 to = { .port = ctx_dst_port(ctx) };
	int err;

	ctx_get_v6_address(ctx, to.address);
	if (is_v4_in_v6(to.address)) {
		/* sock6_xlate_v4_in_v6 */
		struct sock_addr4 to4 = { .address = to.address[3], .port = to.port };

		err = __sock4_xlate_fwd(ctx, &to4, udp_only);
		to.address[3] = to4.address;
		to.port = to4.port;
	} else {
		err = __sock6_xlate_fwd(ctx, &to, udp_only);
	}
	if (err == -EHOSTUNREACH || err == -ENOMEM)
		return SYS_REJECT;
	if (err == 0) {
		ctx_set_v6_address(ctx, to.address);
		ctx_set_port(ctx, to.port);
	}
	return SYS_PROCEED;
}

static __always_inline int sock6_rev(struct bpf_sock_addr *ctx)
{
	struct sock_addr6 from = { .port = ctx_dst_port(ctx) };
	int err;

	ctx_get_v6_address(ctx, from.address);
	if (is_v4_in_v6(from.address)) {
		struct sock_addr4 from4 = { .address = from.address[3], .port = from.port };

		err = __sock4_xlate_rev(ctx, &from4);
		from.address[3] = from4.address;
		from.port = from4.port;
	} else {
		err = __sock6_xlate_rev(ctx, &from);
	}
	if (err == 0) {
		ctx_set_v6_address(ctx, from.address);
		ctx_set_port(ctx, from.port);
	}
	return SYS_PROCEED;
}

SEC("cgroup/connect6")
int sock6_connect(struct bpf_sock_addr *ctx)
{
	return sock6_fwd(ctx, 0);
}

SEC("cgroup/sendmsg6")
int sock6_sendmsg(struct bpf_sock_addr *ctx)
{
	return sock6_fwd(ctx, 1);
}

SEC("cgroup/recvmsg6")
int sock6_recvmsg(struct bpf_sock_addr *ctx)
{
	return sock6_rev(ctx);
}

SEC("cgroup/getpeername6")
int sock6_getpeername(struct bpf_sock_addr *ctx)
{
	return sock6_rev(ctx);
}
