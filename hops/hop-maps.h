/* Records and maps of the hop probes (hop-probe.c): where each measured packet was, when.
 *
 * Userspace reads them in two places, which must follow any change here:
 *   hops/hop-reader.c  drains hop_ring or hop_events and sums hop_counts (compiled against this header);
 *   measure/hops.ts    parses the 24-byte records the reader writes to its file.
 * Byte order: host order throughout (the D-ITG fields are converted from the payload's network order).
 *
 * The maps, by name (each pinned by name where the loader pins: bpftool's pinmaps directory in the
 * lab, <TC_BPF_MNT>/tc/globals/ when tc loads the object on a worker):
 *
 *   hop_counts  per-CPU array, key __u32 point (enum hop_point), value struct hop_count (16 bytes),
 *               HOP_POINTS entries. Both output paths.
 *   hop_ring    ring buffer of HOP_RING_BYTES (default output path, kernel 5.8 and later): one
 *               struct hop_record per stamp, submitted without a wakeup.
 *   hop_events  perf event array (HOP_OUTPUT_PERF, any kernel since 4.4), key __u32 CPU, value __u32
 *               perf event fd, HOP_MAX_CPUS entries: the reader opens one PERF_COUNT_SW_BPF_OUTPUT
 *               event per online CPU and stores its fd at the CPU's index; a probe writes one
 *               struct hop_record per stamp as the raw data of a sample on its own CPU.
 */
#ifndef HOPS_HOP_MAPS_H
#define HOPS_HOP_MAPS_H

#include <linux/types.h>

/* Measurement points. Forward: client -> pod; return: the echo, pod -> client. 0-11 are the paper's
 * path (nodeport-local) in path order; 12 and up are the points of the paths beyond it
 * (nodeport-remote, clusterip: measure/hops.ts PATH_HOPS lists each path's points in its order).
 * The numbers are stable: records and counts are indexed by them. */
enum hop_point {
	HOP_F_CLIENT_OUT = 0,  /* client veth, tc egress */
	HOP_F_ROUTER_IN,       /* router access veth, tc ingress */
	HOP_F_ROUTER_OUT,      /* router datacenter veth, tc egress */
	HOP_F_UPLINK_IN,       /* worker uplink, tc ingress, before the Service dataplane */
	HOP_F_POD_VETH,        /* worker's pod veth, tc egress, after the dataplane's DNAT */
	HOP_F_POD_IN,          /* pod veth, tc ingress */
	HOP_R_POD_OUT,         /* pod veth, tc egress */
	HOP_R_POD_VETH,        /* worker's pod veth, tc ingress */
	HOP_R_UPLINK_OUT,      /* worker uplink, tc egress, after the dataplane's reverse NAT */
	HOP_R_ROUTER_IN,       /* router datacenter veth, tc ingress */
	HOP_R_ROUTER_OUT,      /* router access veth, tc egress */
	HOP_R_CLIENT_IN,       /* client veth, tc ingress */
	HOP_F_UPLINK_OUT,      /* worker 1 uplink, tc egress, toward worker 2 (after DNAT, and SNAT where applied) */
	HOP_F_NODE2_IN,        /* worker 2 uplink, tc ingress */
	HOP_F_POD2_VETH,       /* worker 2's pod veth, tc egress */
	HOP_F_POD2_IN,         /* pod 2 veth, tc ingress */
	HOP_R_POD2_OUT,        /* pod 2 veth, tc egress */
	HOP_R_POD2_VETH,       /* worker 2's pod veth, tc ingress */
	HOP_R_NODE2_OUT,       /* worker 2 uplink, tc egress */
	HOP_R_UPLINK_IN,       /* worker 1 uplink, tc ingress, from worker 2 (before the reverse translation) */
	HOP_F_CPOD_OUT,        /* client pod veth, tc egress */
	HOP_F_CPOD_VETH,       /* worker 1's client pod veth, tc ingress, before the Service dataplane */
	HOP_R_CPOD_VETH,       /* worker 1's client pod veth, tc egress, after the reverse translation */
	HOP_R_CPOD_IN,         /* client pod veth, tc ingress */
	HOP_F_CONNECT_CALL,    /* a TCP connect() to the data port in the client pod: its cgroup's connect4/6 hook,
	                        * before any Service translation (hop-connect.c) */
	HOP_F_CONNECT_DONE,    /* the same call after the node's socket hooks: a connect4/6 hook after Cilium's
	                        * socket load balancer, where it runs (hop-connect.c) */
	HOP_POINTS
};

/* A program's point for a direction it does not stamp. */
#define HOP_NO_POINT 0xffu

/* What keyed a record. */
enum hop_kind {
	HOP_KIND_DITG = 0,       /* UDP D-ITG packet: flow id and sequence number from its payload */
	HOP_KIND_HANDSHAKE = 1,  /* TCP SYN (forward) or SYN-ACK (return): flow id HOP_HANDSHAKE_FLOW, seq = the SYN's
	                          * sequence number (the SYN-ACK's ack minus 1), which no NAT rewrites (a masquerade
	                          * with random ports rewrites the client's port) */
};

/* The D-ITG packets the probes stamp: 1 in HOP_SAMPLE_EVERY, chosen by a hash of the flow id and the
 * sequence number (hop_sampled), the same at every point: a sampled packet has every stamp of its
 * path, an unsampled one none. Unsampled packets cost the probes a parse and this hash, no clock read
 * and no record (bench/hop-overhead.ts). A hash rather than every Nth sequence number: at D-ITG's
 * constant rate every Nth packet would meet any periodic work of the host at one phase (a 250 Hz
 * tick is every 4 ms, 4 packets at the paper's 1000 pkt/s), and every sample with it. measure/hops.ts
 * (hopSampled) applies the same rule and checks it; the reader names the rate in its summary
 * (sampleEvery). TCP handshakes (a few per run) are all stamped. */
#define HOP_SAMPLE_SHIFT 3
#define HOP_SAMPLE_EVERY (1u << HOP_SAMPLE_SHIFT)

static inline int hop_sampled(__u32 flow_id, __u32 seq)
{
	__u32 h = seq ^ (flow_id * 0x9e3779b1u);

	/* murmur3's 32-bit finalizer: every bit of the key reaches the low bits. */
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return (h & (HOP_SAMPLE_EVERY - 1)) == 0;
}

/* Flow id of handshake records: no D-ITG flow has it (ITGSend numbers flows from 1). */
#define HOP_HANDSHAKE_FLOW 0xffffffffu

/* The connect call's two stamps (clusterip's handshakes). A cgroup hook has no packet and so no key:
 * hop-connect.c keeps the two times per socket (its cookie, bpf_get_socket_cookie) in hop_connects,
 * and the probe at the client pod's egress (HOP_F_CPOD_OUT) writes them as records of that socket's
 * SYN, keyed as the SYN is, and deletes the entry.
 *
 *   hop_connects  LRU hash, key __u64 socket cookie, value struct hop_connect (16 bytes),
 *                 HOP_CONNECT_ENTRIES entries (a connect whose SYN never left is evicted in time).
 *                 Declared by both objects, pinned by name: tc or bpftool creates it with the probes,
 *                 bpftool loads hop-connect.o onto the pinned map. */
struct hop_connect {
	__u64 call_ns;  /* HOP_F_CONNECT_CALL: bpf_ktime_get_ns() */
	__u64 done_ns;  /* HOP_F_CONNECT_DONE, 0 until it ran */
};
#define HOP_CONNECT_ENTRIES 4096

/* One stamp, 24 bytes. */
struct hop_record {
	__u64 stamp_ns;  /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 flow_id;
	__u32 seq;
	__u8 point;      /* enum hop_point */
	__u8 kind;       /* enum hop_kind */
	__u8 pad[6];
};

/* Per point and CPU (hop_counts, a per-CPU array indexed by point): every packet to stamp (a sampled
 * D-ITG packet or a handshake) is either stamped (its record handed to the ring or the perf buffer)
 * or counted as dropped (the ring or the CPU's perf buffer was full, or no reader had a perf buffer
 * on that CPU). */
struct hop_count {
	__u64 stamped;
	__u64 dropped;
};

/* Ring size: a power of two of pages. 8 MiB hold 32 s of every packet of the paper's 1000 pkt/s at
 * its 12 points, 21 s at nodeport-remote's 16, HOP_SAMPLE_EVERY times that sampled; the reader
 * drains it all along. */
#ifndef HOP_RING_BYTES
#define HOP_RING_BYTES (8 * 1024 * 1024)
#endif

/* BPF_MAP_TYPE_RINGBUF (kernel 5.8): written out, the 5.4 UAPI headers of a worker lack it (hop-bpf.h). */
#define HOP_MAP_TYPE_RINGBUF 27

/* Entries of hop_events: CPU numbers a probe can run on (the reader refuses a host with more). */
#define HOP_MAX_CPUS 1024

/* D-ITG's standard payload (-p 0) starts with the flow id and the sequence number, network order. */
#define DITG_PAYLOAD_FLOW_OFFSET 0
#define DITG_PAYLOAD_SEQ_OFFSET 4

#endif
