/* Maps and records of the lab's hop probes (hop-probe.c): where each measured packet was, when.
 *
 * Userspace reads them in two places, which must follow any change here:
 *   lab/hops/hop-reader.c   drains hop_ring and sums hop_counts (compiled against this header);
 *   lab/hops/hop-records.ts parses the 24-byte records the reader writes to its file.
 * Byte order: host order throughout (the D-ITG fields are converted from the payload's network order).
 *
 * bpftool loads hop-probe.o once and pins every program and map in a private bpffs (`pinmaps`), and
 * tc attaches each pinned program at its point; the reader opens the pinned maps.
 */
#ifndef LAB_HOP_MAPS_H
#define LAB_HOP_MAPS_H

#include <linux/types.h>

/* Measurement points, in path order. Forward: client -> pod; return: the echo, pod -> client. */
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
	HOP_POINTS
};

/* What keyed a record. */
enum hop_kind {
	HOP_KIND_DITG = 0,       /* UDP D-ITG packet: flow id and sequence number from its payload */
	HOP_KIND_HANDSHAKE = 1,  /* TCP SYN (forward) or SYN-ACK (return): flow id HOP_HANDSHAKE_FLOW, seq = client's port */
};

/* Flow id of handshake records: no D-ITG flow has it (ITGSend numbers flows from 1). */
#define HOP_HANDSHAKE_FLOW 0xffffffffu

/* One stamp, 24 bytes. */
struct hop_record {
	__u64 stamp_ns;  /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 flow_id;
	__u32 seq;
	__u8 point;      /* enum hop_point */
	__u8 kind;       /* enum hop_kind */
	__u8 pad[6];
};

/* Per point and CPU (hop_counts, a per-CPU array indexed by point): every selected packet is
 * either stamped into the ring or counted as dropped because the ring was full. */
struct hop_count {
	__u64 stamped;
	__u64 dropped;
};

/* Ring size: a power of two of pages. 8 MiB hold 32 s of the paper's 1000 pkt/s at 12 points. */
#ifndef HOP_RING_BYTES
#define HOP_RING_BYTES (8 * 1024 * 1024)
#endif

/* D-ITG's standard payload (-p 0) starts with the flow id and the sequence number, network order. */
#define DITG_PAYLOAD_FLOW_OFFSET 0
#define DITG_PAYLOAD_SEQ_OFFSET 4

#endif
