// SPDX-License-Identifier: GPL-2.0
// Test object for internal/bytecode: a kprobe that makes a kernel function
// fail through error injection. bpf_override_return is always forbidden.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("kprobe/__x64_sys_getpid")
int kp_override(struct pt_regs *ctx)
{
	bpf_override_return(ctx, -1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
