// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Shield benchmark and verification programs, run only through
 * BPF_PROG_TEST_RUN by `fortressctl bench shield`. They share Shield's table
 * maps (the loader passes them in), so they search exactly what the firewall
 * searches. Each run takes the next address from an array, so one test run
 * of N repeats looks up N addresses in turn, never one cached packet.
 * Oldest kernel: 5.10. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lookup.h"

char __license[] SEC("license") = "Dual BSD/GPL";

struct trie_v4_key {
	__u32 prefixlen;
	__u32 addr; /* network order */
};

struct trie_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct trie_v4_key);
	__type(value, __u32);
} trie_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct trie_v6_key);
	__type(value, __u32);
} trie_v6 SEC(".maps");

/* Addresses to look up: IPv4 as network-order words (in 8-byte slots: array
 * elements are 8-byte aligned), IPv6 as host-order halves. Memory-mapped so
 * that the loader fills them with one copy. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} addrs_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct shield_key128);
} addrs_v6 SEC(".maps");

/* Verdicts written by the verify programs, one per address. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} results SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} cursor SEC(".maps"); /* [0] next index, [1] sink */

/* The bench programs look up BENCH_BATCH consecutive addresses per run, so
 * that the kernel's whole-nanosecond run time still resolves fractions of a
 * nanosecond per address. addr_mask is the number of bench addresses minus
 * one (a power of two). */
#define BENCH_BATCH 16
volatile const __u32 addr_mask = 0;
volatile const __u32 bench_gen = 0;

static __always_inline __u64 *slot(__u32 i)
{
	return bpf_map_lookup_elem(&cursor, &i);
}

static __always_inline int sink(__u64 v)
{
	__u64 *s = slot(1);
	if (s)
		*s += v;
	return XDP_PASS;
}

/* One run of a bench program: the next BENCH_BATCH addresses, each through
 * LOOKUP(a, acc), where a points at the address. */
#define BENCH_PROG(name, addrs, type, LOOKUP)                                   \
	SEC("xdp") int name(struct xdp_md *ctx)                                 \
	{                                                                       \
		__u64 *c = slot(0);                                             \
		if (!c)                                                         \
			return XDP_ABORTED;                                     \
		__u32 base = (__u32)*c;                                         \
		*c += BENCH_BATCH;                                              \
		__u64 acc = 0;                                                  \
		for (__u32 j = 0; j < BENCH_BATCH; j++) {                       \
			__u32 i = (base + j) & addr_mask;                       \
			type *a = bpf_map_lookup_elem(&addrs, &i);              \
			if (!a)                                                 \
				return XDP_ABORTED;                             \
			LOOKUP(a, acc);                                         \
		}                                                               \
		return sink(acc);                                               \
	}

#define FETCH_V4(a, acc) acc += *(a)
#define TRIE_V4(a, acc)                                                         \
	do {                                                                    \
		struct trie_v4_key k = {.prefixlen = 32, .addr = (__u32)*(a)};         \
		__u32 *v = bpf_map_lookup_elem(&trie_v4, &k);                   \
		acc += v ? *v : 0;                                              \
	} while (0)
#define SHIELD_V4(a, acc) acc += shield_lookup_v4(bench_gen, bpf_ntohl((__u32)*(a)))

#define FETCH_V6(a, acc) acc += (a)->lo
#define TRIE_V6(a, acc)                                                         \
	do {                                                                    \
		struct trie_v6_key k = {.prefixlen = 128};                      \
		__u64 hi = __builtin_bswap64((a)->hi), lo = __builtin_bswap64((a)->lo); \
		__builtin_memcpy(k.addr, &hi, 8);                               \
		__builtin_memcpy(k.addr + 8, &lo, 8);                           \
		__u32 *v = bpf_map_lookup_elem(&trie_v6, &k);                   \
		acc += v ? *v : 0;                                              \
	} while (0)
#define SHIELD_V6(a, acc) acc += shield_lookup_v6(bench_gen, (a)->hi, (a)->lo)

SEC("xdp")
int bench_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}

BENCH_PROG(bench_fetch_v4, addrs_v4, __u64, FETCH_V4)
BENCH_PROG(bench_trie_v4, addrs_v4, __u64, TRIE_V4)
BENCH_PROG(bench_shield_v4, addrs_v4, __u64, SHIELD_V4)
BENCH_PROG(bench_fetch_v6, addrs_v6, struct shield_key128, FETCH_V6)
BENCH_PROG(bench_trie_v6, addrs_v6, struct shield_key128, TRIE_V6)
BENCH_PROG(bench_shield_v6, addrs_v6, struct shield_key128, SHIELD_V6)

/* Verify programs look up BENCH_BATCH addresses per run, starting at the
 * index carried in the first four bytes of the test packet, and store each
 * verdict at the same index of results. The index comes from user space for
 * every run, so a run that is retried or moves to another CPU still fills
 * each slot exactly with its own address's verdict. */
#define VERIFY_PROG(name, addrs, type, LOOKUP)                                  \
	SEC("xdp") int name(struct xdp_md *ctx)                                 \
	{                                                                       \
		void *data = (void *)(long)ctx->data;                           \
		void *end = (void *)(long)ctx->data_end;                        \
		if (data + 4 > end)                                             \
			return XDP_ABORTED;                                     \
		__u32 base = *(__u32 *)data;                                    \
		for (__u32 j = 0; j < BENCH_BATCH; j++) {                       \
			__u32 i = base + j;                                     \
			type *a = bpf_map_lookup_elem(&addrs, &i);              \
			__u64 *r = bpf_map_lookup_elem(&results, &i);           \
			if (!a || !r)                                           \
				break;                                          \
			*r = LOOKUP(a);                                         \
		}                                                               \
		return XDP_PASS;                                                \
	}

#define VERIFY_V4(a) shield_lookup_v4(bench_gen, bpf_ntohl((__u32)*(a)))
#define VERIFY_V6(a) shield_lookup_v6(bench_gen, (a)->hi, (a)->lo)

VERIFY_PROG(verify_v4, addrs_v4, __u64, VERIFY_V4)
VERIFY_PROG(verify_v6, addrs_v6, struct shield_key128, VERIFY_V6)
