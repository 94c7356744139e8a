package testutil

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ObjGet is a raw BPF_OBJ_GET with read-write access. Libraries look fds up
// in /proc/self/fd, which shows the main thread's table; after
// unshare(CLONE_FILES) on a locked thread only a raw call is right.
func ObjGet(pin string) (int, error) {
	path, err := unix.BytePtrFromString(pin)
	if err != nil {
		return -1, err
	}
	attr := struct {
		pathname  uint64
		bpfFD     uint32
		fileFlags uint32
	}{pathname: uint64(uintptr(unsafe.Pointer(path)))}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_OBJ_GET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(path)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// Fork makes a child process from the calling thread with a raw clone; the
// child exits at once and is reaped. It returns the clone's error.
func Fork() error {
	pid, _, errno := unix.RawSyscall6(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
	if errno != 0 {
		return errno
	}
	if pid == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws unix.WaitStatus
	_, err := unix.Wait4(int(pid), &ws, 0, nil)
	return err
}
