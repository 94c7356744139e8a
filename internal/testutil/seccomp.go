//go:build linux

package testutil

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The attack tests start a binary under a seccomp filter installed before
// its exec, as a root attacker would, and act as the filter's supervisor.

// SeccompFilter installs a seccomp filter on the calling OS thread (which
// it locks) with no_new_privs. With notify, openat goes to a user
// notification listener whose fd it returns; otherwise the filter allows
// everything and it returns -1. The caller then execs from this thread.
func SeccompFilter(notify bool) (int, error) {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return -1, fmt.Errorf("no_new_privs: %w", err)
	}
	const (
		ldAbsW = 0x20 // BPF_LD | BPF_W | BPF_ABS
		jeqK   = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
		retK   = 0x06 // BPF_RET | BPF_K
		allow  = 0x7fff0000
	)
	filter := []unix.SockFilter{{Code: retK, K: allow}}
	var flags uintptr
	if notify {
		filter = []unix.SockFilter{
			{Code: ldAbsW, K: 0}, // seccomp_data.nr
			{Code: jeqK, Jt: 0, Jf: 1, K: unix.SYS_OPENAT},
			{Code: retK, K: unix.SECCOMP_RET_USER_NOTIF},
			{Code: retK, K: allow},
		}
		flags = unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	fd, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return -1, fmt.Errorf("seccomp: %w", errno)
	}
	if !notify {
		return -1, nil
	}
	return int(fd), nil
}

// SeccompNotif is struct seccomp_notif (linux/seccomp.h).
type SeccompNotif struct {
	ID    uint64
	PID   uint32
	Flags uint32
	Nr    int32
	Arch  uint32
	IP    uint64
	Args  [6]uint64
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

type seccompNotifAddfd struct {
	ID         uint64
	Flags      uint32
	SrcFD      uint32
	NewFD      uint32
	NewFDFlags uint32
}

// SeccompSupervise answers the notifications of listener until stop is
// closed or the listener hangs up (the target exited; older kernels never
// say so, hence stop). For each, substitute returns an fd of the
// supervisor's to hand the target as the call's result (a copy is
// installed in the target), or -1 to let the call go on unchanged. It
// returns how many calls it answered with an fd.
func SeccompSupervise(listener int, stop <-chan struct{}, substitute func(*SeccompNotif) int) (int, error) {
	n := 0
	for {
		select {
		case <-stop:
			return n, nil
		default:
		}
		pfd := []unix.PollFd{{Fd: int32(listener), Events: unix.POLLIN}}
		ready, err := unix.Poll(pfd, 200)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return n, fmt.Errorf("poll listener: %w", err)
		}
		if ready == 0 || err != nil {
			continue
		}
		if pfd[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 && pfd[0].Revents&unix.POLLIN == 0 {
			return n, nil
		}
		var req SeccompNotif
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(listener), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&req))); errno != 0 {
			if errors.Is(errno, unix.EINTR) || errors.Is(errno, unix.ENOENT) {
				continue
			}
			return n, fmt.Errorf("notif recv: %w", errno)
		}
		resp := seccompNotifResp{ID: req.ID, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
		if src := substitute(&req); src >= 0 {
			add := seccompNotifAddfd{ID: req.ID, SrcFD: uint32(src), NewFDFlags: unix.O_CLOEXEC}
			fd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(listener), unix.SECCOMP_IOCTL_NOTIF_ADDFD, uintptr(unsafe.Pointer(&add)))
			if errno != 0 {
				if errors.Is(errno, unix.ENOENT) {
					continue // the target went away
				}
				return n, fmt.Errorf("notif addfd: %w", errno)
			}
			resp = seccompNotifResp{ID: req.ID, Val: int64(fd)}
			n++
		}
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(listener), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp))); errno != 0 && !errors.Is(errno, unix.ENOENT) {
			return n, fmt.Errorf("notif send: %w", errno)
		}
	}
}

// TakeFD copies fd number fd of process pid into this process
// (pidfd_getfd).
func TakeFD(pid, fd int) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	got, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_getfd: %w", err)
	}
	return got, nil
}

// TraceeString reads a NUL-terminated string at addr in process pid's
// memory (/proc/PID/mem: the kernel asks ptrace_access_check first).
func TraceeString(pid int, addr uint64) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, 512)
	n, err := f.ReadAt(b, int64(addr))
	if n == 0 {
		return "", fmt.Errorf("read string at %#x: %w", addr, err)
	}
	s, _, _ := strings.Cut(string(b[:n]), "\x00")
	return s, nil
}
