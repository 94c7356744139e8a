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
//
// One object, split by concern into the headers included at the end, in
// dependency order: maps.h (maps and the types bpf2go generates), inode.h,
// overlay.h, identity.h (roles of an executable and of a task), check.h
// (the decision every file hook makes), files.h (file hooks, the release
// tree), guard.h (Fortress's own BPF objects), lockdown.h (lockdown and
// ptrace), roles.h (earning and losing a role).
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

#include "maps.h"
#include "inode.h"
#include "overlay.h"
#include "identity.h"
#include "check.h"
#include "files.h"
#include "guard.h"
#include "lockdown.h"
#include "roles.h"
