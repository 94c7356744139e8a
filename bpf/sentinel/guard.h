/* SPDX-License-Identifier: GPL-2.0 */
/* The BPF-object guard: Fortress's maps, links and programs. Part of sentinel.c, included there in order. */
#ifndef FORTRESS_SENTINEL_GUARD_H
#define FORTRESS_SENTINEL_GUARD_H

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

#endif
