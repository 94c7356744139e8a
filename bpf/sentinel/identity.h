/* SPDX-License-Identifier: GPL-2.0 */
/* Identity: the roles of an executable and of the current task. Part of sentinel.c, included there in order. */
#ifndef FORTRESS_SENTINEL_IDENTITY_H
#define FORTRESS_SENTINEL_IDENTITY_H

static __always_inline struct inode *task_exe_inode(struct task_struct *task)
{
	return BPF_CORE_READ(task, mm, exe_file, f_inode);
}

// exe_roles returns the roles an executable inode is an identity for, and
// fills key. It says nothing about a process running it: see current_roles.
static __always_inline __u32 exe_roles(struct inode *exe, struct sentinel_inode *key)
{
	struct sentinel_identity *id;

	key->ino = 0;
	key->dev = 0;
	key->pad = 0;
	if (!exe)
		return 0; // kernel threads have no executable and no role
	inode_key(exe, key);
	if (!on_overlay(exe)) {
		id = bpf_map_lookup_elem(&sentinel_identities, key);
		if (!id || (id->flags & SENTINEL_IDENTITY_LAYER))
			return 0;
		if (id->gen_valid && id->gen != BPF_CORE_READ(exe, i_generation))
			return 0;
		return id->roles;
	}
	// On overlayfs the (dev, ino) of the overlay inode proves nothing:
	// the dev is reused by later mounts, and the ino is a layer file's
	// (the copy-up origin's for a copied-up file). On a recorded stack
	// whose layers share one filesystem, that layer file is the
	// identity: it is protected in its layer.
	{
		__u32 backing = 0;

		if (!trusted_stack(BPF_CORE_READ(exe, i_sb), SENTINEL_STACK_BINARIES, &backing) || !backing)
			return 0;
		key->dev = backing;
		id = bpf_map_lookup_elem(&sentinel_identities, key);
		if (!id || !(id->flags & SENTINEL_IDENTITY_LAYER))
			return 0;
		return id->roles;
	}
}

static __always_inline __u32 roles_of_exe(struct inode *exe)
{
	struct sentinel_inode key;

	return exe_roles(exe, &key);
}

// in_agent_root: the task's root directory is the agent's: the one the
// control plane marked SENTINEL_OBJ_ROOT (the loader's own root), or the
// root of an overlayfs whose layers are the stack recorded at the agent's
// claim (record_stack), whichever mount of those layers it is: a restarted
// container. The real binaries, bind-mounted into a fake root next to a
// fake /etc/serviceradar, or an overlay of other layers, run under chroot
// or pivot_root, carry no role there.
static __always_inline bool in_agent_root(struct task_struct *task)
{
	struct dentry *dentry = BPF_CORE_READ(task, fs, root.dentry);
	struct inode *root = BPF_CORE_READ(dentry, d_inode);
	struct sentinel_object *o;
	struct sentinel_inode key;
	struct super_block *sb;

	if (!root)
		return false;
	if (!on_overlay(root)) {
		inode_key(root, &key);
		o = bpf_map_lookup_elem(&sentinel_objects, &key);
		return o && (o->flags & SENTINEL_OBJ_ROOT);
	}
	sb = BPF_CORE_READ(root, i_sb);
	if (dentry != BPF_CORE_READ(sb, s_root))
		return false; // a directory inside an overlay is no container root
	return trusted_stack(sb, SENTINEL_STACK_ROOT, NULL);
}


static __always_inline __u64 group_leader(struct task_struct *task)
{
	return (__u64)BPF_CORE_READ(task, group_leader);
}

// current_roles: the roles of the current task. A task has a role only if
//   - its executable is an identity for it,
//   - its thread group earned the role with that very executable, at a
//     clean exec or the loader's claim (sentinel_grants),
//   - it is not being traced now, and
//   - its root directory is the system's.
// Running a role binary alone gives nothing: PR_SET_MM_EXE_FILE, a tracer
// or seccomp supervisor present at the exec, or a shared fs_struct leave
// the process without a grant.
static __always_inline __u32 current_roles(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct sentinel_grant *g;
	struct sentinel_inode key;
	__u64 leader;
	__u32 roles;

	roles = exe_roles(task_exe_inode(task), &key);
	if (!roles)
		return 0;
	leader = group_leader(task);
	g = bpf_map_lookup_elem(&sentinel_grants, &leader);
	if (!g || g->exe.ino != key.ino || g->exe.dev != key.dev)
		return 0;
	roles &= g->roles;
	if (roles && BPF_CORE_READ(task, ptrace))
		return 0;
	if (roles && !in_agent_root(task))
		return 0;
	return roles;
}

#endif
