// SPDX-License-Identifier: GPL-2.0
// Test object for internal/bytecode: two tracepoints that kill the calling
// process or thread. bpf_send_signal and bpf_send_signal_thread are always
// forbidden.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tracepoint/syscalls/sys_enter_kill")
int tp_signal(void *ctx)
{
	bpf_send_signal(9);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_tkill")
int tp_signal_thread(void *ctx)
{
	bpf_send_signal_thread(9);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
