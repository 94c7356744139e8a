package vm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/carverauto/fortress/tools/vmlab/internal/arch"
)

// Config describes one VM run.
type Config struct {
	// Arch is the guest's architecture; zero means amd64.
	Arch arch.Arch
	// Qemu is the emulator binary; empty means Arch's emulator in PATH.
	Qemu   string
	Kernel string
	Initrd string
	// Cmdline is appended to the base kernel command line.
	Cmdline string
	// MemoryMB and CPUs size the guest; zero means 2048 and 2.
	MemoryMB int
	CPUs     int
	// Timeout bounds the whole run, boot included.
	Timeout time.Duration
	// BootTimeout bounds the time from starting qemu to the start marker;
	// zero means no limit of its own. An emulated kernel occasionally
	// stalls in early boot and never prints again; this ends such a run
	// long before Timeout.
	BootTimeout time.Duration
	// Icount makes guest time count executed instructions (qemu -icount
	// shift=0) instead of host time, so that timings inside the guest do
	// not depend on the host's load: for ratios of benchmarks. Runs are
	// slower.
	Icount bool
	// Grace is how long the console is still read after an oops or after
	// the exit marker before qemu is killed; zero means 30s.
	Grace time.Duration
}

// BaseCmdline is the kernel command line every run starts from, with the
// architecture's serial console. panic=-1 reboots at once on a panic,
// which -no-reboot turns into a qemu exit; random.trust_cpu=on seeds the
// RNG from the emulated CPU's generator (RDRAND, RNDR), so that getrandom
// does not block the guest at boot.
func BaseCmdline(a arch.Arch) string {
	return "console=" + a.OrDefault().Console + " quiet panic=-1 random.trust_cpu=on"
}

// Args returns qemu's command line. Software emulation (TCG) is
// deliberate: KVM does not boot these kernels on the lab machines (and
// cannot run another architecture). The machine and CPU are the
// architecture's (arch.Arch.Machine). The guest gets no network device.
func (c Config) Args() []string {
	mem, cpus := c.MemoryMB, c.CPUs
	if mem == 0 {
		mem = 2048
	}
	if cpus == 0 {
		cpus = 2
	}
	a := c.Arch.OrDefault()
	args := []string{"-accel", "tcg"}
	args = append(args, a.Machine...)
	args = append(args,
		"-m", fmt.Sprint(mem),
		"-smp", fmt.Sprint(cpus),
		"-nographic",
		"-no-reboot",
		"-nic", "none",
		"-kernel", c.Kernel,
		"-initrd", c.Initrd,
		"-append", strings.TrimSpace(BaseCmdline(a)+" "+c.Cmdline),
	)
	if c.Icount {
		args = append(args, "-icount", "shift=0")
	}
	return args
}

// Result is the outcome of one VM run.
type Result struct {
	Outcome
	// Duration is the wall time from starting qemu to its exit.
	Duration time.Duration
	// TimedOut: the run hit Config.Timeout and qemu was killed.
	TimedOut bool
	// BootStalled: the start marker did not come within
	// Config.BootTimeout and qemu was killed.
	BootStalled bool
	// Interrupted: the context ended the run and qemu was killed.
	Interrupted bool
	// QemuExit describes how qemu ended; QemuStderr is what it printed.
	QemuExit   string
	QemuStderr string
	timeout    time.Duration
	bootLimit  time.Duration
}

// LabError explains why the run says nothing about the command (a kernel
// crash, a timeout, a guest that never reported), or returns nil when the
// exit code is the command's own.
func (r Result) LabError() error {
	switch {
	case r.Interrupted:
		return errors.New("interrupted")
	case r.Panicked:
		return fmt.Errorf("kernel panic: %s", strings.TrimSpace(r.Crash))
	case r.Hung:
		return fmt.Errorf("kernel hung: %s", strings.TrimSpace(r.Crash))
	case r.Crash != "":
		return fmt.Errorf("kernel oops: %s", strings.TrimSpace(r.Crash))
	case r.TimedOut:
		return fmt.Errorf("timed out after %s", r.timeout)
	case r.BootStalled:
		return fmt.Errorf("the kernel did not reach its init within %s", r.bootLimit)
	case !r.Started:
		return fmt.Errorf("the guest never started its init (qemu %s%s)", r.QemuExit, stderrNote(r.QemuStderr))
	case !r.Exited:
		return fmt.Errorf("the guest stopped without an exit marker (qemu %s%s)", r.QemuExit, stderrNote(r.QemuStderr))
	}
	return nil
}

func stderrNote(s string) string {
	if s = strings.TrimSpace(s); s != "" {
		return ": " + s
	}
	return ""
}

// Run boots the VM, feeds its console to con and returns when qemu has
// exited. qemu is killed (by its process ID) on a kernel panic, on timeout,
// when ctx ends, and after Grace once an oops or the exit marker was seen.
// An error means qemu could not be run at all.
func Run(ctx context.Context, cfg Config, con *Console) (Result, error) {
	bin := cfg.Qemu
	if bin == "" {
		bin = cfg.Arch.OrDefault().Qemu
	}
	grace := cfg.Grace
	if grace == 0 {
		grace = 30 * time.Second
	}
	cmd := exec.Command(bin, cfg.Args()...)
	// Its own process group: a terminal's ^C reaches vmlab, which then
	// kills qemu, instead of reaching qemu directly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &limitedWriter{w: &stderr, n: 16 << 10}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, fmt.Errorf("start qemu: %w", err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("start qemu: %w", err)
	}

	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		r := bufio.NewReaderSize(stdout, 64<<10)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				lines <- line
			}
			if err != nil {
				return
			}
		}
	}()

	res := Result{timeout: cfg.Timeout, bootLimit: cfg.BootTimeout}
	var timeout <-chan time.Time
	if cfg.Timeout > 0 {
		t := time.NewTimer(cfg.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var bootC <-chan time.Time
	if cfg.BootTimeout > 0 {
		t := time.NewTimer(cfg.BootTimeout)
		defer t.Stop()
		bootC = t.C
	}
	var graceC <-chan time.Time
	killed := false
	kill := func() {
		if !killed {
			killed = true
			_ = cmd.Process.Kill()
		}
	}
	done := ctx.Done()
	for lines != nil {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil
				break
			}
			switch con.Feed(line) {
			case EventStarted:
				bootC = nil
			case EventPanic, EventHang:
				kill()
			case EventOops, EventExited:
				if graceC == nil {
					graceC = time.After(grace)
				}
			}
		case <-timeout:
			res.TimedOut = true
			kill()
		case <-bootC:
			bootC = nil
			res.BootStalled = true
			kill()
		case <-graceC:
			kill()
		case <-done:
			res.Interrupted = true
			done = nil
			kill()
		}
	}
	werr := cmd.Wait()
	res.Duration = time.Since(start)
	res.Outcome = con.Outcome()
	res.QemuStderr = stderr.String()
	switch {
	case killed:
		res.QemuExit = "killed"
	case werr != nil:
		res.QemuExit = werr.Error()
	default:
		res.QemuExit = "exited"
	}
	return res, nil
}

// limitedWriter keeps the first n bytes written to it and drops the rest.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
