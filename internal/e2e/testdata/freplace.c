// SPDX-License-Identifier: GPL-2.0
// An extension (freplace) attack on an XDP firewall: "replace" takes the
// place of an XDP program's entry function and lets every packet pass.
// xdp_target is the control, a program the test owns, to prove that the
// attack works where nothing forbids it.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int xdp_target(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("freplace/xdp_target")
int replace(struct xdp_md *ctx)
{
	return XDP_PASS;
}
