/* SPDX-License-Identifier: GPL-2.0 */
/* Kernel integrity (lockdown reasons) and ptrace of role processes. Part of sentinel.c, included there in order. */
#ifndef FORTRESS_SENTINEL_LOCKDOWN_H
#define FORTRESS_SENTINEL_LOCKDOWN_H

// Ways to write kernel memory, or another process's, that no inode or bpf
// hook sees: a module without a valid signature (the kernel asks only when
// signatures are not enforced anyway), /dev/mem and /dev/port, MSR writes,
// I/O ports, kexec_load, kernel debugger writes, and bpf_probe_write_user
// (a tracing program could rewrite the agent's buffers, e.g. its trust key
// as the agent reads it). The kernel asks its lockdown hook for each; these
// are refused to everyone but the agent, as lockdown=integrity would. The
// enum's values differ between kernels: CO-RE takes the running kernel's.
SEC("lsm/locked_down")
int BPF_PROG(locked_down, enum lockdown_reason what, int ret)
{
	if (ret)
		return ret;
	if (what != bpf_core_enum_value(enum lockdown_reason, LOCKDOWN_MODULE_SIGNATURE) &&
	    what != bpf_core_enum_value(enum lockdown_reason, LOCKDOWN_DEV_MEM) &&
	    what != bpf_core_enum_value(enum lockdown_reason, LOCKDOWN_KEXEC) &&
	    what != bpf_core_enum_value(enum lockdown_reason, LOCKDOWN_IOPORT) &&
	    what != bpf_core_enum_value(enum lockdown_reason, LOCKDOWN_MSR) &&
	    what != bpf_core_enum_value(enum lockdown_reason, LOCKDOWN_BPF_WRITE_USER) &&
	    what != bpf_core_enum_value(enum lockdown_reason, LOCKDOWN_DBG_WRITE_KERNEL))
		return 0;
	if (current_roles() & SENTINEL_ROLE_AGENT)
		return 0;
	return deny_obj(SENTINEL_OP_LOCKDOWN, what);
}

// Nobody but the agent itself may attach to the agent or the updater:
// ptrace, /proc/PID/mem, process_vm_writev and pidfd_getfd all ask for
// PTRACE_MODE_ATTACH. Reading /proc/PID/stat and the like stays allowed.
SEC("lsm/ptrace_access_check")
int BPF_PROG(ptrace_access_check, struct task_struct *child, unsigned int mode, int ret)
{
	struct sentinel_inode key = {}, none = {};
	struct inode *exe;
	__u32 child_roles;

	if (ret)
		return ret;
	if (!(mode & PTRACE_MODE_ATTACH))
		return 0;
	exe = task_exe_inode(child);
	child_roles = roles_of_exe(exe);
	if (!child_roles)
		return 0;
	if (current_roles() & child_roles)
		return 0;
	inode_key(exe, &key);
	return deny(SENTINEL_OP_PTRACE, 0, &key, &none, NULL, mode);
}

#endif
