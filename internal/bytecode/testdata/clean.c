// SPDX-License-Identifier: GPL-2.0
// Test object for internal/bytecode: a well-behaved XDP program. It counts
// packets per ingress interface through a BPF-to-BPF call to a __noinline
// subprogram, so the check must see bpf_map_lookup_elem (called from the
// subprogram) and bpf_ktime_get_ns, and must not mistake the call to
// count_packet for a helper call.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} packets SEC(".maps");

volatile __u64 last_seen;

static __noinline int count_packet(__u32 ifindex)
{
	__u64 *n = bpf_map_lookup_elem(&packets, &ifindex);

	if (!n)
		return 0;
	__sync_fetch_and_add(n, 1);
	return 1;
}

SEC("xdp")
int xdp_clean(struct xdp_md *ctx)
{
	last_seen = bpf_ktime_get_ns();
	count_packet(ctx->ingress_ifindex);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
