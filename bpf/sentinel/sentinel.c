// SPDX-License-Identifier: GPL-2.0
// Sentinel: BPF LSM host protection for the ServiceRadar agent.
//
// Denies mutations (never reads) of protected inodes, matched by (s_dev,
// i_ino) as the kernel sees them, to every process whose executable is not an
// allowed identity; guards Fortress's own maps and links; emits file
// integrity events to a ring buffer, counting the ones that found no room.
// Enforcement never depends on an event being delivered.
//
// Oldest kernel: 5.10 (booted with lsm=...,bpf). Identity uses
// bpf_get_current_task() + CO-RE reads, since bpf_get_current_task_btf()
// is 5.11+. Hooks whose arguments moved between kernels (inode_setattr,
// inode_setxattr, inode_removexattr gained an idmap/userns first argument)
// come in variants named _a<N>, N being the index of the dentry argument; the
// loader keeps the one matching the running kernel's BTF.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "sentinel.h"

char LICENSE[] SEC("license") = "GPL";

#define EPERM 1
#define FMODE_WRITE 0x2
#define O_TRUNC 01000
#define S_IFMT 00170000
#define S_IFBLK 0060000
#define S_IFDIR 0040000
#define PTRACE_MODE_ATTACH 0x02
#define FS_IOC_SETFLAGS 0x40086602
#define FS_IOC32_SETFLAGS 0x40046602
#define FS_IOC_FSSETXATTR 0x401c5820
#define FS_IOC_SETVERSION 0x40087602
#define PROT_WRITE 0x2
#define MAP_SHARED 0x1 /* also set in MAP_SHARED_VALIDATE */
#define NETLINK_ROUTE 0
#define MAX_USED_MAPS 64
#define MS_REMOUNT 32
#define MS_UNBINDABLE (1 << 17)
#define MS_PRIVATE (1 << 18)
#define MS_SLAVE (1 << 19)
#define MS_SHARED (1 << 20)
#define PR_SET_MM 35
#define PR_SET_MM_EXE_FILE 13
#define PR_SET_MM_MAP 14
#define PRCTL_MM_MAP_EXE_FD 100 /* offsetof(struct prctl_mm_map, exe_fd) */
#define LSM_UNSAFE_SHARE 1
#define LSM_UNSAFE_PTRACE 2
#define NSEC_PER_USER_TICK 10000000 /* USER_HZ is 100 on every architecture Fortress builds for */
#define OVERLAYFS_SUPER_MAGIC 0x794c7630

/* Overlayfs internals (fs/overlayfs/ovl_entry.h), relocated against the
 * overlay module's BTF where it has one (5.11 on); overlay_stack reads the
 * 5.10 layout otherwise. */
struct ovl_layer___sentinel {
	struct vfsmount *mnt;
} __attribute__((preserve_access_index));

struct ovl_fs___sentinel {
	unsigned int numlayer;
	struct ovl_layer___sentinel *layers;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sentinel_inode);
	__type(value, struct sentinel_object);
} sentinel_objects SEC(".maps");

// A superset filter of sentinel_objects, by inode number, so that the
// common case (an inode nobody listed) costs an array load instead of hash
// lookups. Slots are set before their entries are added (by the control
// plane, and by learn_agent_binary) and never cleared, so a zero slot is
// proof of absence. One byte per element and plain stores: 5.10 has no
// atomic OR, and no store may clobber another's.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << SENTINEL_LISTED_BITS);
	__type(key, __u32);
	__type(value, __u8);
} sentinel_listed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct sentinel_inode);
	__type(value, struct sentinel_identity);
} sentinel_identities SEC(".maps");

// Roles earned by thread groups, keyed by the group leader's task_struct
// address: set at a clean exec of a role binary (bprm_committing_creds) or
// by the loader's claim, dropped at any other exec and in task_free, so an
// address is never reused with a stale grant.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct sentinel_grant);
} sentinel_grants SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sentinel_claim);
} sentinel_claims SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SENTINEL_ROLE_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sentinel_role_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct sentinel_guard);
	__type(value, __u32);
} sentinel_guarded SEC(".maps");

// Overlay layer stacks the agent's root may be (see struct sentinel_stack).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct sentinel_stack);
	__type(value, struct sentinel_stack_trust);
} sentinel_stacks SEC(".maps");

// One sentinel_stack per CPU to build a key in (it is larger than the
// stack of a BPF program allows).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sentinel_stack);
} sentinel_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sentinel_settings);
} sentinel_config SEC(".maps");

// The release layout, if the agent has one (struct sentinel_release).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sentinel_release);
} sentinel_layout SEC(".maps");

// The bpf(2) command each thread last started among those that create a
// program fd, so that the bpf_prog hook can tell a load from a lookup.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} sentinel_bpf_cmd SEC(".maps");

// Tasks (by task_struct address) that hold a Fortress fd (a write-capable
// fd of a guarded map, an fd of a guarded link or of a Fortress program) in
// a private fd table. Such a task may not clone: its table never becomes
// shared, so no other thread can swap an fd between a bpf(2) hook and the
// command. Entries leave with the task.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} sentinel_holders SEC(".maps");

// Tasks whose next file allocation is the fd for a guarded link they may
// not have (BPF_OBJ_GET into a shared fd table), and how many there are,
// so that file_alloc_security costs one array load when there are none.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} sentinel_link_deny SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sentinel_link_deny_n SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SENTINEL_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sentinel_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} sentinel_events SEC(".maps");


// Put the event type and the refusal reasons into BTF for bpf2go -type;
// never read.
const struct sentinel_event *unused_sentinel_event __attribute__((unused));
const enum sentinel_refusal *unused_sentinel_refusal __attribute__((unused));
const enum sentinel_prctl *unused_sentinel_prctl __attribute__((unused));
const enum sentinel_op *unused_sentinel_op __attribute__((unused));
const enum sentinel_role_stat *unused_sentinel_role_stat __attribute__((unused));
const enum sentinel_identity_flag *unused_sentinel_identity_flag __attribute__((unused));
const enum sentinel_stack_flag *unused_sentinel_stack_flag __attribute__((unused));
const enum sentinel_object_flag *unused_sentinel_object_flag __attribute__((unused));

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&sentinel_stats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline void inode_key(struct inode *inode, struct sentinel_inode *key)
{
	key->ino = BPF_CORE_READ(inode, i_ino);
	key->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key->pad = 0;
}

// listed_slot is the sentinel_listed slot of an inode number (Fibonacci
// hashing; the control plane computes the same).
static __always_inline __u32 listed_slot(__u64 ino)
{
	return (ino * 0x9E3779B97F4A7C15ULL) >> (64 - SENTINEL_LISTED_BITS);
}

static __always_inline bool maybe_listed(__u64 ino)
{
	__u32 slot = listed_slot(ino);
	__u8 *set = bpf_map_lookup_elem(&sentinel_listed, &slot);

	return set && *set;
}

// lookup_inode takes an inode reached from a hook's arguments (a BTF
// pointer): plain loads and an inlined array lookup on the hot path. It
// fills key->ino; key->dev only if the inode may be listed (complete_key
// does the rest where an event needs it).
static __always_inline struct sentinel_object *lookup_inode(struct inode *inode, struct sentinel_inode *key)
{
	key->ino = 0;
	key->dev = 0;
	key->pad = 0;
	if (!inode)
		return NULL;
	key->ino = inode->i_ino;
	if (!maybe_listed(key->ino))
		return NULL;
	key->dev = inode->i_sb->s_dev;
	return bpf_map_lookup_elem(&sentinel_objects, key);
}

static __always_inline void complete_key(struct inode *inode, struct sentinel_inode *key)
{
	if (inode)
		key->dev = inode->i_sb->s_dev;
}

// overlay_stack fills this CPU's scratch with the layers of sb and returns
// it, or NULL: sb is not overlayfs, has more layers than SENTINEL_STACK_MAX,
// or this kernel's overlayfs was unknown at load.
static __always_inline struct sentinel_stack *overlay_stack(struct super_block *sb)
{
	struct ovl_fs___sentinel *ofs;
	struct sentinel_stack *st;
	__u32 zero = 0, n, i;
	__u64 size, moff;
	void *layers;

	if (!sb || BPF_CORE_READ(sb, s_magic) != OVERLAYFS_SUPER_MAGIC)
		return NULL;
	st = bpf_map_lookup_elem(&sentinel_scratch, &zero);
	if (!st)
		return NULL;
	ofs = BPF_CORE_READ(sb, s_fs_info);
	if (bpf_core_type_exists(struct ovl_fs___sentinel)) {
		n = BPF_CORE_READ(ofs, numlayer);
		layers = BPF_CORE_READ(ofs, layers);
		size = bpf_core_type_size(struct ovl_layer___sentinel);
		moff = bpf_core_field_offset(struct ovl_layer___sentinel, mnt);
	} else {
		// No BTF for overlayfs: modules have BTF only from 5.11. The
		// layout of 5.7 to 6.4: numlayer, numfs, then the layers
		// pointer; a layer is 32 bytes with mnt first. A kernel laid
		// out otherwise yields a stack that matches nothing recorded
		// (no role: closed).
		n = 0;
		layers = NULL;
		bpf_probe_read_kernel(&n, sizeof(n), ofs);
		bpf_probe_read_kernel(&layers, sizeof(layers), (void *)ofs + 8);
		size = 32;
		moff = 0;
	}
	if (n == 0 || n > SENTINEL_STACK_MAX || !layers)
		return NULL;
	st->layers = n;
	st->pad = 0;
	for (i = 0; i < SENTINEL_STACK_MAX; i++) {
		struct ovl_layer___sentinel *l = layers + i * size;
		struct inode *root = NULL;
		struct vfsmount *mnt;

		st->layer[i].ino = 0;
		st->layer[i].dev = 0;
		st->layer[i].pad = 0;
		if (i >= n)
			continue;
		mnt = NULL;
		bpf_probe_read_kernel(&mnt, sizeof(mnt), (void *)l + moff);
		if (mnt)
			root = BPF_CORE_READ(mnt, mnt_root, d_inode);
		if (root)
			inode_key(root, &st->layer[i]);
	}
	return st;
}

// stack_trust looks the layer stack of sb (a super_block) up in
// sentinel_stacks: -1 if sb is no overlayfs of a recorded stack with every
// flag of want, else the filesystem the layers are on (0: several). A
// global function, verified once per program rather than inlined into
// every check: the layer loop is long.
__noinline long stack_trust(__u64 sb, __u32 want)
{
	struct sentinel_stack *st = overlay_stack((struct super_block *)sb);
	struct sentinel_stack_trust *t;

	if (!st)
		return -1;
	t = bpf_map_lookup_elem(&sentinel_stacks, st);
	if (!t || (t->flags & want) != want)
		return -1;
	return t->backing_dev;
}

// trusted_stack: sb is an overlayfs whose layers are a stack recorded
// with every flag of want; backing (if not NULL) gets the filesystem the
// layers are on.
static __always_inline bool trusted_stack(struct super_block *sb, __u32 want, __u32 *backing)
{
	long r = stack_trust((__u64)sb, want);

	if (r < 0)
		return false;
	if (backing)
		*backing = (__u32)r;
	return true;
}

static __always_inline bool on_overlay(struct inode *inode)
{
	return BPF_CORE_READ(inode, i_sb, s_magic) == OVERLAYFS_SUPER_MAGIC;
}

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

// raw_device refuses a write open of the block device a protected file
// lives on: dd or debugfs -w on it would change the file under every inode
// check. The device is matched by its dev_t (i_rdev), so any node for it,
// also one made with mknod, is the same device.
static __always_inline int raw_device(struct inode *inode)
{
	struct sentinel_inode key = {}, none = {};
	struct sentinel_object *o;
	__u32 allow;

	key.dev = inode->i_rdev;
	o = bpf_map_lookup_elem(&sentinel_objects, &key);
	if (!o || !(o->flags & SENTINEL_OBJ_BLOCKDEV))
		return 0;
	allow = o->allow;
	if (current_roles() & allow)
		return 0;
	return deny(SENTINEL_OP_OPEN_WRITE, SENTINEL_OBJ_BLOCKDEV, &key, &none, NULL, 0);
}

SEC("lsm/file_open")
int BPF_PROG(file_open, struct file *file, int ret)
{
	struct dentry *dentry;
	struct inode *inode;
	__u32 op = SENTINEL_OP_OPEN;
	__u32 tmask = 0;

	if (ret)
		return ret;
	if ((file->f_mode & FMODE_WRITE) || (file->f_flags & O_TRUNC)) {
		op = SENTINEL_OP_OPEN_WRITE;
		tmask = SENTINEL_OBJ_PROTECTED;
		inode = file->f_inode;
		if (inode && (inode->i_mode & S_IFMT) == S_IFBLK) {
			ret = raw_device(inode);
			if (ret)
				return ret;
		}
	}
	dentry = file->f_path.dentry;
	if (!tmask) // reads are never denied, only watched
		return check_op(op, file->f_inode, parent_inode(dentry), dentry, 0, 0, 0);
	return check(op, file->f_inode, parent_inode(dentry), dentry, tmask, 0);
}

static __always_inline int setattr(struct dentry *dentry, struct iattr *attr)
{
	__u32 valid = BPF_CORE_READ(attr, ia_valid);
	// ATTR_SIZE (8) alone is a truncate; anything else is an attribute change.
	__u32 op = valid == 8 || valid == (8 | 0x20 | 0x40) ? SENTINEL_OP_TRUNCATE : SENTINEL_OP_SETATTR;

	return check_dentry(op, dentry, SENTINEL_OBJ_PROTECTED, valid);
}

SEC("lsm/inode_setattr")
int BPF_PROG(inode_setattr_a0, struct dentry *dentry, struct iattr *attr, int ret)
{
	return ret ? ret : setattr(dentry, attr);
}

SEC("lsm/inode_setattr")
int BPF_PROG(inode_setattr_a1, void *idmap, struct dentry *dentry, struct iattr *attr, int ret)
{
	return ret ? ret : setattr(dentry, attr);
}

SEC("lsm/inode_unlink")
int BPF_PROG(inode_unlink, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return check(SENTINEL_OP_UNLINK, dentry->d_inode, dir, dentry, SENTINEL_OBJ_PROTECTED | SENTINEL_OBJ_ANCESTOR,
		     0);
}

SEC("lsm/inode_rmdir")
int BPF_PROG(inode_rmdir, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return check(SENTINEL_OP_RMDIR, dentry->d_inode, dir, dentry, SENTINEL_OBJ_PROTECTED | SENTINEL_OBJ_ANCESTOR,
		     0);
}

// learn_agent_binary makes a new agent executable, moved over the agent
// binary by the updater, an agent identity and a protected object. The old
// identity stays until the control plane prunes it, so the running agent
// keeps its authority through the upgrade.
static __always_inline void learn_agent_binary(struct dentry *src, struct sentinel_inode *parent)
{
	struct inode *inode = src->d_inode;
	struct sentinel_identity id = {.roles = SENTINEL_ROLE_AGENT, .gen_valid = 1};
	struct sentinel_object obj = {
		.flags = SENTINEL_OBJ_PROTECTED | SENTINEL_OBJ_AGENT_BINARY,
		.allow = SENTINEL_ROLE_UPDATER,
	};
	struct sentinel_inode key;
	__u32 slot;
	__u8 *set;

	// On overlayfs an inode's (dev, ino) is no lasting name (exe_roles): a
	// binary there is upgraded by a new image, not learned here.
	if (!inode || on_overlay(inode))
		return;
	inode_key(inode, &key);
	id.gen = BPF_CORE_READ(inode, i_generation);
	// The filter slot first: sentinel_objects never holds an entry whose
	// slot is clear.
	slot = listed_slot(key.ino);
	set = bpf_map_lookup_elem(&sentinel_listed, &slot);
	if (!set)
		return;
	*set = 1;
	bpf_map_update_elem(&sentinel_identities, &key, &id, BPF_ANY);
	bpf_map_update_elem(&sentinel_objects, &key, &obj, BPF_ANY);
	emit(SENTINEL_OP_IDENTITY_LEARNED, SENTINEL_ALLOWED, obj.flags, &key, parent, BPF_CORE_READ(src, d_name.name),
	     0);
}

// A role's tree (SENTINEL_OBJ_INHERIT on its directories) holds only what
// was created in it: d_instantiate protects each new entry from the moment
// it has a name, so nothing in the tree was ever writable by another
// process, and into_tree refuses to move or link in an inode from outside,
// which another process may have written or still hold open for writing.

// into_tree refuses to put inode into dir, a directory of a role's tree,
// unless the inode is protected already.
static __always_inline int into_tree(__u32 op, struct inode *inode, struct inode *dir, struct dentry *dentry)
{
	struct sentinel_inode dkey, key;
	struct sentinel_object *d = lookup_inode(dir, &dkey);
	struct sentinel_object *o;
	__u32 dflags = 0, oflags = 0;

	if (d)
		dflags = d->flags;
	if (!(dflags & SENTINEL_OBJ_INHERIT))
		return 0;
	o = lookup_inode(inode, &key);
	if (o)
		oflags = o->flags;
	if (oflags & SENTINEL_OBJ_PROTECTED)
		return 0;
	complete_key(inode, &key);
	complete_key(dir, &dkey);
	return deny(op, SENTINEL_OBJ_INHERIT, &key, &dkey, BPF_CORE_READ(dentry, d_name.name), 0);
}

// d_instantiate: an inode gets a name (a create, mkdir, symlink, mknod,
// tmpfile or link; also a lookup that brings an existing entry into the
// dcache). An entry that a role creates in a directory of its tree is
// protected as the directory is: a directory with its entries and
// inheriting, anything else by itself. Existing entries are in the policy
// already and keep their entry (BPF_NOEXIST).
SEC("lsm/d_instantiate")
int BPF_PROG(d_instantiate, struct dentry *dentry, struct inode *inode)
{
	struct sentinel_object obj = {.flags = SENTINEL_OBJ_PROTECTED};
	struct sentinel_inode dkey, key;
	struct sentinel_object *d;
	__u32 dflags = 0, slot;
	__u8 *set;

	if (!inode || !dentry)
		return 0;
	d = lookup_inode(dentry->d_parent->d_inode, &dkey);
	if (d) {
		dflags = d->flags;
		obj.allow = d->allow;
	}
	if (!(dflags & SENTINEL_OBJ_INHERIT) || !(current_roles() & obj.allow))
		return 0;
	if ((inode->i_mode & S_IFMT) == S_IFDIR)
		obj.flags |= SENTINEL_OBJ_CHILDREN | SENTINEL_OBJ_INHERIT;
	inode_key(inode, &key);
	// The filter slot first: sentinel_objects never holds an entry whose
	// slot is clear.
	slot = listed_slot(key.ino);
	set = bpf_map_lookup_elem(&sentinel_listed, &slot);
	if (!set)
		return 0;
	*set = 1;
	bpf_map_update_elem(&sentinel_objects, &key, &obj, BPF_NOEXIST);
	return 0;
}

SEC("lsm/inode_rename")
int BPF_PROG(inode_rename, struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir,
	     struct dentry *new_dentry, int ret)
{
	struct sentinel_inode key;
	struct sentinel_object *target;
	int err;

	if (ret)
		return ret;
	err = check(SENTINEL_OP_RENAME_FROM, old_dentry->d_inode, old_dir, old_dentry,
		    SENTINEL_OBJ_PROTECTED | SENTINEL_OBJ_ANCESTOR, 0);
	if (err)
		return err;
	err = check(SENTINEL_OP_RENAME_TO, new_dentry->d_inode, new_dir, new_dentry,
		    SENTINEL_OBJ_PROTECTED | SENTINEL_OBJ_ANCESTOR, 0);
	if (err)
		return err;
	err = into_tree(SENTINEL_OP_RENAME_TO, old_dentry->d_inode, new_dir, new_dentry);
	if (err)
		return err;
	target = lookup_inode(new_dentry->d_inode, &key);
	if (target && (target->flags & SENTINEL_OBJ_AGENT_BINARY) && (current_roles() & SENTINEL_ROLE_UPDATER)) {
		struct sentinel_inode pkey = {.ino = old_dir->i_ino, .dev = old_dir->i_sb->s_dev};

		learn_agent_binary(old_dentry, &pkey);
	}
	return 0;
}

SEC("lsm/inode_link")
int BPF_PROG(inode_link, struct dentry *old_dentry, struct inode *dir, struct dentry *new_dentry, int ret)
{
	int err;

	if (ret)
		return ret;
	// A new name for a protected inode is a way to reach it later.
	err = check_dentry(SENTINEL_OP_LINK, old_dentry, SENTINEL_OBJ_PROTECTED, 0);
	if (err)
		return err;
	err = into_tree(SENTINEL_OP_LINK, old_dentry->d_inode, dir, new_dentry);
	if (err)
		return err;
	return check(SENTINEL_OP_CREATE, NULL, dir, new_dentry, 0, 0);
}

SEC("lsm/inode_create")
int BPF_PROG(inode_create, struct inode *dir, struct dentry *dentry, umode_t mode, int ret)
{
	return ret ? ret : check(SENTINEL_OP_CREATE, NULL, dir, dentry, 0, mode);
}

SEC("lsm/inode_symlink")
int BPF_PROG(inode_symlink, struct inode *dir, struct dentry *dentry, const char *old_name, int ret)
{
	return ret ? ret : check(SENTINEL_OP_SYMLINK, NULL, dir, dentry, 0, 0);
}

SEC("lsm/inode_mkdir")
int BPF_PROG(inode_mkdir, struct inode *dir, struct dentry *dentry, umode_t mode, int ret)
{
	return ret ? ret : check(SENTINEL_OP_MKDIR, NULL, dir, dentry, 0, mode);
}

SEC("lsm/inode_mknod")
int BPF_PROG(inode_mknod, struct inode *dir, struct dentry *dentry, umode_t mode, dev_t dev, int ret)
{
	return ret ? ret : check(SENTINEL_OP_MKNOD, NULL, dir, dentry, 0, mode);
}

SEC("lsm/inode_setxattr")
int BPF_PROG(inode_setxattr_a0, struct dentry *dentry, const char *name, const void *value, size_t size, int flags,
	     int ret)
{
	return ret ? ret : check_dentry(SENTINEL_OP_SETXATTR, dentry, SENTINEL_OBJ_PROTECTED, 0);
}

SEC("lsm/inode_setxattr")
int BPF_PROG(inode_setxattr_a1, void *idmap, struct dentry *dentry, const char *name, const void *value, size_t size,
	     int flags, int ret)
{
	return ret ? ret : check_dentry(SENTINEL_OP_SETXATTR, dentry, SENTINEL_OBJ_PROTECTED, 0);
}

SEC("lsm/inode_removexattr")
int BPF_PROG(inode_removexattr_a0, struct dentry *dentry, const char *name, int ret)
{
	return ret ? ret : check_dentry(SENTINEL_OP_REMOVEXATTR, dentry, SENTINEL_OBJ_PROTECTED, 0);
}

SEC("lsm/inode_removexattr")
int BPF_PROG(inode_removexattr_a1, void *idmap, struct dentry *dentry, const char *name, int ret)
{
	return ret ? ret : check_dentry(SENTINEL_OP_REMOVEXATTR, dentry, SENTINEL_OBJ_PROTECTED, 0);
}

// ACLs have their own hooks from 6.2 on; older kernels set them as xattrs.
SEC("lsm/inode_set_acl")
int BPF_PROG(inode_set_acl_a1, void *idmap, struct dentry *dentry, const char *acl_name, void *kacl, int ret)
{
	return ret ? ret : check_dentry(SENTINEL_OP_SET_ACL, dentry, SENTINEL_OBJ_PROTECTED, 0);
}

SEC("lsm/inode_remove_acl")
int BPF_PROG(inode_remove_acl_a1, void *idmap, struct dentry *dentry, const char *acl_name, int ret)
{
	return ret ? ret : check_dentry(SENTINEL_OP_SET_ACL, dentry, SENTINEL_OBJ_PROTECTED, 0);
}

static __always_inline int ioctl(struct file *file, unsigned int cmd)
{
	if (cmd != FS_IOC_SETFLAGS && cmd != FS_IOC32_SETFLAGS && cmd != FS_IOC_FSSETXATTR && cmd != FS_IOC_SETVERSION)
		return 0;
	return check_dentry(SENTINEL_OP_IOCTL_SETFLAGS, file->f_path.dentry, SENTINEL_OBJ_PROTECTED, cmd);
}

SEC("lsm/file_ioctl")
int BPF_PROG(file_ioctl, struct file *file, unsigned int cmd, unsigned long arg, int ret)
{
	return ret ? ret : ioctl(file, cmd);
}

SEC("lsm/file_ioctl_compat")
int BPF_PROG(file_ioctl_compat, struct file *file, unsigned int cmd, unsigned long arg, int ret)
{
	return ret ? ret : ioctl(file, cmd);
}

static __always_inline int mount_on(const struct path *path, __u64 flags)
{
	return check_dentry(SENTINEL_OP_MOUNT, path->dentry,
			    SENTINEL_OBJ_PROTECTED | SENTINEL_OBJ_ANCESTOR, flags);
}

SEC("lsm/sb_mount")
int BPF_PROG(sb_mount, const char *dev_name, const struct path *path, const char *type, unsigned long flags,
	     void *data, int ret)
{
	if (ret)
		return ret;
	// Remounts and propagation changes do not put anything over a path.
	if (flags & (MS_REMOUNT | MS_UNBINDABLE | MS_PRIVATE | MS_SLAVE | MS_SHARED))
		return 0;
	return mount_on(path, flags);
}

SEC("lsm/move_mount")
int BPF_PROG(move_mount, const struct path *from_path, const struct path *to_path, int ret)
{
	return ret ? ret : mount_on(to_path, 0);
}

SEC("lsm/sb_umount")
int BPF_PROG(sb_umount, struct vfsmount *mnt, int flags, int ret)
{
	struct sentinel_inode key = {};
	struct sentinel_inode none = {};
	struct sentinel_object *sb;

	if (ret)
		return ret;
	key.dev = BPF_CORE_READ(mnt, mnt_sb, s_dev);
	sb = bpf_map_lookup_elem(&sentinel_objects, &key);
	if (!sb || !(sb->flags & SENTINEL_OBJ_SUPERBLOCK))
		return 0;
	if (current_roles() & sb->allow)
		return 0;
	return deny(SENTINEL_OP_UMOUNT, SENTINEL_OBJ_SUPERBLOCK, &key, &none, NULL, flags);
}

// Fortress maps and links. bpftool 7.1 (Debian) asks for a read-write fd
// even to dump a map, so refusing write fds outright would break dumps.
// Instead the mutating bpf(2) commands are refused: the fd they name is
// resolved in the hook. Another thread could swap that fd between the hook
// and the command. To close the race a non-agent task may get a guarded
// write-capable fd only into a private fd table, and may then no longer
// clone (hold, task_alloc), so the table never becomes shared. A mutating
// command is also refused while the table holds any guarded write-capable
// fd among its first SCAN_FDS (a bounded scan).
#define SCAN_FDS 512

static __always_inline struct fdtable *current_fdt(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, files, fdt);
}

static __always_inline bool files_shared(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, files, count.counter) > 1;
}

// bpf_obj_id returns the id of the map (kind MAP) or link (kind LINK) behind
// f, or 0 if f is no such object. Their anon inodes are named "bpf-map" and
// "bpf_link".
static __always_inline __u32 bpf_obj_id(struct file *f, __u32 kind)
{
	char name[8] = {};
	void *obj;

	if (!f)
		return 0;
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(f, f_path.dentry, d_name.name));
	if (name[0] != 'b' || name[1] != 'p' || name[2] != 'f')
		return 0;
	obj = BPF_CORE_READ(f, private_data);
	if (!obj)
		return 0;
	if (kind == SENTINEL_GUARD_MAP && name[3] == '-' && name[4] == 'm' && name[5] == 'a' && name[6] == 'p')
		return BPF_CORE_READ((struct bpf_map *)obj, id);
	/* A link's first fd is named "bpf_link", fds from BPF_OBJ_GET and
	 * BPF_LINK_GET_FD_BY_ID "bpf-link". */
	if (kind == SENTINEL_GUARD_LINK && (name[3] == '_' || name[3] == '-') && name[4] == 'l' && name[5] == 'i' &&
	    name[6] == 'n')
		return BPF_CORE_READ((struct bpf_link *)obj, id);
	return 0;
}

static __always_inline int guarded(__u32 kind, __u32 id)
{
	struct sentinel_guard key = {.kind = kind, .id = id};

	if (!id)
		return 0;
	return bpf_map_lookup_elem(&sentinel_guarded, &key) != NULL;
}

static __always_inline struct file *fd_file(struct fdtable *fdt, unsigned int fd)
{
	struct file **fds;
	struct file *f = NULL;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

// guarded_write_file: f is a guarded map open for writing, or a guarded link.
static __always_inline bool guarded_write_file(struct file *f, __u32 kind)
{
	if (kind == SENTINEL_GUARD_MAP && !(BPF_CORE_READ(f, f_mode) & FMODE_WRITE))
		return false;
	return guarded(kind, bpf_obj_id(f, kind));
}

// holds_guarded scans the current fd table.
static __always_inline bool holds_guarded(__u32 kind)
{
	struct fdtable *fdt = current_fdt();
	unsigned int max;
	struct file **fds;

	if (!fdt)
		return false;
	max = BPF_CORE_READ(fdt, max_fds);
	fds = BPF_CORE_READ(fdt, fd);
	for (int i = 0; i < SCAN_FDS; i++) {
		struct file *f = NULL;

		if (i >= max)
			break;
		bpf_probe_read_kernel(&f, sizeof(f), &fds[i]);
		if (f && guarded_write_file(f, kind))
			return true;
	}
	return false;
}

static __always_inline int deny_obj(__u32 op, __u32 id)
{
	struct sentinel_inode key = {}, none = {};

	return deny(op, 0, &key, &none, NULL, id);
}

// hold records that the current task gets a Fortress fd: a guarded map
// open for writing, a guarded link or a Fortress program. A shared fd
// table may not get one at all; a private one may, and then the task may
// not clone (task_alloc) or send route netlink messages (netlink_send).
// 0 or -EPERM.
static __always_inline int hold(__u32 op, __u32 id)
{
	__u64 task = bpf_get_current_task();
	__u64 files = (__u64)BPF_CORE_READ((struct task_struct *)task, files);

	if (files_shared())
		return deny_obj(op, id);
	if (bpf_map_update_elem(&sentinel_holders, &task, &files, BPF_ANY))
		return deny_obj(op, id); // no room to remember it: refuse
	return 0;
}

SEC("lsm/bpf_map")
int BPF_PROG(bpf_map, struct bpf_map *map, fmode_t fmode, int ret)
{
	if (ret)
		return ret;
	if (!(fmode & FMODE_WRITE) || !guarded(SENTINEL_GUARD_MAP, map->id))
		return 0;
	if (current_roles() & SENTINEL_ROLE_AGENT)
		return 0;
	return hold(SENTINEL_OP_MAP_WRITE, map->id);
}

// A link fd from BPF_OBJ_GET has no LSM hook of its own: this runs before
// the fd is made, and file_alloc_security refuses the file if the table is
// shared. (BPF_LINK_GET_FD_BY_ID is decided in the bpf hook.)
SEC("fentry/bpf_link_new_fd")
int BPF_PROG(link_new_fd, struct bpf_link *link)
{
	__u64 task, *n;
	__u32 zero = 0, id;

	if (!link)
		return 0;
	id = link->id;
	if (!guarded(SENTINEL_GUARD_LINK, id))
		return 0;
	if (current_roles() & SENTINEL_ROLE_AGENT)
		return 0;
	if (!hold(SENTINEL_OP_LINK_FD, id))
		return 0;
	// Should the fd not be made after all (no free fd number), the
	// task's next file is refused once, or the entry leaves in task_free.
	task = bpf_get_current_task();
	n = bpf_map_lookup_elem(&sentinel_link_deny_n, &zero);
	if (n && !bpf_map_update_elem(&sentinel_link_deny, &task, &id, BPF_ANY))
		__sync_fetch_and_add(n, 1);
	return 0;
}

SEC("lsm/file_alloc_security")
int BPF_PROG(file_alloc_security, struct file *file, int ret)
{
	__u64 task, *n;
	__u32 zero = 0;

	if (ret)
		return ret;
	n = bpf_map_lookup_elem(&sentinel_link_deny_n, &zero);
	if (!n || !*n)
		return 0;
	task = bpf_get_current_task();
	if (!bpf_map_lookup_elem(&sentinel_link_deny, &task))
		return 0;
	if (bpf_map_delete_elem(&sentinel_link_deny, &task))
		return 0;
	__sync_fetch_and_add(n, -1);
	return -EPERM;
}

// A task that holds a guarded fd may not make threads or processes: a
// thread would share its fd table, and a child would get a copy it could
// then share.
SEC("lsm/task_alloc")
int BPF_PROG(task_alloc, struct task_struct *task, unsigned long clone_flags, int ret)
{
	__u64 cur;

	if (ret)
		return ret;
	cur = bpf_get_current_task();
	if (!bpf_map_lookup_elem(&sentinel_holders, &cur))
		return 0;
	return deny_obj(SENTINEL_OP_CLONE, 0);
}

SEC("lsm/task_free")
int BPF_PROG(task_free, struct task_struct *task)
{
	__u64 key = (__u64)task, *n;
	__u32 zero = 0;

	bpf_map_delete_elem(&sentinel_holders, &key);
	bpf_map_delete_elem(&sentinel_grants, &key);
	if (bpf_map_delete_elem(&sentinel_link_deny, &key))
		return 0;
	n = bpf_map_lookup_elem(&sentinel_link_deny_n, &zero);
	if (n)
		__sync_fetch_and_add(n, -1);
	return 0;
}

// guarded_map_of returns the id of a guarded map that p uses, or 0.
static __always_inline __u32 guarded_map_of(struct bpf_prog *p)
{
	struct bpf_map **used;
	__u32 n;

	if (!p)
		return 0;
	n = BPF_CORE_READ(p, aux, used_map_cnt);
	used = BPF_CORE_READ(p, aux, used_maps);
	for (int i = 0; i < MAX_USED_MAPS; i++) {
		struct bpf_map *m = NULL;
		__u32 id;

		if (i >= n)
			break;
		bpf_probe_read_kernel(&m, sizeof(m), &used[i]);
		if (!m)
			continue;
		id = BPF_CORE_READ(m, id);
		if (guarded(SENTINEL_GUARD_MAP, id))
			return id;
	}
	return 0;
}

// fortress_prog_file: the id of a guarded map used by the program behind
// f, or 0 if f is no program or not a Fortress one.
static __always_inline __u32 fortress_prog_file(struct file *f)
{
	char name[9] = {};

	if (!f)
		return 0;
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(f, f_path.dentry, d_name.name));
	if (name[0] != 'b' || name[1] != 'p' || name[2] != 'f' || name[3] != '-' || name[4] != 'p' || name[5] != 'r' ||
	    name[6] != 'o' || name[7] != 'g')
		return 0;
	return guarded_map_of((struct bpf_prog *)BPF_CORE_READ(f, private_data));
}

static __always_inline __u32 fortress_prog_fd(int fd)
{
	return fortress_prog_file(fd_file(current_fdt(), fd));
}

// An fd passed over a unix socket or taken with pidfd_getfd: a Fortress
// map (write-capable), link or program fd would land in a table that no
// hold() checked.
SEC("lsm/file_receive")
int BPF_PROG(file_receive, struct file *file, int ret)
{
	__u32 id, op;

	if (ret)
		return ret;
	if (guarded_write_file(file, SENTINEL_GUARD_MAP)) {
		id = bpf_obj_id(file, SENTINEL_GUARD_MAP);
		op = SENTINEL_OP_MAP_WRITE;
	} else if (guarded_write_file(file, SENTINEL_GUARD_LINK)) {
		id = bpf_obj_id(file, SENTINEL_GUARD_LINK);
		op = SENTINEL_OP_LINK_FD;
	} else if ((id = fortress_prog_file(file))) {
		op = SENTINEL_OP_PROG_FD;
	} else {
		return 0;
	}
	if (current_roles() & SENTINEL_ROLE_AGENT)
		return 0;
	return deny_obj(op, id);
}

// A task holding a Fortress fd may not send route netlink messages: with a
// program fd it could attach a Fortress program to an interface
// (IFLA_XDP_FD) or as a tc classifier, requests the bpf hooks never see.
// Only holders are affected, and the agent never is one.
SEC("lsm/netlink_send")
int BPF_PROG(netlink_send, struct sock *sk, struct sk_buff *skb, int ret)
{
	__u64 task;

	if (ret)
		return ret;
	task = bpf_get_current_task();
	if (!bpf_map_lookup_elem(&sentinel_holders, &task))
		return 0;
	if (BPF_CORE_READ(sk, sk_protocol) != NETLINK_ROUTE)
		return 0;
	return deny_obj(SENTINEL_OP_NETLINK, 0);
}

SEC("lsm/bpf")
int BPF_PROG(bpf, int cmd, union bpf_attr *attr, unsigned int size, int ret)
{
	__u32 kind, op, id;
	struct file *f;
	int fd;

	if (ret)
		return ret;
	switch (cmd) {
	case BPF_PROG_LOAD:
	case BPF_PROG_GET_FD_BY_ID:
	case BPF_OBJ_GET: {
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		__u32 c = cmd;

		bpf_map_update_elem(&sentinel_bpf_cmd, &tid, &c, BPF_ANY);
		return 0;
	}
	case BPF_MAP_UPDATE_ELEM:
	case BPF_MAP_DELETE_ELEM:
	case BPF_MAP_LOOKUP_AND_DELETE_ELEM:
	case BPF_MAP_FREEZE:
		kind = SENTINEL_GUARD_MAP;
		op = SENTINEL_OP_MAP_WRITE;
		fd = BPF_CORE_READ(attr, map_fd);
		break;
	case BPF_MAP_UPDATE_BATCH:
	case BPF_MAP_DELETE_BATCH:
	case BPF_MAP_LOOKUP_AND_DELETE_BATCH:
		kind = SENTINEL_GUARD_MAP;
		op = SENTINEL_OP_MAP_WRITE;
		fd = BPF_CORE_READ(attr, batch.map_fd);
		break;
	case BPF_LINK_DETACH:
		kind = SENTINEL_GUARD_LINK;
		op = SENTINEL_OP_LINK_MODIFY;
		fd = BPF_CORE_READ(attr, link_detach.link_fd);
		break;
	case BPF_LINK_UPDATE:
		kind = SENTINEL_GUARD_LINK;
		op = SENTINEL_OP_LINK_MODIFY;
		fd = BPF_CORE_READ(attr, link_update.link_fd);
		break;
	case BPF_PROG_TEST_RUN:
	case BPF_LINK_CREATE:
	case BPF_PROG_ATTACH:
	case BPF_RAW_TRACEPOINT_OPEN:
		// Running a Fortress program (it would count made-up packets in
		// Shield's counters) or attaching it anywhere else. Only holders
		// have Fortress program fds, and their fd tables are private.
		if (cmd == BPF_PROG_TEST_RUN)
			fd = BPF_CORE_READ(attr, test.prog_fd);
		else if (cmd == BPF_LINK_CREATE)
			fd = BPF_CORE_READ(attr, link_create.prog_fd);
		else if (cmd == BPF_PROG_ATTACH)
			fd = BPF_CORE_READ(attr, attach_bpf_fd);
		else
			fd = BPF_CORE_READ(attr, raw_tracepoint.prog_fd);
		id = fortress_prog_fd(fd);
		if (!id || (current_roles() & SENTINEL_ROLE_AGENT))
			return 0;
		return deny_obj(SENTINEL_OP_PROG_USE, id);
	case BPF_LINK_GET_FD_BY_ID:
		// A guarded link fd may not appear in a shared fd table.
		id = BPF_CORE_READ(attr, link_id);
		if (!guarded(SENTINEL_GUARD_LINK, id))
			return 0;
		if (current_roles() & SENTINEL_ROLE_AGENT)
			return 0;
		return hold(SENTINEL_OP_LINK_FD, id);
	default:
		return 0;
	}
	f = fd_file(current_fdt(), fd);
	id = bpf_obj_id(f, kind);
	if (!guarded(kind, id) && !holds_guarded(kind))
		return 0;
	if (current_roles() & SENTINEL_ROLE_AGENT)
		return 0;
	return deny_obj(op, id);
}

// A shared writable mapping of a guarded map (Shield's tables are
// BPF_F_MMAPABLE) would write it without any bpf(2) command. Read-only
// mappings stay allowed, and the kernel never lets mprotect make them
// writable.
SEC("lsm/mmap_file")
int BPF_PROG(mmap_file, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags, int ret)
{
	__u32 id;

	if (ret)
		return ret;
	if (!file || !(prot & PROT_WRITE) || !(flags & MAP_SHARED))
		return 0;
	id = bpf_obj_id(file, SENTINEL_GUARD_MAP);
	if (!guarded(SENTINEL_GUARD_MAP, id))
		return 0;
	if (current_roles() & SENTINEL_ROLE_AGENT)
		return 0;
	return deny_obj(SENTINEL_OP_MAP_MMAP, id);
}

// A program may write any map it references, whatever the mode of the fd
// it was referenced through; an extension (freplace) or tracing program
// aimed at a Fortress program could replace or observe it. Such programs
// are refused to everyone but the agent when they are loaded: the fd is
// created at the end of BPF_PROG_LOAD, after verification filled used_maps
// and dst_prog. A Fortress program is one that uses a guarded map. Fds of
// existing Fortress programs (bpftool prog show) go, like map fds, only
// into private fd tables whose holders may not clone, so that the checks
// on the commands that take a program fd cannot be raced.
SEC("lsm/bpf_prog")
int BPF_PROG(bpf_prog, struct bpf_prog *prog, int ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u32 *cmd, id;

	if (ret)
		return ret;
	cmd = bpf_map_lookup_elem(&sentinel_bpf_cmd, &tid);
	id = guarded_map_of(prog);
	if (!id)
		id = guarded_map_of(BPF_CORE_READ(prog, aux, dst_prog));
	if (!id)
		return 0;
	if (current_roles() & SENTINEL_ROLE_AGENT)
		return 0;
	if (cmd && (*cmd == BPF_PROG_GET_FD_BY_ID || *cmd == BPF_OBJ_GET))
		return hold(SENTINEL_OP_PROG_FD, id);
	return deny_obj(SENTINEL_OP_PROG_LOAD, id);
}

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
