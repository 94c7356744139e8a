// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Shield: XDP firewall.
 *
 * Parses Ethernet with up to two VLAN tags (802.1Q / 802.1ad), takes the IPv4
 * or IPv6 source address, lets the configured gateway addresses through
 * before any rule, and otherwise applies the longest-prefix-matching rule:
 * drop, allow (an exception inside a wider drop), or log-only. In dry-run
 * mode, drops become counted would-drops. Anything it cannot parse passes:
 * Shield fails open.
 *
 * Oldest kernel: 5.10 (bpf_link XDP attach 5.9, ring buffer 5.8, mmapable
 * arrays 5.5, bounded loops 5.3).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lookup.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

/* Management gateways: checked before any rule, so no policy can cut the
 * management path. IPv4 in network order; IPv6 as host-order halves. */
#define SHIELD_MAX_GATEWAYS 4
volatile const __u32 gw_v4_count = 0;
volatile const __u32 gw_v4[SHIELD_MAX_GATEWAYS] = {};
volatile const __u32 gw_v6_count = 0;
volatile const struct shield_key128 gw_v6[SHIELD_MAX_GATEWAYS] = {};

/* Minimum gap between two dry-run samples on one CPU. */
volatile const __u64 sample_gap_ns = 10 * 1000 * 1000;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SHIELD_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} shield_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} shield_samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sample_last SEC(".maps");

/* Keep the shared types in the object's BTF for bpf2go. */
const struct shield_sample *unused_sample __attribute__((unused));
const enum shield_verdict_bits *unused_bits __attribute__((unused));
const enum shield_mode_flags *unused_flags __attribute__((unused));
const enum shield_stat *unused_stat __attribute__((unused));
const enum shield_rule_flags *unused_rule_flags __attribute__((unused));
const enum shield_layout *unused_layout __attribute__((unused));

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&shield_stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline int pass(__u32 stat)
{
	stat_inc(stat);
	return XDP_PASS;
}

static __always_inline void sample(struct xdp_md *ctx, __u32 verdict, __u8 family, const void *addr, __u32 len)
{
	__u32 zero = 0;
	__u64 *last = bpf_map_lookup_elem(&sample_last, &zero);
	__u64 now = bpf_ktime_get_ns();
	if (!last || now - *last < sample_gap_ns)
		return;
	*last = now;
	struct shield_sample *s = bpf_ringbuf_reserve(&shield_samples, sizeof(*s), 0);
	if (!s) {
		stat_inc(SHIELD_STAT_SAMPLE_LOST);
		return;
	}
	s->ts_ns = now;
	s->verdict = verdict;
	s->ifindex = ctx->ingress_ifindex;
	s->family = family;
	s->pad[0] = s->pad[1] = s->pad[2] = 0;
	s->pkt_len = len;
	__builtin_memset(s->addr, 0, sizeof(s->addr));
	if (family == 4)
		__builtin_memcpy(s->addr, addr, 4);
	else
		__builtin_memcpy(s->addr, addr, 16);
	bpf_ringbuf_submit(s, 0);
	stat_inc(SHIELD_STAT_SAMPLE_SENT);
}

/* Counts a packet against the rule that matched it: the source address
 * (hi, lo host order; IPv4 in lo) masked to the rule's length. The first
 * packet of a rule inserts its counter; a full table is counted globally. */
static __always_inline void count_rule(__u32 verdict, __u8 family, __u64 hi, __u64 lo, __u32 len)
{
	struct shield_rule_key k = {};
	__u32 bits = verdict & SHIELD_V_BITS_MASK;
	k.family = family;
	k.bits = bits;
	if (verdict & SHIELD_V_ALLOW)
		k.flags |= SHIELD_RULE_ALLOW;
	if (verdict & SHIELD_V_LOG_ONLY)
		k.flags |= SHIELD_RULE_LOG_ONLY;
	if (family == 4) {
		__u32 a = (__u32)lo;
		if (bits == 0)
			a = 0;
		else if (bits < 32)
			a &= ~0u << (32 - bits);
		k.lo = a;
	} else if (bits == 0) {
		k.hi = 0;
		k.lo = 0;
	} else if (bits <= 64) {
		k.hi = bits == 64 ? hi : hi & (~0ull << (64 - bits));
		k.lo = 0;
	} else {
		k.hi = hi;
		k.lo = bits >= 128 ? lo : lo & (~0ull << (128 - bits));
	}
	struct shield_counter *c = bpf_map_lookup_elem(&rule_hits, &k);
	if (!c) {
		struct shield_counter first = {.packets = 1, .bytes = len};
		if (bpf_map_update_elem(&rule_hits, &k, &first, BPF_NOEXIST) == 0)
			return;
		/* Another CPU inserted it first, or the table is full. */
		c = bpf_map_lookup_elem(&rule_hits, &k);
		if (!c) {
			stat_inc(SHIELD_STAT_RULE_UNTRACKED);
			return;
		}
	}
	__sync_fetch_and_add(&c->packets, 1);
	__sync_fetch_and_add(&c->bytes, len);
}

static __always_inline int act(struct xdp_md *ctx, __u32 verdict, __u32 mode, __u8 family, const void *addr, __u64 hi,
			       __u64 lo)
{
	if (!verdict)
		return pass(SHIELD_STAT_PASS);

	__u32 len = ctx->data_end - ctx->data;
	count_rule(verdict, family, hi, lo, len);
	if (verdict & SHIELD_V_ALLOW)
		return pass(SHIELD_STAT_ALLOW_HIT);
	if ((verdict & SHIELD_V_LOG_ONLY) || (mode & SHIELD_MODE_DRY_RUN)) {
		sample(ctx, verdict, family, addr, len);
		return pass(SHIELD_STAT_WOULD_DROP);
	}
	stat_inc(SHIELD_STAT_DROP);
	return XDP_DROP;
}

SEC("xdp")
int xdp_shield(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return pass(SHIELD_STAT_UNPARSED);
	__be16 proto = eth->h_proto;
	void *cur = eth + 1;

#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_tag *tag = cur;
		if ((void *)(tag + 1) > end)
			return pass(SHIELD_STAT_UNPARSED);
		proto = tag->proto;
		cur = tag + 1;
	}

	__u32 zero = 0;
	struct shield_control *st = bpf_map_lookup_elem(&shield_state, &zero);
	if (!st)
		return pass(SHIELD_STAT_UNPARSED);
	__u32 gen = st->gen & 1;
	__u32 mode = st->flags;

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cur;
		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
			return pass(SHIELD_STAT_UNPARSED);
		__u32 src = ip->saddr;
#pragma unroll
		for (int i = 0; i < SHIELD_MAX_GATEWAYS; i++)
			if (i < gw_v4_count && src == gw_v4[i])
				return pass(SHIELD_STAT_BYPASS);
		__u32 h = bpf_ntohl(src);
		return act(ctx, shield_lookup_v4(gen, h), mode, 4, &ip->saddr, 0, h);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cur;
		if ((void *)(ip6 + 1) > end || ip6->version != 6)
			return pass(SHIELD_STAT_UNPARSED);
		__u64 hi = ((__u64)bpf_ntohl(ip6->saddr.in6_u.u6_addr32[0]) << 32) | bpf_ntohl(ip6->saddr.in6_u.u6_addr32[1]);
		__u64 lo = ((__u64)bpf_ntohl(ip6->saddr.in6_u.u6_addr32[2]) << 32) | bpf_ntohl(ip6->saddr.in6_u.u6_addr32[3]);
#pragma unroll
		for (int i = 0; i < SHIELD_MAX_GATEWAYS; i++)
			if (i < gw_v6_count && hi == gw_v6[i].hi && lo == gw_v6[i].lo)
				return pass(SHIELD_STAT_BYPASS);
		return act(ctx, shield_lookup_v6(gen, hi, lo), mode, 6, &ip6->saddr, hi, lo);
	}
	return pass(SHIELD_STAT_NON_IP);
}
