/* Longest-prefix match over the range tables (see internal/lpm for the
 * layout and the Go mirror of these two functions). */
#ifndef FORTRESS_SHIELD_LOOKUP_H
#define FORTRESS_SHIELD_LOOKUP_H

#include "maps.h"

/* Entries per generation in the key/value arrays; set at load. */
volatile const __u32 v4_gen_stride = 0;
volatile const __u32 v6_gen_stride = 0;

/* addr in host order. Returns the verdict word, 0 for no match. */
static __always_inline __u32 shield_lookup_v4(__u32 gen, __u32 addr)
{
	__u32 di = (gen << 16) | (addr >> 16);
	struct shield_dir *d = bpf_map_lookup_elem(&v4_dir, &di);
	if (!d)
		return 0;
	__u32 n = d->count;
	if (n == 0)
		return d->val;

	__u32 base = gen * v4_gen_stride + d->val;
	__u16 x = addr & 0xffff;
	__u32 lo = 0;
	for (int i = 0; i < 16 && n > 1; i++) {
		__u32 half = n >> 1;
		__u32 idx = base + lo + half;
		__u32 ei = idx / SHIELD_V4_KEYS_PER_ELEM;
		struct shield_keys16 *k = bpf_map_lookup_elem(&v4_keys, &ei);
		if (!k)
			return 0;
		if (k->k[idx % SHIELD_V4_KEYS_PER_ELEM] <= x)
			lo += half;
		n -= half;
	}
	__u32 idx = base + lo;
	__u32 ei = idx / SHIELD_VALS_PER_ELEM;
	struct shield_vals *v = bpf_map_lookup_elem(&v4_vals, &ei);
	if (!v)
		return 0;
	return v->v[idx % SHIELD_VALS_PER_ELEM];
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
