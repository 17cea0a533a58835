/* What the hop probes need from a BPF toolchain, declared here so that they compile with clang and the
 * kernel's UAPI headers alone (linux-libc-dev), without libbpf's headers: the cloud's workers have
 * none (Ubuntu 20.04 ships no usable libbpf), and a worker's UAPI headers may be older than its
 * kernel (Ubuntu 20.04's are 5.4's, also under a newer HWE kernel), so the few numbers the 5.4
 * headers lack are written out here. They are kernel ABI, never renumbered; the test
 * test/hops/hop-bpf-abi.test.ts compares them with this machine's headers.
 *
 * The declarations are libbpf's (bpf_helper_defs.h): a helper is a call to a fixed number, so the
 * generated code is the same with either header.
 */
#ifndef HOPS_HOP_BPF_H
#define HOPS_HOP_BPF_H

#include <linux/types.h>
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))
/* The UAPI's <linux/stddef.h> defines it as a plain `inline`; the probes need every helper inlined
 * into each program (no BPF-to-BPF calls), as libbpf's header makes it. */
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))

/* BTF-defined map attributes (libbpf's convention, read by libbpf from the object's BTF). */
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

/* Kernel ABI the 5.4 UAPI headers do not name (all from 5.8; HOP_MAP_TYPE_RINGBUF is in hop-maps.h). */
#define HOP_FUNC_RINGBUF_RESERVE 131  /* BPF_FUNC_ringbuf_reserve */
#define HOP_FUNC_RINGBUF_SUBMIT 132   /* BPF_FUNC_ringbuf_submit */
#define HOP_RB_NO_WAKEUP 1            /* BPF_RB_NO_WAKEUP */

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)BPF_FUNC_map_update_elem;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_delete_elem;
static __u64 (*bpf_get_socket_cookie)(void *ctx) = (void *)BPF_FUNC_get_socket_cookie;
static long (*bpf_skb_load_bytes)(const void *skb, __u32 offset, void *to, __u32 len) = (void *)BPF_FUNC_skb_load_bytes;
static long (*bpf_perf_event_output)(void *ctx, void *map, __u64 flags, void *data, __u64 size) = (void *)BPF_FUNC_perf_event_output;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)HOP_FUNC_RINGBUF_RESERVE;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)HOP_FUNC_RINGBUF_SUBMIT;

/* Network byte order of constants and loaded fields (the probes run on little- and big-endian hosts). */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define hop_htons(x) ((__be16)__builtin_bswap16(x))
#define hop_ntohs(x) ((__u16)__builtin_bswap16(x))
#define hop_ntohl(x) ((__u32)__builtin_bswap32(x))
#else
#define hop_htons(x) ((__be16)(x))
#define hop_ntohs(x) ((__u16)(x))
#define hop_ntohl(x) ((__u32)(x))
#endif

/* tc's own ELF loader (iproute2 built without libbpf, e.g. Ubuntu 20.04's 5.5) reads maps from
 * this struct in the "maps" section (iproute2 include/bpf_elf.h); iproute2 built with libbpf 1.x
 * refuses it ("legacy map definitions in 'maps' section are not supported"), and reads BTF-defined
 * maps instead. */
struct bpf_elf_map {
	__u32 type;
	__u32 size_key;
	__u32 size_value;
	__u32 max_elem;
	__u32 flags;
	__u32 id;
	__u32 pinning;
	__u32 inner_id;
	__u32 inner_idx;
};
/* bpf_elf_map.pinning: pinned by name under <TC_BPF_MNT>/tc/globals/, shared by every program loaded from the object. */
#define PIN_GLOBAL_NS 2
/* BTF map attribute `pinning` (libbpf's LIBBPF_PIN_BY_NAME): iproute2 with libbpf pins under the same directory. */
#define HOP_PIN_BY_NAME 1

#endif
