/* SPDX-License-Identifier: GPL-2.0 */
/* Roles: earned at a clean exec or the loader's claim, lost on any outside control. Part of sentinel.c, included there in order. */
#ifndef FORTRESS_SENTINEL_ROLES_H
#define FORTRESS_SENTINEL_ROLES_H

// Roles: earned at a clean exec, lost on any outside control.
//
// refuse_role reports a process that runs a role binary without earning
// the role. It is reported whatever the mode: a refused role is never
// granted, not even during a maintenance window.
static __always_inline void count_role(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&sentinel_role_stats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline void refuse_role(struct sentinel_inode *exe, __u32 reasons)
{
	struct sentinel_inode none = {};

	count(SENTINEL_STAT_DENIED);
	count_role(SENTINEL_ROLE_STAT_REFUSED);
	emit(SENTINEL_OP_ROLE_REFUSED, SENTINEL_DENIED, 0, exe, &none, NULL, reasons);
}

// outside_control: what lets another process drive task, as refusal bits.
static __always_inline __u32 outside_control(struct task_struct *task)
{
	__u32 reasons = 0;

	if (BPF_CORE_READ(task, ptrace))
		reasons |= SENTINEL_REFUSE_TRACED;
	// Any filter: user notification (fd injection, emulated results) and
	// SECCOMP_RET_TRACE hand the syscalls to another process, and even
	// SECCOMP_RET_ERRNO with errno 0 makes a syscall "succeed" undone.
	if (BPF_CORE_READ(task, seccomp.mode))
		reasons |= SENTINEL_REFUSE_SECCOMP;
	if (!in_agent_root(task))
		reasons |= SENTINEL_REFUSE_FOREIGN_ROOT;
	return reasons;
}

// grant records roles for the thread group of leader, or refuses them
// (reasons != 0). It returns the refusal bits.
static __always_inline __u32 grant(__u64 leader, struct sentinel_inode *exe, __u32 roles, __u32 reasons)
{
	struct sentinel_grant g = {.exe = *exe, .roles = roles};

	if (reasons) {
		bpf_map_delete_elem(&sentinel_grants, &leader);
		refuse_role(exe, reasons);
		return reasons;
	}
	if (bpf_map_update_elem(&sentinel_grants, &leader, &g, BPF_ANY)) {
		bpf_map_delete_elem(&sentinel_grants, &leader);
		refuse_role(exe, SENTINEL_REFUSE_NO_ROOM);
		return SENTINEL_REFUSE_NO_ROOM;
	}
	count_role(SENTINEL_ROLE_STAT_GRANTED);
	return 0;
}

// release_binary: file is the agent binary of a release version: it has
// the release's binary name, in a directory of the releases directory, and
// is protected there (the whole tree is the updater's, and only what the
// updater created in it is in it).
static __always_inline bool release_binary(struct file *file, struct sentinel_inode *key)
{
	__u32 zero = 0;
	struct sentinel_release *rel = bpf_map_lookup_elem(&sentinel_layout, &zero);
	struct dentry *dentry = file->f_path.dentry;
	struct dentry *vdir = dentry->d_parent;
	struct sentinel_inode vkey, rkey;
	struct sentinel_object *o;
	char name[SENTINEL_NAME_LEN] = {};
	__u32 flags = 0;

	if (!rel || !rel->binary[0])
		return false;
	o = lookup_inode(dentry->d_inode, key);
	if (o)
		flags = o->flags;
	if (!(flags & SENTINEL_OBJ_PROTECTED))
		return false;
	flags = 0;
	o = lookup_inode(vdir->d_inode, &vkey);
	if (o)
		flags = o->flags;
	if (!(flags & SENTINEL_OBJ_INHERIT))
		return false;
	flags = 0;
	o = lookup_inode(vdir->d_parent->d_inode, &rkey);
	if (o)
		flags = o->flags;
	if (!(flags & SENTINEL_OBJ_RELEASES))
		return false;
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(dentry, d_name.name));
	for (int i = 0; i < SENTINEL_NAME_LEN; i++) {
		if (name[i] != rel->binary[i])
			return false;
		if (!name[i])
			break;
	}
	return true;
}

// learn_release_binary makes the agent binary of a release version an agent
// identity the first time it is exec'd: the updater put it there (an
// upgrade), or swapped the current symlink back to it (a rollback). Whether
// the exec earns the role is decided as for any role binary.
static __always_inline bool learn_release_binary(struct file *file)
{
	struct inode *inode = file->f_inode;
	struct sentinel_identity id = {.roles = SENTINEL_ROLE_AGENT, .gen_valid = 1};
	struct sentinel_object obj = {.flags = SENTINEL_OBJ_PROTECTED | SENTINEL_OBJ_AGENT_BINARY,
				      .allow = SENTINEL_ROLE_UPDATER};
	struct sentinel_inode key, none = {};

	if (!inode || on_overlay(inode) || !release_binary(file, &key))
		return false;
	complete_key(inode, &key);
	id.gen = inode->i_generation;
	if (bpf_map_update_elem(&sentinel_identities, &key, &id, BPF_ANY))
		return false;
	bpf_map_update_elem(&sentinel_objects, &key, &obj, BPF_ANY);
	emit(SENTINEL_OP_IDENTITY_LEARNED, SENTINEL_ALLOWED, obj.flags, &key, &none,
	     BPF_CORE_READ(file, f_path.dentry, d_name.name), 0);
	return true;
}

// Every exec decides the thread group's role afresh: the kernel has made
// the exec'ing thread the only one (de_thread) and the new executable is
// bprm->file. bprm->unsafe is the kernel's own verdict on the exec: traced
// (LSM_UNSAFE_PTRACE, also a tracer from PTRACE_TRACEME or one that
// attached before the exec) or sharing its fs_struct with another process
// (LSM_UNSAFE_SHARE: that process could chroot or chdir under it). A tracer
// cannot attach between this hook and the first instruction: ptrace_attach
// waits for the exec to finish, and then ptrace_access_check refuses it.
SEC("lsm/bprm_committing_creds")
int BPF_PROG(bprm_committing_creds, struct linux_binprm *bprm)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct sentinel_inode key;
	__u64 leader = group_leader(task);
	__u32 roles, reasons;
	int unsafe;

	roles = exe_roles(BPF_CORE_READ(bprm, file, f_inode), &key);
	if (!roles && learn_release_binary(bprm->file))
		roles = exe_roles(BPF_CORE_READ(bprm, file, f_inode), &key);
	if (!roles) {
		bpf_map_delete_elem(&sentinel_grants, &leader);
		return 0;
	}
	reasons = outside_control(task);
	unsafe = BPF_CORE_READ(bprm, unsafe);
	if (unsafe & LSM_UNSAFE_PTRACE)
		reasons |= SENTINEL_REFUSE_TRACED;
	if (unsafe & LSM_UNSAFE_SHARE)
		reasons |= SENTINEL_REFUSE_SHARED_FS;
	grant(leader, &key, roles, reasons);
	return 0;
}

// claim grants the loading agent its role (see struct sentinel_claim).
static __always_inline int claim(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct sentinel_claim *c;
	struct sentinel_inode key;
	__u32 zero = 0, tgid, roles, reasons;
	__u64 leader, start;
	int users, threads;

	c = bpf_map_lookup_elem(&sentinel_claims, &zero);
	if (!c || !c->tgid)
		return 0; // no claim is open
	tgid = bpf_get_current_pid_tgid() >> 32;
	leader = group_leader(task);
	roles = exe_roles(task_exe_inode(task), &key);
	start = BPF_CORE_READ((struct task_struct *)leader, start_boottime) / NSEC_PER_USER_TICK;
	if (c->tgid != tgid || c->start_ticks != start || !roles) {
		// Not the loader, or the loader runs no role binary.
		refuse_role(&key, SENTINEL_REFUSE_CLAIM);
		return 0;
	}
	reasons = outside_control(task);
	// The process's threads share its fs_struct; nobody else may. (A
	// thread being created counts early: the loader retries then.)
	users = BPF_CORE_READ(task, fs, users);
	threads = BPF_CORE_READ(task, signal, nr_threads);
	if (users > threads)
		reasons |= SENTINEL_REFUSE_SHARED_FS;
	reasons = grant(leader, &key, roles, reasons);
	c->tgid = 0;
	c->refused = reasons;
	if (!reasons)
		c->claimed = tgid;
	return 0;
}

// prctl(PR_SET_MM, PR_SET_MM_EXE_FILE or PR_SET_MM_MAP) changes the
// executable a process is known by. A process that switches to a role
// binary has no grant for it anyway (current_roles); this refuses the
// switch itself, to a role binary or away from one, so it is reported.
// PR_SET_MM_MAP's exe_fd is read from the caller's memory, which another
// thread may change after this check: the grant is what enforces.
SEC("lsm/task_prctl")
int BPF_PROG(task_prctl, int option, unsigned long arg2, unsigned long arg3, unsigned long arg4,
	     unsigned long arg5, int ret)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct sentinel_inode key = {}, none = {};
	struct file *f = NULL;
	__u32 roles;
	int fd = -1;

	if (ret)
		return ret;
	if (option == SENTINEL_PRCTL_CLAIM)
		return claim();
	if (option != PR_SET_MM || (arg2 != PR_SET_MM_EXE_FILE && arg2 != PR_SET_MM_MAP))
		return 0;
	roles = exe_roles(task_exe_inode(task), &key);
	if (!roles) {
		if (arg2 == PR_SET_MM_EXE_FILE)
			fd = (int)arg3;
		else if (arg3 && arg4 >= PRCTL_MM_MAP_EXE_FD + sizeof(__u32))
			bpf_probe_read_user(&fd, sizeof(fd), (void *)(arg3 + PRCTL_MM_MAP_EXE_FD));
		if (fd < 0)
			return 0;
		f = fd_file(current_fdt(), fd);
		if (!f)
			return 0;
		roles = exe_roles(BPF_CORE_READ(f, f_inode), &key);
		if (!roles)
			return 0;
	}
	count_role(SENTINEL_ROLE_STAT_REFUSED);
	return deny(SENTINEL_OP_PRCTL_EXE, 0, &key, &none, NULL, arg2);
}

// A process running a role binary may not make its parent its tracer.
// (A tracer attached before an exec is caught at the exec.)
SEC("lsm/ptrace_traceme")
int BPF_PROG(ptrace_traceme, struct task_struct *parent, int ret)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct sentinel_inode key, none = {};

	if (ret)
		return ret;
	if (!exe_roles(task_exe_inode(task), &key))
		return 0;
	count_role(SENTINEL_ROLE_STAT_REFUSED);
	return deny(SENTINEL_OP_TRACEME, 0, &key, &none, NULL, 0);
}

#endif
