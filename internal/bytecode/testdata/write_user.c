// SPDX-License-Identifier: GPL-2.0
// Test object for internal/bytecode: a tracepoint that overwrites the user
// buffer of every write(2). bpf_probe_write_user is always forbidden.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tracepoint/syscalls/sys_enter_write")
int tp_write_user(struct trace_event_raw_sys_enter *ctx)
{
	char msg[4] = "pwn";

	if (bpf_get_current_pid_tgid() >> 32 == 1)
		return 0;
	bpf_probe_write_user((void *)ctx->args[1], msg, sizeof(msg));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
