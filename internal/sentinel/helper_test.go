package sentinel

// Helper processes for the lab tests. The test binary is copied to other
// paths (other inodes) and re-executed with SENTINEL_HELPER set: as the
// agent (it loads Sentinel and takes commands on stdin), as the update
// manager, or as the new agent binary after an upgrade. The test process
// itself is an ordinary root process: the attacker.

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/pins"
	"github.com/carverauto/fortress/internal/testutil"
)

const helperEnv = "SENTINEL_HELPER"

// helperConfig is handed to an agent helper in SENTINEL_CONFIG.
type helperConfig struct {
	Config
	TrustKey ed25519.PublicKey
	Host     string
}

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func runHelper(mode string, args []string) int {
	switch mode {
	case "agent":
		return helperAgent()
	case "update":
		// update SRC STAGING DEST: the update manager's upgrade.
		if err := helperUpdate(args[0], args[1], args[2]); err != nil {
			fmt.Println("err", err)
			return 1
		}
		return 0
	case "write":
		// write PATH CONTENT: a process of whatever identity this copy has.
		if err := os.WriteFile(args[0], []byte(args[1]), 0o644); err != nil {
			fmt.Println("err", err)
			return 1
		}
		return 0
	case "container":
		// container: the runtime of container_lab_test.go (CONTAINER_SPEC).
		if err := runContainer(); err != nil {
			fmt.Println("err", err)
			return 1
		}
		return 0
	case "true":
		return 0
	case "holdfork":
		// holdfork PIN: fork, open PIN read-write from a private fd
		// table, fork again; prints "fork ERRNO" of the second fork.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FILES); err != nil {
			fmt.Println("err unshare", err)
			return 1
		}
		if err := testutil.Fork(); err != nil {
			fmt.Println("err control fork", err)
			return 1
		}
		fd, err := testutil.ObjGet(args[0])
		if err != nil {
			fmt.Println("err open", err)
			return 1
		}
		var errno unix.Errno
		errors.As(testutil.Fork(), &errno)
		unix.Close(fd)
		fmt.Println("fork", int(errno))
		return 0
	}
	if code, ok := releaseHelper(mode, args); ok {
		return code
	}
	if code, ok := identityHelper(mode, args); ok {
		return code
	}
	fmt.Println("unknown helper", mode)
	return 2
}

// helperUpdate is the update manager's install step.
func helperUpdate(src, staging, dest string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return InstallAgent(b, staging, dest)
}

type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
}

func helperAgent() int {
	out := &lineWriter{w: os.Stdout}
	var hc helperConfig
	if err := json.Unmarshal([]byte(os.Getenv("SENTINEL_CONFIG")), &hc); err != nil {
		out.printf("fail config: %v", err)
		return 1
	}
	hc.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	s, err := Start(hc.Config)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			out.printf("unavailable %v", err)
		} else {
			out.printf("fail %v", err)
		}
		return 1
	}
	st, _ := json.Marshal(s.Status())
	out.printf("ready %s", st)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.ReadEvents(ctx, func(e Event) {
		b, _ := json.Marshal(e)
		out.printf("event %s", b)
	})
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		res, err := helperCommand(s, &hc, f)
		if err != nil {
			out.printf("err %v", err)
			continue
		}
		out.printf("ok %s", res)
		if f[0] == "exit" || f[0] == "remove" {
			return 0
		}
	}
	return 0
}

func helperCommand(s *Sentinel, hc *helperConfig, f []string) (string, error) {
	switch f[0] {
	case "write": // write PATH CONTENT
		return "", os.WriteFile(f[1], []byte(f[2]), 0o644)
	case "rename": // rename OLD NEW
		return "", os.Rename(f[1], f[2])
	case "unlink":
		return "", os.Remove(f[1])
	case "protect":
		return "", s.Protect(f[1], RoleAgent)
	case "mode": // mode enforce | mode audit SECONDS
		if f[1] == "enforce" {
			return "", s.SetEnforce()
		}
		secs, _ := strconv.Atoi(f[2])
		return "", s.setMode(Audit, time.Now().Add(time.Duration(secs)*time.Second))
	case "maint": // maint TOKEN
		t, err := s.ApplyMaintenance(f[1], hc.TrustKey, hc.Host, time.Now())
		return t.Action, err
	case "status":
		b, err := json.Marshal(s.Status())
		return string(b), err
	case "newmap": // newmap NAME: a Fortress map pinned under the shield layer
		m, err := ebpf.NewMap(&ebpf.MapSpec{Name: f[1], Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 16})
		if err != nil {
			return "", err
		}
		if err := m.Put(uint32(1), uint32(100)); err != nil {
			return "", err
		}
		if err := m.Pin(hc.PinRoot.Path(pins.Shield, f[1])); err != nil {
			return "", err
		}
		if err := s.GuardMap(m); err != nil {
			return "", err
		}
		info, _ := m.Info()
		id, _ := info.ID()
		return strconv.Itoa(int(id)), nil
	case "linkids":
		var ids []string
		for _, name := range s.Programs() {
			info, err := s.k.links[name].Info()
			if err != nil {
				return "", err
			}
			ids = append(ids, fmt.Sprintf("%s=%d/%d", name, info.ID, info.Program))
		}
		return strings.Join(ids, ","), nil
	case "tamper":
		// Swap the pinned file_open program for one that allows
		// everything, as an intruder with the agent's powers would.
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type: ebpf.LSM, AttachType: ebpf.AttachLSMMac, AttachTo: "file_open", License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		})
		if err != nil {
			return "", err
		}
		defer prog.Close()
		l, err := link.AttachLSM(link.LSMOptions{Program: prog})
		if err != nil {
			return "", err
		}
		defer l.Close()
		linkPin := hc.PinRoot.Path(pins.Sentinel, "link_file_open")
		if err := os.Remove(linkPin); err != nil {
			return "", err
		}
		if err := os.Remove(hc.PinRoot.Path(pins.Sentinel, "prog_file_open")); err != nil {
			return "", err
		}
		return "", l.Pin(linkPin)
	case "traceme": // traceme: make the parent this thread's tracer
		_, _, errno := unix.Syscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
		if errno != 0 {
			return "", errno
		}
		return "", nil
	case "prctl-exe": // prctl-exe PATH: switch this process's exe_file to PATH
		fd, err := unix.Open(f[1], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		defer unix.Close(fd)
		return "", unix.Prctl(unix.PR_SET_MM, unix.PR_SET_MM_EXE_FILE, uintptr(fd), 0, 0)
	case "unpin-map": // unpin-map NAME...: as if pinned by a release without these maps
		for _, name := range f[1:] {
			if err := os.Remove(hc.PinRoot.Path(pins.Sentinel, pinName("map", name))); err != nil {
				return "", err
			}
		}
		return "", nil
	case "remove":
		return "", s.Remove()
	case "exit":
		return "", s.Close()
	}
	return "", fmt.Errorf("unknown command %q", f[0])
}
