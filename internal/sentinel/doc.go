// Package sentinel is Fortress's host-protection layer: BPF LSM programs
// that refuse every mutation of protected inodes (the agent binary, the
// config and state directories, Fortress's own pins) to every process whose
// executable is not an allowed identity, guard Fortress's BPF maps and
// links, and report file-integrity events through a ring buffer.
//
// # Model
//
// Objects are matched by (s_dev, i_ino) as the kernel sees them, never by
// path, so hard links, renames and /proc/self/fd reopens reach the same
// decision. A directory flagged "children" protects every entry in it,
// including entries the agent creates later. Directories above a protected
// object cannot be renamed or mounted over. The block device a protected
// file's filesystem lives on (key (dev, 0), flag "blockdev") cannot be
// opened for writing by anyone, matched by i_rdev so that any node for it
// counts; raw writes would change files under every inode check.
//
// Identity is the executable, authority is earned: a task has a role when
// task->mm->exe_file is an identity for it (inode and generation, where the
// filesystem has one) and its thread group earned that role with that very
// executable (sentinel_grants, keyed by the group leader's task_struct and
// dropped in task_free). A role is earned in bprm_committing_creds, at an
// exec of the role binary that nothing outside controls: the kernel's own
// bprm->unsafe says neither traced (LSM_UNSAFE_PTRACE, a tracer from
// PTRACE_TRACEME or one attached before the exec) nor sharing its fs_struct
// (LSM_UNSAFE_SHARE), task->seccomp.mode says no filter (any filter can
// hand system calls to another process or fake their results), and the
// root directory is the system's. Any other exec drops the grant. The
// loading agent, whose exec Sentinel never saw, claims its role through
// prctl(SENTINEL_PRCTL_CLAIM) under the same conditions, once, with the
// tgid and start time the loader wrote into sentinel_claims (a guarded
// map, so only a role holder or the loader of a fresh Sentinel can open a
// claim). A role is lost when exe_file changes (the grant names the
// executable), when a tracer appears (checked at every use), and at the
// next exec; task_prctl refuses PR_SET_MM exe_file switches to or from a
// role binary and ptrace_traceme refuses a role process that asks to be
// traced, so both are reported (role_refused, prctl_exe, traceme events).
//
// The updater identity may move a new binary over the agent binary from
// the protected staging directory; the kernel then makes the new inode an
// agent identity in the same hook, so an upgrade never locks the agent out.
// The old identity lives until the next Start prunes it. A role counts
// only for a task whose root directory (task->fs->root) is the agent's
// root, flagged in the policy (or a recorded overlay stack, below): the real binaries bind-mounted into a fake
// root next to a fake /etc/serviceradar and trust key, and run under
// chroot or pivot_root, carry no authority.
//
// Inputs the agent trusts because of where they live are read through
// ReadInput, which refuses a file descriptor that is not an inode Sentinel
// protects.
//
// # Fortress's BPF state
//
// Debian's bpftool 7.1 asks for a read-write descriptor even for "map dump",
// so write descriptors are not refused outright. Instead the mutating
// bpf(2) commands (update, delete, lookup-and-delete, freeze, batches, link
// detach and update) are refused for guarded maps and links: the hook
// resolves the command's fd in the caller's table. Another thread could swap
// that fd between the hook and the command, so a non-agent may get a write
// descriptor to a guarded map, any descriptor of a Fortress program (one
// that uses a guarded map), or any descriptor of a guarded link (by id, or
// by pin: an fentry program on bpf_link_new_fd marks the task and
// file_alloc_security refuses the fd's file), only into an unshared fd
// table; the task is then recorded as a holder and may not clone
// (task_alloc), so its table never becomes shared and no child inherits a
// copy. Holders are keyed by task and forgotten in task_free; they may not
// send route netlink messages either (netlink_send), since a Fortress
// program fd could be attached to an interface (IFLA_XDP_FD) or as a tc
// classifier there, out of the bpf hooks' sight. Fortress fds passed over
// unix sockets or taken with pidfd_getfd are refused at receipt. Pins are inodes in a
// protected directory: no unlink, rename or new pin; the bpffs cannot be
// unmounted. LSM links have no detach operation (EOPNOTSUPP) at all.
//
// Two ways around the bpf(2) commands are closed too. A shared writable
// mmap of a guarded map (Shield's tables are BPF_F_MMAPABLE) is refused in
// mmap_file; read-only mappings stay allowed. A program that references a
// guarded map may write it whatever the fd's mode, and an extension
// (freplace) of a Fortress program could replace it, so the bpf_prog hook
// refuses a non-agent's BPF_PROG_LOAD whose verified program uses a guarded
// map or targets a program that does (the bpf hook records, per thread,
// which command is creating a program fd, so that fds of existing programs,
// as bpftool prog show asks for, stay allowed).
//
// # Limits
//
// Running a Fortress program (BPF_PROG_TEST_RUN) or attaching it elsewhere
// (BPF_LINK_CREATE, BPF_PROG_ATTACH, BPF_RAW_TRACEPOINT_OPEN, or netlink)
// is refused.
//
// A single-threaded process that holds a Fortress fd (bpftool during a
// dump) cannot fork, start threads or send route netlink messages until it
// exits.
//
// Running the agent binary cleanly by hand, in the real root, yields the
// agent identity: the binary must be static and act only on signed input or
// input from protected paths. What happens before Sentinel's first load is
// out of reach.
// Ptrace of the agent (and /proc/PID/mem, process_vm_writev, pidfd_getfd) is
// refused. The lockdown hook (locked_down) refuses, to everyone but the
// agent, the kernel's own list of ways to write kernel memory or another
// process's: modules without a valid signature, /dev/mem and /dev/port, MSR
// writes, I/O ports, kexec_load, kernel debugger writes and
// bpf_probe_write_user (the verifier asks before it lets a program call
// it). A signed module that root can misuse is outside what an LSM can
// contain, as are the whole disk under a partition, LVM physical volumes and RAID
// members, and SCSI/NVMe pass-through ioctls (which root may send on a
// read-only fd): only the filesystem's own block device is closed to raw
// writes. Device
// numbers are the superblock's: on btrfs subvolumes the st_dev that stat
// reports can differ from i_sb->s_dev, so protect paths on other
// filesystems there. Events carry the basename from the kernel; full paths
// are rebuilt in user space from the inodes Sentinel resolved.
//
// Overlayfs (overlay.go). A protected path on overlayfs is protected in
// every layer under it as well: the same file or tree, the directories on
// the way (no rename, setattr or xattr: an opaque or redirect xattr would
// change the view), the deepest of them against new entries (a shadowing
// file or whiteout in a higher layer), and the upper and work directories.
// The layers are read from the mount's options in mountinfo and must be
// visible at those paths. An overlay inode's (dev, ino) is no lasting name
// (the anonymous dev is reused by the next mount, the ino is a layer
// file's), so an overlay is known by its layer stack (struct
// sentinel_stack): the agent records the stack of its own root (a
// container's) and of the overlays its binaries are on, and the kernel
// counts a task's root as the agent's if it is the root of an overlay of
// that very stack, and knows a binary there by its layer file
// (SENTINEL_IDENTITY_LAYER identities, which do not count for the layer
// file run by its own path). A restarted container is the same stack; any
// other stack gets nothing.
package sentinel
