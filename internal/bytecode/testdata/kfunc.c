// SPDX-License-Identifier: GPL-2.0
// Test object for internal/bytecode: kfunc calls. fentry_rcu takes the RCU
// read lock through kfuncs (admissible when allowlisted); lsm_signal sends a
// signal through the bpf_send_signal_task kfunc (always forbidden).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
extern int bpf_send_signal_task(struct task_struct *task, int sig,
				enum pid_type type, __u64 value) __ksym;

volatile __u32 last_pid;

SEC("fentry/do_nanosleep")
int fentry_rcu(void *ctx)
{
	bpf_rcu_read_lock();
	last_pid = bpf_get_current_pid_tgid() >> 32;
	bpf_rcu_read_unlock();
	return 0;
}

SEC("lsm/task_kill")
int lsm_signal(void *ctx)
{
	bpf_send_signal_task(bpf_get_current_task_btf(), 9, PIDTYPE_PID, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
