package sentinel

// Helper modes for the identity tests: the pieces of the attacks that must
// run inside another process (a seccomp filter before an exec, an exec by
// fd) and the targets those attacks start.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/pins"
	"github.com/carverauto/fortress/internal/testutil"
)

// identityHelper runs the identity helper modes; ok is false for a mode it
// does not know.
func identityHelper(mode string, args []string) (code int, ok bool) {
	switch mode {
	case "readwrite":
		// readwrite READ WRITE: read READ (opened O_RDONLY|O_NOCTTY, the
		// mark a supervisor answers), then open WRITE for writing and
		// write "pwned". Prints "read=CONTENT" and "write=ok|ERROR".
		fd, err := unix.Open(args[0], unix.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			fmt.Printf("read=error %v\n", err)
		} else {
			b := make([]byte, 256)
			n, _ := unix.Read(fd, b)
			unix.Close(fd)
			fmt.Printf("read=%s\n", strings.TrimSpace(string(b[:max(n, 0)])))
		}
		if err := os.WriteFile(args[1], []byte("pwned"), 0o644); err != nil {
			var errno unix.Errno
			errors.As(err, &errno)
			fmt.Printf("write=%v\n", errno)
		} else {
			fmt.Println("write=ok")
		}
		return 0, true
	case "readinput":
		// readinput PINROOT PATH: read PATH as the agent reads its inputs.
		_, checked, err := ReadInput(pins.Root(args[0]), args[1], 1<<20)
		if err != nil {
			fmt.Printf("input=error %v\n", err)
		} else {
			fmt.Printf("input=ok checked=%v\n", checked)
		}
		return 0, true
	case "seccomp-exec":
		// seccomp-exec notify|allow BIN MODE ARGS...: install a seccomp
		// filter on this thread (notify: openat goes to a listener, whose
		// fd is printed as "listener N"; allow: a filter that allows
		// everything), wait for a line on stdin, then exec BIN as helper
		// MODE.
		if err := seccompExec(args); err != nil {
			fmt.Println("err", err)
			return 1, true
		}
		return 0, true
	case "setexe-self":
		// setexe-self: switch this process's exe_file to $SETEXE_TO.
		fd, err := unix.Open(os.Getenv("SETEXE_TO"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			fmt.Println("err", err)
			return 1, true
		}
		var errno unix.Errno
		errors.As(unix.Prctl(unix.PR_SET_MM, unix.PR_SET_MM_EXE_FILE, uintptr(fd), 0, 0), &errno)
		fmt.Println("errno", int(errno))
		return 0, true
	case "wait":
		// wait: block until stdin closes.
		bufio.NewReader(os.Stdin).ReadString(0)
		return 0, true
	case "execfd":
		// execfd BIN MODE ARGS...: exec BIN by file descriptor
		// (execveat with AT_EMPTY_PATH) as helper MODE.
		if err := execByFD(args[0], args[1], args[2:]); err != nil {
			fmt.Println("err", err)
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func seccompExec(args []string) error {
	listener, err := testutil.SeccompFilter(args[0] == "notify")
	if err != nil {
		return err
	}
	if listener >= 0 {
		fmt.Println("listener", listener)
	} else {
		fmt.Println("filtered")
	}
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("wait for go: %w", err)
	}
	return unix.Exec(args[1], append([]string{args[1]}, args[3:]...), helperEnviron(args[2]))
}

// helperEnviron is this process's environment with the helper mode set to
// mode (a second SENTINEL_HELPER would not override the first).
func helperEnviron(mode string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, helperEnv+"=") {
			env = append(env, kv)
		}
	}
	return append(env, helperEnv+"="+mode)
}

func execByFD(bin, mode string, args []string) error {
	fd, err := unix.Open(bin, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	argv, err := syscall.SlicePtrFromStrings(append([]string{bin}, args...))
	if err != nil {
		return err
	}
	envv, err := syscall.SlicePtrFromStrings(helperEnviron(mode))
	if err != nil {
		return err
	}
	empty, _ := unix.BytePtrFromString("")
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])), unix.AT_EMPTY_PATH, 0)
	return fmt.Errorf("execveat: %w", errno)
}

// supervise answers the notifications of listener until the target
// exits: an openat marked O_NOCTTY (every openat if all is set) gets a copy
// of substitute (as a supervisor that hands the agent root's trust key
// would), every other one goes on unchanged. It returns how many it
// substituted.
func supervise(listener int, stop <-chan struct{}, substitute int, all bool) (int, error) {
	return testutil.SeccompSupervise(listener, stop, func(n *testutil.SeccompNotif) int {
		if n.Nr == unix.SYS_OPENAT && (all || n.Args[2]&unix.O_NOCTTY != 0) {
			return substitute
		}
		return -1
	})
}

// parseListener reads "listener N" from a helper's first line.
func parseListener(line string) (int, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "listener ")
	if !ok {
		return 0, fmt.Errorf("helper said %q, want \"listener N\"", line)
	}
	return strconv.Atoi(rest)
}
