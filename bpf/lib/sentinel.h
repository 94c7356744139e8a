/* SPDX-License-Identifier: GPL-2.0 */
/* Structures and constants shared by the Sentinel BPF programs and the Go
 * control plane (internal/sentinel, generated with bpf2go -type). Defined
 * once, here. */
#ifndef FORTRESS_SENTINEL_H
#define FORTRESS_SENTINEL_H

/* An inode as the kernel sees it: inode->i_sb->s_dev (kernel dev_t,
 * major << 20 | minor) and inode->i_ino. ino 0 with a dev names a whole
 * superblock (umount guard) or the block device it lives on. */
struct sentinel_inode {
	__u64 ino;
	__u32 dev;
	__u32 pad;
};

/* What the policy says about one inode. */
enum sentinel_object_flag {
	SENTINEL_OBJ_PROTECTED = 1 << 0,    /* no mutation of the inode itself */
	SENTINEL_OBJ_CHILDREN = 1 << 1,     /* directory: no create/unlink/rename inside */
	SENTINEL_OBJ_ANCESTOR = 1 << 2,     /* directory above a protected object: no rename, rmdir or mount over */
	SENTINEL_OBJ_AGENT_BINARY = 1 << 3, /* the agent executable: the updater may replace it */
	SENTINEL_OBJ_SUPERBLOCK = 1 << 4,   /* key (dev, 0): no umount */
	SENTINEL_OBJ_ROOT = 1 << 5,         /* the root directory: a role counts only for tasks rooted here */
	SENTINEL_OBJ_BLOCKDEV = 1 << 6,     /* key (dev, 0): the block device under a protected file; no write open */
	SENTINEL_WATCH_SELF = 1 << 8,       /* file integrity events for the inode */
	SENTINEL_WATCH_CHILDREN = 1 << 9,   /* file integrity events for entries of the directory */
	SENTINEL_OBJ_INHERIT = 1 << 10,     /* directory: what a role it allows creates in it is protected as it is */
	SENTINEL_OBJ_RELEASES = 1 << 11,    /* directory of release versions (struct sentinel_release) */
};

/* sentinel_listed has 1 << SENTINEL_LISTED_BITS byte slots. An inode whose
 * number hashes (sentinel_listed_slot) to a zero slot is not in
 * sentinel_objects; a set slot only says it may be. */
#define SENTINEL_LISTED_BITS 14

struct sentinel_object {
	__u32 flags; /* enum sentinel_object_flag */
	__u32 allow; /* roles (enum sentinel_role) allowed to mutate */
};

enum sentinel_role {
	SENTINEL_ROLE_AGENT = 1 << 0,
	SENTINEL_ROLE_UPDATER = 1 << 1,
};

/* An executable that carries a role. gen_valid: gen (inode->i_generation)
 * must match too, which defeats inode-number reuse where the filesystem
 * reports generations. */
struct sentinel_identity {
	__u32 roles;
	__u32 gen;
	__u32 gen_valid;
	__u32 flags; /* enum sentinel_identity_flag */
};

enum sentinel_identity_flag {
	/* A binary's file in an overlayfs layer: it identifies the overlay
	 * inode of a recorded stack (a container's agent, mounted anew), not
	 * a process that runs the layer file by its own path. */
	SENTINEL_IDENTITY_LAYER = 1 << 0,
};

enum sentinel_guard_kind {
	SENTINEL_GUARD_MAP = 1,
	SENTINEL_GUARD_LINK = 2,
};

/* A Fortress BPF object (map or link) by kernel id. */
struct sentinel_guard {
	__u32 kind; /* enum sentinel_guard_kind */
	__u32 id;
};

enum sentinel_mode {
	SENTINEL_MODE_ENFORCE = 0,
	SENTINEL_MODE_AUDIT = 1,
};

struct sentinel_settings {
	__u32 mode;          /* enum sentinel_mode */
	__u32 pad;
	__u64 audit_until_ns; /* audit ends at this CLOCK_BOOTTIME; 0: no end */
};

enum sentinel_op {
	SENTINEL_OP_OPEN = 1,
	SENTINEL_OP_OPEN_WRITE = 2,
	SENTINEL_OP_SETATTR = 3, /* chmod, chown, utimes, truncate */
	SENTINEL_OP_UNLINK = 4,
	SENTINEL_OP_RMDIR = 5,
	SENTINEL_OP_RENAME_FROM = 6,
	SENTINEL_OP_RENAME_TO = 7,
	SENTINEL_OP_LINK = 8,
	SENTINEL_OP_CREATE = 9,
	SENTINEL_OP_SYMLINK = 10,
	SENTINEL_OP_MKDIR = 11,
	SENTINEL_OP_MKNOD = 12,
	SENTINEL_OP_SETXATTR = 13,
	SENTINEL_OP_REMOVEXATTR = 14,
	SENTINEL_OP_SET_ACL = 15,
	SENTINEL_OP_IOCTL_SETFLAGS = 16,
	SENTINEL_OP_MOUNT = 17,
	SENTINEL_OP_UMOUNT = 18,
	SENTINEL_OP_MAP_WRITE = 19,
	SENTINEL_OP_LINK_MODIFY = 20,
	SENTINEL_OP_PTRACE = 21,
	SENTINEL_OP_IDENTITY_LEARNED = 22,
	SENTINEL_OP_TRUNCATE = 23,
	SENTINEL_OP_MAP_MMAP = 24,  /* writable shared mapping of a guarded map */
	SENTINEL_OP_PROG_LOAD = 25, /* a program using a guarded map, or aimed at a Fortress program */
	SENTINEL_OP_CLONE = 26,     /* a thread or process from a task holding a guarded fd */
	SENTINEL_OP_LINK_FD = 27,   /* a guarded link fd into a shared fd table */
	SENTINEL_OP_PROG_FD = 28,   /* a Fortress program fd into a shared fd table */
	SENTINEL_OP_PROG_USE = 29,  /* running or attaching a Fortress program */
	SENTINEL_OP_NETLINK = 30,   /* a route netlink message from a task holding a Fortress fd */
	SENTINEL_OP_LOCKDOWN = 31,  /* a kernel lockdown reason (arg: enum lockdown_reason of the running kernel) */
	SENTINEL_OP_ROLE_REFUSED = 32, /* a role binary ran without earning its role (arg: enum sentinel_refusal bits) */
	SENTINEL_OP_PRCTL_EXE = 33,    /* prctl(PR_SET_MM) changing exe_file to or from a role binary (arg: PR_SET_MM_*) */
	SENTINEL_OP_TRACEME = 34,      /* a role process asked to be traced (PTRACE_TRACEME) */
};

/* Why a process running a role binary did not get the role: the bits of a
 * role_refused event's arg. A role is earned only at an exec (or, for the
 * loading agent, a claim) that nothing outside the process controls. */
enum sentinel_refusal {
	SENTINEL_REFUSE_TRACED = 1 << 0,       /* a tracer was attached at the exec */
	SENTINEL_REFUSE_SECCOMP = 1 << 1,      /* a seccomp filter (or strict mode) was in place at the exec */
	SENTINEL_REFUSE_SHARED_FS = 1 << 2,    /* the fs_struct (root, cwd) is shared with another process */
	SENTINEL_REFUSE_FOREIGN_ROOT = 1 << 3, /* exec under chroot or pivot_root */
	SENTINEL_REFUSE_NO_ROOM = 1 << 4,      /* sentinel_grants is full */
	SENTINEL_REFUSE_CLAIM = 1 << 5,        /* a claim by a process that is not the loader */
};

/* A role earned by a thread group: keyed by its group leader's task_struct
 * address in sentinel_grants, dropped in task_free. exe is the binary it
 * was earned with; the role holds only while mm->exe_file is still that
 * inode. */
struct sentinel_grant {
	struct sentinel_inode exe;
	__u32 roles; /* enum sentinel_role */
	__u32 pad;
};

/* The loading agent's claim of its role. Sentinel cannot have seen the
 * exec of the process that loads it, so the loader writes its tgid and the
 * start time of its thread group (clock ticks since boot, as in
 * /proc/PID/stat) here and calls prctl(SENTINEL_PRCTL_CLAIM); the kernel
 * grants the role if the caller is that process, runs a role binary and is
 * not controlled from outside. It then clears tgid and sets claimed to the
 * tgid, or refused to the enum sentinel_refusal bits. */
struct sentinel_claim {
	__u32 tgid;
	__u32 claimed;
	__u64 start_ticks;
	__u32 refused;
	__u32 pad;
};

enum sentinel_prctl {
	SENTINEL_PRCTL_CLAIM = 0x46525453, /* "FRTS"; the kernel itself then answers EINVAL */
};

/* Counters of the identity hooks (sentinel_role_stats). */
enum sentinel_role_stat {
	SENTINEL_ROLE_STAT_REFUSED = 0, /* role_refused, prctl_exe and traceme events */
	SENTINEL_ROLE_STAT_GRANTED = 1, /* roles granted at an exec or a claim */
	SENTINEL_ROLE_STAT_MAX = 2,
};

/* The layers of an overlayfs superblock, upper first (an overlay without
 * an upper layer has a zero entry there), each by its root directory.
 * The inode numbers of an overlayfs are those of its layers' files, and
 * its device number is an anonymous one that the next mount may reuse:
 * so an overlay is known by its layers. The control plane records in
 * sentinel_stacks the stack that is the agent's root (a container's) and
 * the stacks that hold a role binary; a new mount of the same layers (a
 * restarted container) is the same, any other stack is not. */
#define SENTINEL_STACK_MAX 31 /* the key stays within 512 bytes, 5.10's limit for a hash key */

struct sentinel_stack {
	__u32 layers; /* entries used in layer[] */
	__u32 pad;
	struct sentinel_inode layer[SENTINEL_STACK_MAX];
};

/* What sentinel_stacks records about a trusted stack. */
struct sentinel_stack_trust {
	__u32 backing_dev; /* the one filesystem every layer is on (kernel dev_t); 0 if they are on several */
	__u32 flags;       /* enum sentinel_stack_flag */
};

enum sentinel_stack_flag {
	SENTINEL_STACK_ROOT = 1 << 0,     /* its root directory is the agent's root */
	SENTINEL_STACK_BINARIES = 1 << 1, /* a role binary on it is known by its layer file */
};

enum sentinel_verdict {
	SENTINEL_ALLOWED = 0,
	SENTINEL_DENIED = 1,
	SENTINEL_AUDITED = 2, /* would be denied; audit mode let it pass */
};

enum sentinel_stat {
	SENTINEL_STAT_LOST = 0,    /* events that found no room in the ring buffer */
	SENTINEL_STAT_DENIED = 1,
	SENTINEL_STAT_AUDITED = 2,
	SENTINEL_STAT_EVENTS = 3,
	SENTINEL_STAT_MAX = 4,
};

#define SENTINEL_NAME_LEN 64
#define SENTINEL_COMM_LEN 16

/* A versioned release layout (ServiceRadar's): a releases directory
 * (SENTINEL_OBJ_RELEASES) holds one directory per version, each with the
 * agent binary under the name below, and a symlink names the version in
 * use. The whole tree is the updater's (SENTINEL_OBJ_INHERIT): what it
 * creates there is protected at once, so the kernel can trust a version's
 * binary the first time it runs. binary[0] == 0: no release layout. */
struct sentinel_release {
	char binary[SENTINEL_NAME_LEN];
};

struct sentinel_event {
	__u64 time_ns; /* CLOCK_BOOTTIME */
	__u32 pid;
	__u32 tgid;
	__u32 uid;
	__u32 op;      /* enum sentinel_op */
	__u32 verdict; /* enum sentinel_verdict */
	__u32 flags;   /* object flags that matched */
	struct sentinel_inode object;
	struct sentinel_inode parent;
	struct sentinel_inode exe;
	__u64 arg; /* map or link id, ioctl cmd, ptrace mode, setattr mask */
	char comm[SENTINEL_COMM_LEN];
	char exe_name[SENTINEL_NAME_LEN];
	char name[SENTINEL_NAME_LEN]; /* last path component of the object */
};

#endif
