//go:build amd64 || arm64

package sentinel

// Lab tests of the identity model: root tries to become the agent or the
// updater by running the role binary under its own control. Each vector is
// first shown to work against an ordinary binary and an unprotected file
// (the control), then tried on the role binary: refused, the target
// byte-for-byte unchanged, and a role_refused (or prctl_exe) event naming
// the vector.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/testutil"
)

// injectSyscall makes the stopped tracee pid run one system call at its
// current instruction: it writes the architecture's system call
// instruction there, sets the number and arguments (setSyscall),
// single-steps, checks that the tracee stopped just after the instruction,
// and puts text and registers back. It returns the call's result (-errno
// on failure).
//
// The tracee must be in a signal-delivery stop, outside any system call
// (the callers' exec SIGTRAP, or the stop after stepping out of execve):
// at a stop inside a system call, that call's return value would be
// written over the result register on resume.
func injectSyscall(pid int, nr uint64, args ...uint64) (int64, error) {
	var saved unix.PtraceRegs
	if err := unix.PtraceGetRegs(pid, &saved); err != nil {
		return 0, fmt.Errorf("getregs: %w", err)
	}
	at := uintptr(saved.PC())
	orig := make([]byte, 8)
	if _, err := unix.PtracePeekText(pid, at, orig); err != nil {
		return 0, fmt.Errorf("peektext: %w", err)
	}
	code := append(slices.Clone(syscallInsn), orig[len(syscallInsn):]...)
	if _, err := unix.PtracePokeText(pid, at, code); err != nil {
		return 0, fmt.Errorf("poketext: %w", err)
	}
	regs := saved
	setSyscall(&regs, nr, args)
	if err := unix.PtraceSetRegs(pid, &regs); err != nil {
		return 0, fmt.Errorf("setregs: %w", err)
	}
	if err := unix.PtraceSingleStep(pid); err != nil {
		return 0, fmt.Errorf("singlestep: %w", err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		return 0, fmt.Errorf("wait singlestep: %w", err)
	}
	if !ws.Stopped() {
		return 0, fmt.Errorf("tracee did not stop after the syscall: %v", ws)
	}
	var after unix.PtraceRegs
	if err := unix.PtraceGetRegs(pid, &after); err != nil {
		return 0, fmt.Errorf("getregs: %w", err)
	}
	if after.PC() != saved.PC()+uint64(len(syscallInsn)) {
		return 0, fmt.Errorf("tracee stopped at %#x, not after the system call instruction at %#x (%v)", after.PC(), saved.PC(), ws)
	}
	if _, err := unix.PtracePokeText(pid, at, orig); err != nil {
		return 0, fmt.Errorf("restore text: %w", err)
	}
	if err := unix.PtraceSetRegs(pid, &saved); err != nil {
		return 0, fmt.Errorf("restore regs: %w", err)
	}
	return syscallResult(&after), nil
}

// hijackWrite makes the stopped tracee open path (with flags) and write
// "pwned" into it. It returns the error the tracee got, nil if the write
// went through.
func hijackWrite(pid int, path string, flags int) error {
	var regs unix.PtraceRegs
	if err := unix.PtraceGetRegs(pid, &regs); err != nil {
		return fmt.Errorf("getregs: %w", err)
	}
	buf := uintptr(stackPointer(&regs)-16384) &^ 15
	data := buf + 4096
	if _, err := unix.PtracePokeData(pid, buf, append([]byte(path), 0)); err != nil {
		return fmt.Errorf("poke path: %w", err)
	}
	if _, err := unix.PtracePokeData(pid, data, []byte("pwned")); err != nil {
		return fmt.Errorf("poke data: %w", err)
	}
	atFDCWD := ^uint64(99) // -100
	fd, err := injectSyscall(pid, unix.SYS_OPENAT, atFDCWD, uint64(buf), uint64(flags), 0o755)
	if err != nil {
		return fmt.Errorf("inject openat: %w", err)
	}
	if fd < 0 {
		return unix.Errno(-fd)
	}
	n, err := injectSyscall(pid, unix.SYS_WRITE, uint64(fd), uint64(data), 5)
	if err != nil {
		return fmt.Errorf("inject write: %w", err)
	}
	if n < 0 {
		return fmt.Errorf("write: %w", unix.Errno(-n))
	}
	return nil
}

// tracedExec starts bin with PTRACE_TRACEME (exec.Cmd's Ptrace does it in
// the child before the exec) and, at the exec stop, makes it write path.
// extra, if set, is the child's fd 3 (for an exec through /proc/self/fd/3).
func tracedExec(bin string, extra *os.File, path string, flags int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), helperEnv+"=true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if extra != nil {
		cmd.ExtraFiles = []*os.File{extra}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start traced %s: %w", bin, err)
	}
	pid := cmd.Process.Pid
	defer reap(cmd)
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		return fmt.Errorf("wait exec stop: %w", err)
	}
	if !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
		return fmt.Errorf("no exec stop: %v", ws)
	}
	return hijackWrite(pid, path, flags)
}

// seizedExec starts a shell that execs bin once told to, attaches to it
// with PTRACE_SEIZE and PTRACE_O_TRACEEXEC before that, and at the exec
// event makes the new image write path.
func seizedExec(bin, path string, flags int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command("/bin/sh", "-c", `read x; exec "$0"`, bin)
	cmd.Env = append(os.Environ(), helperEnv+"=true")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	defer reap(cmd)
	if _, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(pid), 0, unix.PTRACE_O_TRACEEXEC, 0, 0); errno != 0 {
		return fmt.Errorf("seize: %w", errno)
	}
	if _, err := fmt.Fprintln(stdin, "go"); err != nil {
		return err
	}
	var seen []string
	for {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
			return fmt.Errorf("wait exec event: %w (stops: %v)", err, seen)
		}
		if !ws.Stopped() {
			return fmt.Errorf("tracee ended before its exec: %v (stops: %v)", ws, seen)
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		seen = append(seen, fmt.Sprintf("%v/%d/%s", ws.StopSignal(), ws.TrapCause(), exe))
		if ws.StopSignal() == unix.SIGTRAP && ws.TrapCause() == unix.PTRACE_EVENT_EXEC && exe == bin {
			// The event stop is inside execve, whose return value would
			// overwrite the injected registers: step out to the new
			// image's first instruction first.
			if err := unix.PtraceSingleStep(pid); err != nil {
				return fmt.Errorf("step out of execve: %w", err)
			}
			if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil || !ws.Stopped() {
				return fmt.Errorf("wait step out of execve: %v %v", ws, err)
			}
			return hijackWrite(pid, path, flags)
		}
		if len(seen) > 50 {
			return fmt.Errorf("no exec of %s: stops %v", bin, seen)
		}
		sig := 0
		if ws.StopSignal() != unix.SIGTRAP {
			sig = int(ws.StopSignal())
		}
		if err := unix.PtraceCont(pid, sig); err != nil {
			return fmt.Errorf("cont: %w", err)
		}
	}
}

func reap(cmd *exec.Cmd) {
	cmd.Process.Signal(unix.SIGKILL)
	var ws unix.WaitStatus
	unix.Wait4(cmd.Process.Pid, &ws, unix.WALL, nil)
	cmd.Wait()
}

// roleRefused waits for a role_refused event since mark whose detail
// names want.
func (l *lab) roleRefused(mark int, op, want string) {
	l.t.Helper()
	e, ok := l.waitEvent(mark, func(e Event) bool {
		return e.Op == op && e.Verdict == VerdictDenied && strings.Contains(e.Detail, want)
	})
	if !ok {
		var seen []string
		for _, e := range l.eventsSince(mark) {
			seen = append(seen, e.Op+"/"+e.Verdict+"/"+e.Detail)
		}
		l.t.Errorf("no denied %s event naming %q; events since: %v", op, want, seen)
		return
	}
	l.t.Logf("event: %s %s (exe %s, pid %d)", e.Op, e.Detail, e.Exe, e.PID)
}

// ordinary returns a copy of the test binary that is no identity, and an
// unprotected file holding "original".
func (l *lab) ordinary(name string) (bin, target string) {
	bin = filepath.Join(l.free, name)
	must(l.t, copyFile(l.agentBin, bin))
	target = filepath.Join(l.free, name+".target")
	must(l.t, os.WriteFile(target, []byte("original"), 0o644))
	return bin, target
}

func wantContent(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || !strings.HasPrefix(string(b), want) {
		t.Errorf("control: %s holds %q (%v), want it to start with %q: the technique did not work", path, b, err, want)
	}
}

func TestLabRoleTracedExec(t *testing.T) {
	l := newLab(t)
	sweep := filepath.Join(l.configDir, "sweep.json")
	bin, target := l.ordinary("ordinary")

	// PTRACE_TRACEME, then exec.
	if err := tracedExec(bin, nil, target, unix.O_WRONLY); err != nil {
		t.Fatalf("control: traced exec of an ordinary binary: %v", err)
	}
	wantContent(t, target, "pwned")
	mark := l.eventCount()
	l.refuse(attack{name: "traced exec (PTRACE_TRACEME) of the agent binary", run: func() error {
		return tracedExec(l.agentBin, nil, sweep, unix.O_WRONLY)
	}, errno: unix.EPERM})
	l.roleRefused(mark, OpRoleRefused, "traced exec")

	// PTRACE_SEIZE with PTRACE_O_TRACEEXEC on an ordinary process that
	// then execs the role binary.
	must(t, os.WriteFile(target, []byte("original"), 0o644))
	if err := seizedExec(bin, target, unix.O_WRONLY); err != nil {
		t.Fatalf("control: seized exec of an ordinary binary: %v", err)
	}
	wantContent(t, target, "pwned")
	mark = l.eventCount()
	l.refuse(attack{name: "exec of the agent binary under PTRACE_SEIZE + TRACEEXEC", run: func() error {
		return seizedExec(l.agentBin, sweep, unix.O_WRONLY)
	}, errno: unix.EPERM})
	l.roleRefused(mark, OpRoleRefused, "traced exec")

	// By fd, through /proc/self/fd: the same rules as by path.
	f, err := os.Open(l.agentBin)
	must(t, err)
	defer f.Close()
	mark = l.eventCount()
	l.refuse(attack{name: "traced exec of the agent binary through /proc/self/fd", run: func() error {
		return tracedExec("/proc/self/fd/3", f, sweep, unix.O_WRONLY)
	}, errno: unix.EPERM})
	l.roleRefused(mark, OpRoleRefused, "traced exec")

	// The updater's role: it may create files in the staging directory
	// and replace the agent binary.
	mark = l.eventCount()
	l.refuse(
		attack{name: "traced exec of the updater: create in staging", run: func() error {
			return tracedExec(l.updaterBin, nil, filepath.Join(l.staging, "evil"), unix.O_WRONLY|unix.O_CREAT)
		}, errno: unix.EPERM},
		attack{name: "seized exec of the updater: create in staging", run: func() error {
			return seizedExec(l.updaterBin, filepath.Join(l.staging, "evil2"), unix.O_WRONLY|unix.O_CREAT)
		}, errno: unix.EPERM},
	)
	l.roleRefused(mark, OpRoleRefused, "traced exec")

	// The agent itself may not ask to be traced (an ordinary process may:
	// the controls above did).
	mark = l.eventCount()
	if _, err := l.do("traceme"); err == nil || !strings.Contains(err.Error(), "not permitted") {
		t.Errorf("the agent made its parent its tracer: %v", err)
	}
	l.roleRefused(mark, OpTraceme, "traceme")

	// Nobody but the loader opens a claim: the claims map is guarded, and
	// a claim nobody opened grants nothing.
	claims := l.pinRoot.Path("sentinel", "map_"+mapClaims)
	l.refuse(attack{name: "open the claims map for writing", run: func() error {
		m, err := ebpf.LoadPinnedMap(claims, nil)
		if err == nil {
			m.Close()
		}
		return err
	}, errno: unix.EPERM})
	unix.Prctl(int(sentinelSentinelPrctlSENTINEL_PRCTL_CLAIM), 0, 0, 0, 0)
	if err := openWrite(sweep, unix.O_WRONLY); !errors.Is(err, unix.EPERM) {
		t.Errorf("after an unopened claim root wrote the config: %v", err)
	}

	// The real agent is unaffected, and the refusals are counted.
	st, err := l.mustDoStatus()
	must(t, err)
	if st.Roles.Refused < 5 {
		t.Errorf("role refusals counted: %d, want at least 5", st.Roles.Refused)
	}
	l.mustDo("write " + sweep + ` {"networks":["192.0.2.0/24"]}`)
}

// runSetexe runs the exe-swap program ([-m] EXE TARGET [SECONDS [create]])
// and parses its report.
func runSetexe(t *testing.T, prog string, args ...string) map[string]int {
	t.Helper()
	out, err := exec.Command(prog, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("setexe %v: %v: %s", args, err, out)
	}
	res := map[string]int{}
	for _, kv := range strings.Fields(string(out)) {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("setexe said %q", out)
		}
		res[k] = n
	}
	t.Logf("setexe %v: %s", args, strings.TrimSpace(string(out)))
	return res
}

func resultErr(r int) error {
	if r < 0 {
		return unix.Errno(-r)
	}
	return nil
}

func TestLabRoleExeSwap(t *testing.T) {
	l := newLab(t)
	sweep := filepath.Join(l.configDir, "sweep.json")
	bin, target := l.ordinary("ordinary")
	prog := filepath.Join(l.free, "setexe")
	must(t, os.WriteFile(prog, setexeBin, 0o755))

	for _, how := range []struct{ flag, name string }{{"", "PR_SET_MM_EXE_FILE"}, {"-m", "PR_SET_MM_MAP"}} {
		args := func(a ...string) []string {
			if how.flag != "" {
				a = append([]string{how.flag}, a...)
			}
			return a
		}
		// Control: the swap works to an ordinary binary, and the process
		// then writes an unprotected file.
		must(t, os.WriteFile(target, []byte("original"), 0o644))
		r := runSetexe(t, prog, args(bin, target)...)
		if r["munmap"] != 0 || r["prctl"] != 0 {
			t.Fatalf("control: %s to an ordinary binary: %v", how.name, r)
		}
		wantContent(t, target, "pwned")

		// To the agent binary, and to the updater binary.
		for _, c := range []struct {
			role, bin, target string
			extra             []string
		}{
			{"agent", l.agentBin, sweep, nil},
			{"updater", l.updaterBin, filepath.Join(l.staging, "evil"), []string{"0", "create"}},
		} {
			mark := l.eventCount()
			var got map[string]int
			l.refuse(attack{name: how.name + " to the " + c.role + " binary", run: func() error {
				got = runSetexe(t, prog, append(args(c.bin, c.target), c.extra...)...)
				return resultErr(got["open"])
			}, errno: unix.EPERM})
			if got["prctl"] != -int(unix.EPERM) {
				t.Errorf("%s to the %s binary returned %d, want -EPERM", how.name, c.role, got["prctl"])
			}
			l.roleRefused(mark, OpPrctlExe, how.name)
		}
	}

	// Without the prctl refusal the grant still holds: in an audit window
	// the switch is only reported, and once the kernel has closed the
	// window the switched process, which never exec'd the agent binary,
	// has no role.
	l.mustDo("mode audit 2")
	mark := l.eventCount()
	l.refuse(attack{name: "PR_SET_MM_EXE_FILE in an audit window, write after it", run: func() error {
		r := runSetexe(t, prog, l.agentBin, sweep, "5")
		if r["munmap"] != 0 {
			return fmt.Errorf("setexe could not unmap its image: %v", r)
		}
		if r["prctl"] != 0 {
			return fmt.Errorf("prctl in the audit window returned %d, want 0 (reported, not refused)", r["prctl"])
		}
		return resultErr(r["open"])
	}, errno: unix.EPERM})
	if _, ok := l.waitEvent(mark, func(e Event) bool { return e.Op == OpPrctlExe && e.Verdict == VerdictAudited }); !ok {
		t.Errorf("no audited prctl_exe event in the audit window")
	}
	l.mustDo("mode enforce")

	// Away from a role binary: the agent itself may not switch either.
	// An ordinary process gets the kernel's own EBUSY (its image is still
	// mapped), so the agent's EPERM is Sentinel's.
	ctl := exec.Command(bin)
	ctl.Env = append(os.Environ(), helperEnv+"=setexe-self", "SETEXE_TO="+prog)
	if out, _ := ctl.CombinedOutput(); !strings.Contains(string(out), "errno "+strconv.Itoa(int(unix.EBUSY))) {
		t.Errorf("control: an ordinary process switching its exe_file: %s (want EBUSY)", out)
	}
	mark = l.eventCount()
	if _, err := l.do("prctl-exe " + bin); err == nil || !strings.Contains(err.Error(), "not permitted") {
		t.Errorf("the agent switched its exe_file away from the agent binary: %v", err)
	}
	l.roleRefused(mark, OpPrctlExe, "PR_SET_MM_EXE_FILE")
	l.mustDo("write " + sweep + ` {"networks":["192.0.2.0/24"]}`)
}

// seccompRun starts bin as helper TARGET... (readwrite READ WRITE, or
// readinput PINROOT PATH) under a seccomp filter installed before its exec
// (mode notify: a supervisor answers its marked openat, or with readinput
// every openat, with substitute; allow: a filter that allows everything).
// It returns the target's output.
func seccompRun(t *testing.T, mode, launcher, bin, substitute string, target ...string) string {
	t.Helper()
	sub, err := os.Open(substitute)
	must(t, err)
	defer sub.Close()
	cmd := exec.Command(launcher, append([]string{mode, bin}, target...)...)
	cmd.Env = append(os.Environ(), helperEnv+"=seccomp-exec")
	stdin, err := cmd.StdinPipe()
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	defer reap(cmd)
	rd := bufio.NewReader(stdout)
	first, err := rd.ReadString('\n')
	if err != nil {
		t.Fatalf("seccomp launcher: %v (%q)", err, first)
	}
	done := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	if mode == "notify" {
		lfd, err := parseListener(first)
		must(t, err)
		listener, err := testutil.TakeFD(cmd.Process.Pid, lfd)
		if err != nil {
			t.Fatalf("take the listener: %v", err)
		}
		go func() {
			defer unix.Close(listener)
			n, err := supervise(listener, stop, int(sub.Fd()), target[0] == "readinput")
			if n == 0 {
				done <- fmt.Errorf("the supervisor substituted nothing: %v", err)
				return
			}
			done <- nil
		}()
	} else {
		done <- nil
	}
	fmt.Fprintln(stdin, "go")
	out := make(chan string, 1)
	go func() {
		var b strings.Builder
		for {
			line, err := rd.ReadString('\n')
			b.WriteString(line)
			if err != nil {
				break
			}
		}
		out <- b.String()
	}()
	select {
	case s := <-out:
		if mode == "notify" {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("supervisor: %v", err)
				}
			case <-time.After(5 * time.Second):
			}
		}
		t.Logf("%s under a %s filter: %s", filepath.Base(bin), mode, strings.TrimSpace(s))
		return s
	case <-time.After(labTimeout):
		t.Fatalf("target under seccomp did not finish")
	}
	return ""
}

// writeResult turns a readwrite helper's report into the error its write
// got (nil if it went through).
func writeResult(said string) error {
	switch {
	case strings.Contains(said, "write=ok"):
		return nil
	case strings.Contains(said, "write=operation not permitted"):
		return unix.EPERM
	}
	return errors.New(said)
}

func TestLabRoleSeccomp(t *testing.T) {
	l := newLab(t)
	sweep := filepath.Join(l.configDir, "sweep.json")
	trust := filepath.Join(l.stateDir, "trust.pub")
	bin, target := l.ordinary("ordinary")
	rootKey := filepath.Join(l.free, "root.pub")
	must(t, os.WriteFile(rootKey, []byte("root-key"), 0o644))

	// Control: a supervisor hands an ordinary binary root's key for the
	// trust key, and the binary writes an unprotected file.
	out := seccompRun(t, "notify", bin, bin, rootKey, "readwrite", trust, target)
	if !strings.Contains(out, "read=root-key") || !strings.Contains(out, "write=ok") {
		t.Fatalf("control: supervised ordinary binary: %q", out)
	}
	wantContent(t, target, "pwned")
	// Control: the agent binary run cleanly writes its config.
	w := exec.Command(l.agentBin, sweep, `{"clean":true}`)
	w.Env = append(os.Environ(), helperEnv+"=write")
	if out, err := w.CombinedOutput(); err != nil {
		t.Fatalf("control: a clean exec of the agent binary cannot write its config: %v %s", err, out)
	}

	for _, c := range []struct{ mode, role, bin, target string }{
		{"notify", "agent", l.agentBin, sweep},
		{"allow", "agent", l.agentBin, sweep},
		{"allow", "updater", l.updaterBin, filepath.Join(l.staging, "evil")},
	} {
		mark := l.eventCount()
		l.refuse(attack{name: c.role + " binary under a seccomp " + c.mode + " filter", run: func() error {
			return writeResult(seccompRun(t, c.mode, bin, c.bin, rootKey, "readwrite", trust, c.target))
		}, errno: unix.EPERM})
		l.roleRefused(mark, OpRoleRefused, "seccomp filter at exec")
	}

	// Defence in depth: should a supervisor ever slip through, an input
	// read by path must be the protected inode itself. Without a
	// supervisor the trust key reads as protected; with one that hands
	// over root's file, ReadInput refuses it.
	c := exec.Command(bin, string(l.pinRoot), trust)
	c.Env = append(os.Environ(), helperEnv+"=readinput")
	if out, err := c.CombinedOutput(); err != nil || !strings.Contains(string(out), "input=ok checked=true") {
		t.Errorf("control: ReadInput of the protected trust key: %v %s", err, out)
	}
	out = seccompRun(t, "notify", bin, bin, rootKey, "readinput", string(l.pinRoot), trust)
	if !strings.Contains(out, "input=error") || !strings.Contains(out, ErrNotProtected.Error()) {
		t.Errorf("ReadInput accepted a substituted trust key: %q", out)
	}
	l.mustDo("write " + sweep + ` {"networks":["192.0.2.0/24"]}`)
}

func TestLabRoleExecByFD(t *testing.T) {
	l := newLab(t)
	sweep := filepath.Join(l.configDir, "sweep.json")
	bin, _ := l.ordinary("ordinary")
	// A clean execveat(fd, "", AT_EMPTY_PATH) of the agent binary earns the
	// role like an exec by path...
	c := exec.Command(bin, l.agentBin, "write", sweep, `{"by":"fd"}`)
	c.Env = append(os.Environ(), helperEnv+"=execfd")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("clean execveat of the agent binary: %v %s", err, out)
	}
	wantContent(t, sweep, `{"by":"fd"}`)
	// ...and so does a clean exec through /proc/self/fd.
	f, err := os.Open(l.agentBin)
	must(t, err)
	defer f.Close()
	c = exec.Command("/proc/self/fd/3", sweep, `{"by":"procfd"}`)
	c.ExtraFiles = []*os.File{f}
	c.Env = append(os.Environ(), helperEnv+"=write")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("clean exec of the agent binary through /proc/self/fd: %v %s", err, out)
	}
	wantContent(t, sweep, `{"by":"procfd"}`)
	// A copy of the binary is not the agent, whichever way it runs.
	c = exec.Command(bin, bin, "write", sweep, "{}")
	c.Env = append(os.Environ(), helperEnv+"=execfd")
	if out, err := c.CombinedOutput(); err == nil || !strings.Contains(string(out), "not permitted") {
		t.Errorf("execveat of a copy of the agent binary wrote the config: %v %s", err, out)
	}
}

// TestLabRoleFreshProcess: a process that has just become a role (the
// updater, exec'd cleanly) cannot be attached to or written from outside.
func TestLabRoleFreshProcess(t *testing.T) {
	l := newLab(t)
	cmd := exec.Command(l.updaterBin)
	cmd.Env = append(os.Environ(), helperEnv+"=wait")
	stdin, err := cmd.StdinPipe()
	must(t, err)
	must(t, cmd.Start())
	defer func() { stdin.Close(); cmd.Wait() }()
	pid := cmd.Process.Pid
	l.refuse(
		attack{name: "ptrace attach to a fresh updater", run: func() error { return unix.PtraceAttach(pid) }, errno: unix.EPERM},
		attack{name: "ptrace seize of a fresh updater", run: func() error { return unix.PtraceSeize(pid) }, errno: unix.EPERM},
		attack{name: "write /proc/UPDATER/mem", run: func() error { return openWrite(fmt.Sprintf("/proc/%d/mem", pid), unix.O_RDWR) }, errno: unix.EACCES},
		attack{name: "process_vm_writev into a fresh updater", run: func() error {
			local := []unix.Iovec{{Base: &[]byte{0}[0], Len: 1}}
			remote := []unix.RemoteIovec{{Base: 0x400000, Len: 1}}
			_, err := unix.ProcessVMWritev(pid, local, remote, 0)
			return err
		}, errno: unix.EPERM},
	)
}
