// SPDX-License-Identifier: GPL-2.0
/* The connect call's stamps: two cgroup hooks on a TCP connect() from the client pod (the clusterip
 * path's setup runs), timing the socket calls' part of a handshake before its SYN exists. Cilium's
 * socket load balancer (bpf/bpf_sock.c, cil_sock4_connect) translates the ClusterIP inside this
 * call, so no packet ever walks a Service table; the two stamps enclose it.
 *
 *   hc_call4 / hc_call6  HOP_F_CONNECT_CALL: on the client container's own cgroup. A cgroup's
 *                        programs run before its ancestors' (kernel/bpf/cgroup.c,
 *                        compute_effective_progs), so this runs before any Service translation
 *                        attached higher up (Cilium at the node's root cgroup).
 *   hc_done4 / hc_done6  HOP_F_CONNECT_DONE: on the cgroup of the socket load balancer, attached
 *                        after it (programs of one cgroup run in attach order); where no socket hook
 *                        translates (kube-proxy), on the container's cgroup after hc_call4/6, so that
 *                        the section holds only the hooks' own cost.
 *
 * Only TCP connects to the data port are stamped (the port before any translation: the Service's
 * port, which is the data port on every path). hc_call writes the socket's cookie and its time in a
 * per-CPU slot: a cgroup's programs run on one CPU for the whole call (migration disabled), and a
 * per-CPU store costs the call about nothing beyond its clock read. hc_done reads the clock first,
 * and where the slot holds its own socket, puts both times in hop_connects under the cookie, for
 * the probe at the client pod's egress (hop-probe.c, hf_cpod_out) to write as its SYN's records.
 * The section between the two stamps is thus the programs between them plus the slot's store.
 *
 * Every program returns 1 (proceed): they never change or refuse a call. Loaded by bpftool (libbpf
 * reads the attach type from each section's name), hop_connects taken from the probes' pin.
 */
#include <linux/bpf.h>
#include <linux/in.h>

#include "hop-bpf.h"
#include "hop-maps.h"
#include "hop-ports.h"

#define SYS_PROCEED 1

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HOP_CONNECT_ENTRIES);
	__type(key, __u64);
	__type(value, struct hop_connect);
} hop_connects SEC(".maps");

/* The call under way on this CPU: its socket's cookie and HOP_F_CONNECT_CALL's time. */
struct hop_connect_call {
	__u64 cookie;
	__u64 call_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hop_connect_call);
} hop_connect_slot SEC(".maps");

static __always_inline int connect_call(struct bpf_sock_addr *ctx)
{
	/* user_port: the port in network order, in the low 16 bits. */
	__u16 port = (__u16)ctx->user_port;
	struct hop_connect_call *slot;
	__u32 zero = 0;
	__u64 cookie;

	if (ctx->protocol != IPPROTO_TCP || !hop_data_port(port))
		return SYS_PROCEED;
	slot = bpf_map_lookup_elem(&hop_connect_slot, &zero);
	if (!slot)
		return SYS_PROCEED;
	cookie = bpf_get_socket_cookie(ctx);
	slot->cookie = cookie;
	slot->call_ns = bpf_ktime_get_ns();
	return SYS_PROCEED;
}

static __always_inline int connect_done(struct bpf_sock_addr *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	struct hop_connect_call *slot;
	struct hop_connect c;
	__u32 zero = 0;
	__u64 cookie;

	slot = bpf_map_lookup_elem(&hop_connect_slot, &zero);
	if (!slot || !slot->cookie)
		return SYS_PROCEED;
	cookie = bpf_get_socket_cookie(ctx);
	if (cookie != slot->cookie)
		return SYS_PROCEED;
	c.call_ns = slot->call_ns;
	c.done_ns = now;
	slot->cookie = 0;
	bpf_map_update_elem(&hop_connects, &cookie, &c, BPF_ANY);
	return SYS_PROCEED;
}

SEC("cgroup/connect4")
int hc_call4(struct bpf_sock_addr *ctx)
{
	return connect_call(ctx);
}

SEC("cgroup/connect6")
int hc_call6(struct bpf_sock_addr *ctx)
{
	return connect_call(ctx);
}

SEC("cgroup/connect4")
int hc_done4(struct bpf_sock_addr *ctx)
{
	return connect_done(ctx);
}

SEC("cgroup/connect6")
int hc_done6(struct bpf_sock_addr *ctx)
{
	return connect_done(ctx);
}
