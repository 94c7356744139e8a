// SPDX-License-Identifier: GPL-2.0
// lsm_probe: a trial BPF LSM program that proves BPF LSM really runs on this
// kernel. It never denies anything: it counts file_open calls made by one
// thread group (the probe's own, set at load time) and always returns 0.
// Oldest kernel: 5.7 (BPF LSM); tested on 5.10, 6.1, 6.12.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

// probe_tgid is the tgid whose opens are counted; set before load.
volatile const __u32 probe_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} probe_opens SEC(".maps");

SEC("lsm/file_open")
int BPF_PROG(probe_file_open, struct file *file, int ret)
{
	__u32 key = 0;
	__u64 *count;

	if ((bpf_get_current_pid_tgid() >> 32) != probe_tgid)
		return ret;
	count = bpf_map_lookup_elem(&probe_opens, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	return ret;
}

// probe_xdp only proves the XDP program type loads and attaches.
SEC("xdp")
int probe_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}
