/* SPDX-License-Identifier: GPL-2.0 */
/* Decisions: enforce or audit, events, and the check every file hook makes. Part of sentinel.c, included there in order. */
#ifndef FORTRESS_SENTINEL_CHECK_H
#define FORTRESS_SENTINEL_CHECK_H

// enforcing reports whether a denial is enforced now (enforce mode, or an
// audit window that has expired).
static __always_inline bool enforcing(void)
{
	__u32 zero = 0;
	struct sentinel_settings *s = bpf_map_lookup_elem(&sentinel_config, &zero);

	if (!s || s->mode != SENTINEL_MODE_AUDIT)
		return true;
	if (s->audit_until_ns && bpf_ktime_get_boot_ns() > s->audit_until_ns)
		return true;
	return false;
}

static __always_inline void emit(__u32 op, __u32 verdict, __u32 flags, struct sentinel_inode *obj,
				 struct sentinel_inode *parent, const unsigned char *name, __u64 arg)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct sentinel_event *ev;
	struct file *exe;
	__u64 id;

	ev = bpf_ringbuf_reserve(&sentinel_events, sizeof(*ev), 0);
	if (!ev) {
		count(SENTINEL_STAT_LOST);
		return;
	}
	id = bpf_get_current_pid_tgid();
	ev->time_ns = bpf_ktime_get_boot_ns();
	ev->pid = (__u32)id;
	ev->tgid = id >> 32;
	ev->uid = (__u32)bpf_get_current_uid_gid();
	ev->op = op;
	ev->verdict = verdict;
	ev->flags = flags;
	ev->object = *obj;
	ev->parent = *parent;
	ev->arg = arg;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	exe = BPF_CORE_READ(task, mm, exe_file);
	ev->exe.ino = 0;
	ev->exe.dev = 0;
	ev->exe.pad = 0;
	ev->exe_name[0] = 0;
	if (exe) {
		inode_key(BPF_CORE_READ(exe, f_inode), &ev->exe);
		bpf_probe_read_kernel_str(ev->exe_name, sizeof(ev->exe_name),
					  BPF_CORE_READ(exe, f_path.dentry, d_name.name));
	}
	ev->name[0] = 0;
	if (name)
		bpf_probe_read_kernel_str(ev->name, sizeof(ev->name), name);
	bpf_ringbuf_submit(ev, 0);
	count(SENTINEL_STAT_EVENTS);
}

// verdict turns a policy decision into the hook's return value, counting
// and reporting every denial.
static __always_inline int deny(__u32 op, __u32 flags, struct sentinel_inode *obj, struct sentinel_inode *parent,
				const unsigned char *name, __u64 arg)
{
	if (enforcing()) {
		count(SENTINEL_STAT_DENIED);
		emit(op, SENTINEL_DENIED, flags, obj, parent, name, arg);
		return -EPERM;
	}
	count(SENTINEL_STAT_AUDITED);
	emit(op, SENTINEL_AUDITED, flags, obj, parent, name, arg);
	return 0;
}

// check decides an operation on target (may be NULL, for a create) inside
// dir (may be NULL). tmask says which flags of the target itself make it
// protected for this operation; dmask is SENTINEL_OBJ_CHILDREN for a
// mutation (a directory protects its entries) and 0 for a read, which is
// only ever watched. A caller needs a role allowed by every entry that
// matched.
static __always_inline int check_op(__u32 op, struct inode *target, struct inode *dir, struct dentry *dentry,
				    __u32 tmask, __u32 dmask, __u64 arg)
{
	struct sentinel_inode tkey, dkey;
	struct sentinel_object *t = lookup_inode(target, &tkey);
	struct sentinel_object *d = lookup_inode(dir, &dkey);
	const unsigned char *name = NULL;
	__u32 tflags = 0, tallow = 0, dflags = 0, dallow = 0, flags, roles;

	// Copy to scalars at once: the verifier refuses arithmetic that the
	// compiler may otherwise do on the two map value pointers.
	if (t) {
		tflags = t->flags;
		tallow = t->allow;
	}
	if (d) {
		dflags = d->flags;
		dallow = d->allow;
	}
	if (!(tflags | dflags))
		return 0; // the fast path: nothing about these inodes is listed
	complete_key(target, &tkey);
	complete_key(dir, &dkey);
	if (dentry)
		name = BPF_CORE_READ(dentry, d_name.name);
	flags = (tflags & tmask) | (dflags & dmask);
	if (flags) {
		roles = current_roles();
		if (((tflags & tmask) && !(roles & tallow)) || ((dflags & dmask) && !(roles & dallow)))
			return deny(op, flags, &tkey, &dkey, name, arg);
	}
	if ((tflags & SENTINEL_WATCH_SELF) || (dflags & SENTINEL_WATCH_CHILDREN))
		emit(op, SENTINEL_ALLOWED, flags, &tkey, &dkey, name, arg);
	return 0;
}

static __always_inline int check(__u32 op, struct inode *target, struct inode *dir, struct dentry *dentry,
				 __u32 tmask, __u64 arg)
{
	return check_op(op, target, dir, dentry, tmask, SENTINEL_OBJ_CHILDREN, arg);
}

static __always_inline struct inode *parent_inode(struct dentry *dentry)
{
	return dentry->d_parent->d_inode;
}

static __always_inline int check_dentry(__u32 op, struct dentry *dentry, __u32 tmask, __u64 arg)
{
	return check(op, dentry->d_inode, parent_inode(dentry), dentry, tmask, arg);
}

#endif
