// SPDX-License-Identifier: GPL-2.0
/* The hop probes: one tc program per measurement point (hop-maps.h, enum hop_point), each stamping
 * the packets of the measured flows with the monotonic clock as they cross it. The lab attaches the
 * programs of the path it measures (lab/hops/hop-probes.ts: the paper's twelve, or those of
 * nodeport-remote or clusterip); a worker of a deployed stack the six of its own host
 * (backends/worker-hops/).
 *
 * Selected packets: UDP to the receiver's data port (forward) or from it (return), keyed by the
 * D-ITG flow id and sequence number of their payload, which no NAT rewrites; and TCP handshakes
 * with that port, SYN forward and SYN-ACK back, keyed by the SYN's sequence number (the setup
 * profile's first packets; no NAT rewrites it, while a masquerade with random ports rewrites the
 * client's port on the way to a remote endpoint). Of the D-ITG packets 1 in HOP_SAMPLE_EVERY is
 * stamped, at every point the same ones (hop-maps.h, hop_sampled); every handshake is. Everything
 * else, and IPv4 fragments after the first, pass unstamped.
 *
 * What a probe costs (bench/hop-overhead.ts): a packet it lets pass costs a parse of its headers
 * (read where they lie in the packet, not copied) and the sample's hash; the clock read and the
 * record, most of a stamp's cost, are left for the packets it stamps.
 *
 * Most programs stamp one direction at one point. Where a path crosses one hook both ways (worker
 * 1's uplink on the paths to worker 2: the request leaves it toward worker 2 and the echo leaves it
 * toward the client), one program stamps both: a packet to the data port at its forward point, one
 * from it at its return point, testing first the direction the paper's path takes there.
 *
 * Every program returns TC_ACT_UNSPEC: the next filter of the hook (a Service dataplane's) still
 * sees the packet, and with none the packet goes on as with TC_ACT_OK.
 *
 * Built in one of these forms, chosen at compile time (hops/build.ts names them):
 *
 *   output   ring buffer (default; kernel 5.8 and later): records submitted without a wakeup, the
 *            reader drains the ring on its own clock, so a stamp costs a reserve and a commit and
 *            never an interrupt.
 *            HOP_OUTPUT_PERF: a perf event array, for kernels without a ring buffer (the paper's
 *            5.4): one perf sample per stamp into the buffer of the CPU the probe runs on, which
 *            the reader opened without wakeups per sample.
 *            Either way a stamp that could not be written is counted per point (hop_count.dropped);
 *            nothing is lost silently.
 *   maps     BTF-defined (default): libbpf reads them; bpftool loads the object (the lab) and pins
 *            the maps where told.
 *            HOP_MAPS_PINNED: BTF-defined and pinned by name: iproute2's tc built with libbpf.
 *            HOP_MAPS_LEGACY: struct bpf_elf_map in the "maps" section, pinned by name: tc's own
 *            loader of iproute2 built without libbpf (Ubuntu 20.04's 5.5), which knows no BTF maps.
 *
 * Each program sits in a section of its own, tc/<program>: tc loads one section per filter.
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

#include "hop-bpf.h"
#include "hop-maps.h"
#include "hop-ports.h"

char LICENSE[] SEC("license") = "GPL";

#if defined(HOP_MAPS_LEGACY)

#ifdef HOP_OUTPUT_PERF
struct bpf_elf_map SEC("maps") hop_events = {
	.type = BPF_MAP_TYPE_PERF_EVENT_ARRAY,
	.size_key = sizeof(__u32),
	.size_value = sizeof(__u32),
	.max_elem = HOP_MAX_CPUS,
	.pinning = PIN_GLOBAL_NS,
};
#else
struct bpf_elf_map SEC("maps") hop_ring = {
	.type = HOP_MAP_TYPE_RINGBUF,
	.max_elem = HOP_RING_BYTES,
	.pinning = PIN_GLOBAL_NS,
};
#endif
struct bpf_elf_map SEC("maps") hop_counts = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.size_key = sizeof(__u32),
	.size_value = sizeof(struct hop_count),
	.max_elem = HOP_POINTS,
	.pinning = PIN_GLOBAL_NS,
};
struct bpf_elf_map SEC("maps") hop_connects = {
	.type = BPF_MAP_TYPE_LRU_HASH,
	.size_key = sizeof(__u64),
	.size_value = sizeof(struct hop_connect),
	.max_elem = HOP_CONNECT_ENTRIES,
	.pinning = PIN_GLOBAL_NS,
};

#else /* BTF-defined maps */

#ifdef HOP_MAPS_PINNED
#define HOP_PINNING __uint(pinning, HOP_PIN_BY_NAME);
#else
#define HOP_PINNING
#endif

#ifdef HOP_OUTPUT_PERF
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, HOP_MAX_CPUS);
	HOP_PINNING
} hop_events SEC(".maps");
#else
struct {
	__uint(type, HOP_MAP_TYPE_RINGBUF);
	__uint(max_entries, HOP_RING_BYTES);
	HOP_PINNING
} hop_ring SEC(".maps");
#endif
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HOP_POINTS);
	__type(key, __u32);
	__type(value, struct hop_count);
	HOP_PINNING
} hop_counts SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HOP_CONNECT_ENTRIES);
	__type(key, __u64);
	__type(value, struct hop_connect);
	HOP_PINNING
} hop_connects SEC(".maps");

#endif

#define IP_OFFSET_MASK 0x1fff

/* The len bytes at off: in the packet's linear part where it holds them (a veth's small packets
 * always), else copied into buf through the helper; NULL past the packet's end. len is a constant
 * at every call, and the fields are read where they lie: no copy on the common path. */
static __always_inline void *header(struct __sk_buff *skb, __u32 off, void *buf, const __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (off <= 128 && data + off + len <= end)
		return data + off;
	return bpf_skb_load_bytes(skb, off, buf, len) ? NULL : buf;
}

/* The key of a packet to stamp: 0 and the key filled in, or -1 to let it pass unstamped (not a
 * measured packet, or a D-ITG packet outside the sample: hop-maps.h, hop_sampled). */
static __always_inline int select_packet(struct __sk_buff *skb, int forward, int both, __u32 *flow_id, __u32 *seq, __u8 *kind, int *matched_forward)
{
	union {
		struct iphdr ip;
		struct ipv6hdr ip6;
		struct {
			struct udphdr udp;
			__be32 payload[2];
		} d;
		struct tcphdr tcp;
	} buf;
	__u32 l4;
	__u8 proto;

	if (skb->protocol == hop_htons(ETH_P_IP)) {
		struct iphdr *ip = header(skb, ETH_HLEN, &buf, sizeof(*ip));

		if (!ip || (ip->frag_off & hop_htons(IP_OFFSET_MASK)))
			return -1;
		proto = ip->protocol;
		l4 = ETH_HLEN + ip->ihl * 4;
	} else if (skb->protocol == hop_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = header(skb, ETH_HLEN, &buf, sizeof(*ip6));

		if (!ip6)
			return -1;
		proto = ip6->nexthdr;
		l4 = ETH_HLEN + sizeof(*ip6);
	} else {
		return -1;
	}

	if (proto == IPPROTO_UDP) {
		typeof(buf.d) *d = header(skb, l4, &buf, sizeof(*d));

		if (!d)
			return -1;
		if (hop_data_port(forward ? d->udp.dest : d->udp.source))
			*matched_forward = forward;
		else if (both && hop_data_port(forward ? d->udp.source : d->udp.dest))
			*matched_forward = !forward;
		else
			return -1;
		*flow_id = hop_ntohl(d->payload[DITG_PAYLOAD_FLOW_OFFSET / 4]);
		*seq = hop_ntohl(d->payload[DITG_PAYLOAD_SEQ_OFFSET / 4]);
		if (!hop_sampled(*flow_id, *seq))
			return -1;
		*kind = HOP_KIND_DITG;
		return 0;
	}
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = header(skb, l4, &buf, sizeof(*tcp));

		if (!tcp || !tcp->syn || tcp->rst || tcp->fin)
			return -1;
		/* A SYN goes forward to the data port, a SYN-ACK returns from it. */
		if (!tcp->ack && hop_data_port(tcp->dest) && (forward || both))
			*matched_forward = 1;
		else if (tcp->ack && hop_data_port(tcp->source) && (!forward || both))
			*matched_forward = 0;
		else
			return -1;
		*flow_id = HOP_HANDSHAKE_FLOW;
		*seq = *matched_forward ? hop_ntohl(tcp->seq) : hop_ntohl(tcp->ack_seq) - 1;
		*kind = HOP_KIND_HANDSHAKE;
		return 0;
	}
	return -1;
}

/* Hands one record to the ring or the perf buffer, counted per point as stamped or dropped. */
static __always_inline void emit(struct __sk_buff *skb, __u64 stamp_ns, __u32 flow_id, __u32 seq, __u32 point, __u8 kind)
{
	struct hop_count *count = bpf_map_lookup_elem(&hop_counts, &point);

	if (!count)
		return;
#ifdef HOP_OUTPUT_PERF
	struct hop_record r = { .stamp_ns = stamp_ns, .flow_id = flow_id, .seq = seq, .point = point, .kind = kind };

	if (bpf_perf_event_output(skb, &hop_events, BPF_F_CURRENT_CPU, &r, sizeof(r))) {
		count->dropped++;
		return;
	}
#else
	struct hop_record *r = bpf_ringbuf_reserve(&hop_ring, sizeof(*r), 0);

	if (!r) {
		count->dropped++;
		return;
	}
	r->stamp_ns = stamp_ns;
	r->flow_id = flow_id;
	r->seq = seq;
	r->point = point;
	r->kind = kind;
	__builtin_memset(r->pad, 0, sizeof(r->pad));
	bpf_ringbuf_submit(r, HOP_RB_NO_WAKEUP);
#endif
	count->stamped++;
}

/* Stamps a selected packet at forward_point or return_point by its direction; `forward` is the
 * direction tested first, and the only one when the other's point is HOP_NO_POINT. The clock is
 * read once the packet is known to be stamped: a packet passing unstamped costs no clock read.
 * Every point reads it after the same parse, so the sections between points lose nothing.
 * `connect`: a SYN also carries its socket's connect call (hop_connects), written as the SYN's
 * records at HOP_F_CONNECT_CALL and HOP_F_CONNECT_DONE, after its own stamp. */
static __always_inline int stamp(struct __sk_buff *skb, __u32 forward_point, __u32 return_point, int forward, int connect)
{
	__u32 flow_id, seq;
	__u8 kind;
	int matched_forward;
	__u64 now;

	if (select_packet(skb, forward, forward_point != HOP_NO_POINT && return_point != HOP_NO_POINT, &flow_id, &seq, &kind, &matched_forward))
		return TC_ACT_UNSPEC;
	now = bpf_ktime_get_ns();
	emit(skb, now, flow_id, seq, matched_forward ? forward_point : return_point, kind);
	if (connect && kind == HOP_KIND_HANDSHAKE && matched_forward) {
		__u64 cookie = bpf_get_socket_cookie(skb);
		struct hop_connect *c = cookie ? bpf_map_lookup_elem(&hop_connects, &cookie) : NULL;

		if (c) {
			emit(skb, c->call_ns, flow_id, seq, HOP_F_CONNECT_CALL, kind);
			if (c->done_ns)
				emit(skb, c->done_ns, flow_id, seq, HOP_F_CONNECT_DONE, kind);
			bpf_map_delete_elem(&hop_connects, &cookie);
		}
	}
	return TC_ACT_UNSPEC;
}

/* Names of at most 15 characters: the kernel keeps no more (tc and bpftool show them whole). */
#define HOP_PROGRAM_AT(name, forward_point, return_point, forward)             \
	SEC("tc/" #name)                                                      \
	int name(struct __sk_buff *skb)                                       \
	{                                                                     \
		return stamp(skb, forward_point, return_point, forward, 0);   \
	}
#define HOP_PROGRAM(name, point, forward) HOP_PROGRAM_AT(name, (forward) ? (point) : HOP_NO_POINT, (forward) ? HOP_NO_POINT : (point), forward)

/* The paper's path (nodeport-local). */
HOP_PROGRAM(hf_client_out, HOP_F_CLIENT_OUT, 1)
HOP_PROGRAM(hf_router_in, HOP_F_ROUTER_IN, 1)
HOP_PROGRAM(hf_router_out, HOP_F_ROUTER_OUT, 1)
HOP_PROGRAM(hf_uplink_in, HOP_F_UPLINK_IN, 1)
HOP_PROGRAM(hf_pod_veth, HOP_F_POD_VETH, 1)
HOP_PROGRAM(hf_pod_in, HOP_F_POD_IN, 1)
HOP_PROGRAM(hr_pod_out, HOP_R_POD_OUT, 0)
HOP_PROGRAM(hr_pod_veth, HOP_R_POD_VETH, 0)
HOP_PROGRAM(hr_uplink_out, HOP_R_UPLINK_OUT, 0)
HOP_PROGRAM(hr_router_in, HOP_R_ROUTER_IN, 0)
HOP_PROGRAM(hr_router_out, HOP_R_ROUTER_OUT, 0)
HOP_PROGRAM(hr_client_in, HOP_R_CLIENT_IN, 0)

/* Worker 1's uplink, both ways (nodeport-remote, clusterip). */
HOP_PROGRAM_AT(hb_uplink_in, HOP_F_UPLINK_IN, HOP_R_UPLINK_IN, 1)
HOP_PROGRAM_AT(hb_uplink_out, HOP_F_UPLINK_OUT, HOP_R_UPLINK_OUT, 0)
/* Worker 2 and its receiver pod (nodeport-remote, clusterip). */
HOP_PROGRAM(hf_node2_in, HOP_F_NODE2_IN, 1)
HOP_PROGRAM(hf_pod2_veth, HOP_F_POD2_VETH, 1)
HOP_PROGRAM(hf_pod2_in, HOP_F_POD2_IN, 1)
HOP_PROGRAM(hr_pod2_out, HOP_R_POD2_OUT, 0)
HOP_PROGRAM(hr_pod2_veth, HOP_R_POD2_VETH, 0)
HOP_PROGRAM(hr_node2_out, HOP_R_NODE2_OUT, 0)
/* The client pod on worker 1 (clusterip). */
/* The client pod's egress also writes each SYN's connect call (hop-connect.c): the socket is the SYN's own. */
SEC("tc/hf_cpod_out")
int hf_cpod_out(struct __sk_buff *skb)
{
	return stamp(skb, HOP_F_CPOD_OUT, HOP_NO_POINT, 1, 1);
}
HOP_PROGRAM(hf_cpod_veth, HOP_F_CPOD_VETH, 1)
HOP_PROGRAM(hr_cpod_veth, HOP_R_CPOD_VETH, 0)
HOP_PROGRAM(hr_cpod_in, HOP_R_CPOD_IN, 0)
