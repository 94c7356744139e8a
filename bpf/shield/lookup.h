/* Longest-prefix match over the range tables (see internal/lpm for the
 * layout and the Go mirror of these two functions). */
#ifndef FORTRESS_SHIELD_LOOKUP_H
#define FORTRESS_SHIELD_LOOKUP_H

#include "maps.h"

/* Entries per generation in the IPv4 block and IPv6 key/value arrays; set
 * at load. */
volatile const __u32 v4_gen_stride = 0;
volatile const __u32 v6_gen_stride = 0;

/* addr in host order. Returns the verdict word, 0 for no match. */
static __always_inline __u32 shield_lookup_v4(__u32 gen, __u32 addr)
{
	__u32 di = (gen << 16) | (addr >> 16);
	__u32 de = di / SHIELD_V4_DIR_PER_ELEM;
	struct shield_dir16 *d = bpf_map_lookup_elem(&v4_dir, &de);
	if (!d)
		return 0;
	__u32 e = d->e[di % SHIELD_V4_DIR_PER_ELEM];
	if (e & SHIELD_V4_LEAF)
		return e & ~SHIELD_V4_LEAF;

	__u32 bi = gen * v4_gen_stride + e;
	struct shield_v4_block *b = bpf_map_lookup_elem(&v4_blocks, &bi);
	if (!b)
		return 0;
	__u16 x = addr & 0xffff;
	__u32 c = b->count;
	if (c > SHIELD_V4_BLOCK_RANGES) {
		/* Binary search over the /16's blocks by their first key. */
		__u32 lo = 0, n = (c + SHIELD_V4_BLOCK_RANGES - 1) / SHIELD_V4_BLOCK_RANGES;
		for (int i = 0; i < 13 && n > 1; i++) {
			__u32 half = n >> 1;
			__u32 j = bi + lo + half;
			struct shield_v4_block *p = bpf_map_lookup_elem(&v4_blocks, &j);
			if (!p)
				return 0;
			if (p->key[0] <= x)
				lo += half;
			n -= half;
		}
		bi += lo;
		b = bpf_map_lookup_elem(&v4_blocks, &bi);
		if (!b)
			return 0;
		c -= lo * SHIELD_V4_BLOCK_RANGES;
	}
	__u32 pos = 0;
#pragma unroll
	for (__u32 k = 1; k < SHIELD_V4_BLOCK_RANGES; k++)
		if (k < c && b->key[k] <= x)
			pos = k;
	return b->val[pos];
}

static __always_inline int key128_le(const struct shield_key128 *k, __u64 hi, __u64 lo)
{
	return k->hi < hi || (k->hi == hi && k->lo <= lo);
}

/* hi, lo: the address halves in host order. */
static __always_inline __u32 shield_lookup_v6(__u32 gen, __u64 hi, __u64 lo_addr)
{
	__u32 di = (gen << 16) | (__u32)(hi >> 48);
	struct shield_dir *d = bpf_map_lookup_elem(&v6_dir, &di);
	if (!d)
		return 0;
	__u32 n = d->count;
	if (n == 0)
		return d->val;

	__u32 base = gen * v6_gen_stride + d->val;
	__u32 lo = 0;
	for (int i = 0; i < 24 && n > 1; i++) {
		__u32 half = n >> 1;
		__u32 idx = base + lo + half;
		struct shield_key128 *k = bpf_map_lookup_elem(&v6_keys, &idx);
		if (!k)
			return 0;
		if (key128_le(k, hi, lo_addr))
			lo += half;
		n -= half;
	}
	__u32 idx = base + lo;
	__u32 ei = idx / SHIELD_VALS_PER_ELEM;
	struct shield_vals *v = bpf_map_lookup_elem(&v6_vals, &ei);
	if (!v)
		return 0;
	return v->v[idx % SHIELD_VALS_PER_ELEM];
}

#endif
