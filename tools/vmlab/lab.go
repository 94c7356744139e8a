package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/carverauto/fortress/tools/vmlab/internal/apt"
	"github.com/carverauto/fortress/tools/vmlab/internal/initramfs"
	"github.com/carverauto/fortress/tools/vmlab/internal/kernel"
	"github.com/carverauto/fortress/tools/vmlab/internal/vm"
)

// hostPackages are the Debian packages vmlab needs on the host.
var hostPackages = []string{"qemu-system-x86", "busybox-static", "bpftool", "iproute2"}

// projectCommands are the project binaries put into the guest's
// /usr/local/bin, each built when its cmd/ directory exists.
var projectCommands = []string{"fortressctl", "fortress-agent", "fortress-gateway", "fortress-demo", "fortress-update"}

// defaultTimeout bounds one VM run, boot included. Everything is emulated,
// so it is generous: the whole lab suite takes 10 to 12 minutes per kernel
// on a 2-core host, and a stalled boot is caught by bootTimeout long before.
const defaultTimeout = 30 * time.Minute

// bootTimeout bounds the time until the guest's /init runs. A healthy boot
// takes well under a minute even on a loaded host; the emulated kernel
// occasionally stalls in early boot without a word, and is then booted
// once more instead of waiting for defaultTimeout.
const bootTimeout = 4 * time.Minute

// lab holds what every VM run shares: the host tools, the module root,
// the kernel cache and a scratch directory.
type lab struct {
	root    string // module root
	work    string // scratch directory, removed by close
	cache   *kernel.Cache
	log     io.Writer
	verbose bool
	icount  bool // guest time counts instructions (vm.Config.Icount)

	qemu, busybox, bpftool, ip string
	dash                       string // the guest's /bin/sh; empty to use busybox's
	applets                    []string
	binDir                     string // built project binaries
}

// newLab installs missing host packages and finds the tools and the module.
func newLab(ctx context.Context, verbose bool) (*lab, error) {
	l := &lab{log: os.Stderr, verbose: verbose}
	if err := apt.EnsureInstalled(ctx, l.log, hostPackages...); err != nil {
		return nil, fmt.Errorf("install host packages: %w", err)
	}
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("find module root: %w", err)
	}
	p := strings.TrimSpace(string(gomod))
	if p == "" || p == os.DevNull {
		return nil, errors.New("find module root: run vmlab inside the fortress module")
	}
	l.root = filepath.Dir(p)
	dir, err := kernel.DefaultDir()
	if err != nil {
		return nil, err
	}
	l.cache = &kernel.Cache{Dir: dir, Log: l.log}
	for _, t := range []struct {
		name string
		dst  *string
	}{{"busybox", &l.busybox}, {"bpftool", &l.bpftool}, {"ip", &l.ip}, {"qemu-system-x86_64", &l.qemu}} {
		if *t.dst, err = lookTool(t.name); err != nil {
			return nil, err
		}
	}
	// dash is essential on Debian; without it the guest falls back to
	// busybox's shell.
	l.dash, _ = lookTool("dash")
	static, err := initramfs.IsStatic(l.busybox)
	if err != nil {
		return nil, err
	}
	if !static {
		return nil, fmt.Errorf("busybox at %s is not static: install busybox-static", l.busybox)
	}
	if l.applets, err = initramfs.Applets(ctx, l.busybox); err != nil {
		return nil, err
	}
	if l.work, err = os.MkdirTemp("", "vmlab-"); err != nil {
		return nil, fmt.Errorf("create scratch dir: %w", err)
	}
	return l, nil
}

// close removes the scratch directory.
func (l *lab) close() {
	if l.work != "" {
		os.RemoveAll(l.work)
	}
}

// lookTool finds a host tool in PATH or in the sbin directories, which a
// non-login root shell may lack.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("find %s: not installed", name)
}

// kernels resolves the named lines' kernels ("all" means every line).
func (l *lab) kernels(ctx context.Context, name string) ([]kernel.Line, []*kernel.Kernel, error) {
	var lines []kernel.Line
	if name == "all" {
		lines = kernel.Lines
	} else {
		line, err := kernel.LookupLine(name)
		if err != nil {
			return nil, nil, usageError{err}
		}
		lines = []kernel.Line{line}
	}
	ks := make([]*kernel.Kernel, len(lines))
	for i, line := range lines {
		k, err := l.cache.Get(ctx, line)
		if err != nil {
			return nil, nil, labError{err}
		}
		ks[i] = k
	}
	return lines, ks, nil
}

// goBuild runs the go tool in the module root with cgo disabled.
func (l *lab) goBuild(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = l.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout = l.log
	cmd.Stderr = l.log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// buildCommands builds the project binaries whose cmd/ directory exists
// into binDir, one at a time, and returns the packages that failed to
// build (their errors went to the log). The guest gets the others.
func (l *lab) buildCommands(ctx context.Context) (broken []string, err error) {
	l.binDir = filepath.Join(l.work, "bin")
	if err := os.MkdirAll(l.binDir, 0o755); err != nil {
		return nil, fmt.Errorf("build commands: %w", err)
	}
	for _, c := range projectCommands {
		if fi, err := os.Stat(filepath.Join(l.root, "cmd", c)); err != nil || !fi.IsDir() {
			continue
		}
		pkg := "./cmd/" + c
		if err := l.goBuild(ctx, "build", "-o", filepath.Join(l.binDir, c), pkg); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			fmt.Fprintf(l.log, "vmlab: warning: %s does not build; the guest will not have it\n", pkg)
			broken = append(broken, pkg)
		}
	}
	return broken, nil
}

// image writes the guest's initramfs for k to dst: busybox and its
// applets, bpftool and ip with their libraries, the project binaries, k's
// modules, /init, and script as the command /init runs. extra, if not nil,
// adds more files.
func (l *lab) image(ctx context.Context, k *kernel.Kernel, dst, script string, extra func(*initramfs.Writer) error) error {
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("create initramfs: %w", err)
	}
	defer f.Close()
	w := initramfs.NewWriter(f)
	if err := l.fill(ctx, w, k, script); err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	if extra != nil {
		if err := extra(w); err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return f.Close()
}

func (l *lab) fill(ctx context.Context, w *initramfs.Writer, k *kernel.Kernel, script string) error {
	for _, d := range []string{"/dev", "/proc", "/sys", "/run", "/root", "/var/tmp", "/etc/serviceradar", "/lab", vm.ModuleDir, vm.SpareModuleDir, "/usr/local/bin"} {
		if err := w.Dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := w.Dir("/tmp", fs.ModeSticky|0o777); err != nil {
		return err
	}
	if err := w.Symlink("/var/run", "/run"); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		perm os.FileMode
		body string
	}{
		{"/init", 0o755, vm.InitScript()},
		{vm.CommandPath, 0o755, script},
		{"/etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n"},
		{"/etc/group", 0o644, "root:x:0:\n"},
		{"/etc/hosts", 0o644, "127.0.0.1\tlocalhost vmlab\n::1\tlocalhost ip6-localhost ip6-loopback\n"},
	} {
		if err := w.File(f.name, f.perm, []byte(f.body)); err != nil {
			return err
		}
	}
	// Dynamic host tools with every library ldd lists, at the same paths.
	// /bin/sh is dash, not busybox's shell: Debian builds busybox with
	// FEATURE_SH_STANDALONE, whose shell runs its own applets before any
	// program in PATH, so "ip" in a script would never reach iproute2.
	tools := []struct{ src, dst string }{{l.bpftool, "/usr/sbin/bpftool"}, {l.ip, "/usr/sbin/ip"}}
	if l.dash != "" {
		tools = append(tools, struct{ src, dst string }{l.dash, "/bin/sh"})
	}
	for _, t := range tools {
		if err := w.CopyFile(t.dst, t.src, 0o755); err != nil {
			return err
		}
		libs, err := initramfs.Libraries(ctx, t.src)
		if err != nil {
			return err
		}
		for _, lib := range libs {
			if w.Has(lib) {
				continue
			}
			if err := w.CopyFile(lib, lib, 0o755); err != nil {
				return err
			}
		}
	}
	if l.binDir != "" {
		bins, _ := filepath.Glob(filepath.Join(l.binDir, "*"))
		for _, b := range bins {
			if err := w.CopyFile("/usr/local/bin/"+filepath.Base(b), b, 0o755); err != nil {
				return err
			}
		}
	}
	// /init loads the modules in the order of their names.
	for i, m := range k.ModuleFiles() {
		dst := fmt.Sprintf("%s/%02d-%s", vm.ModuleDir, i, filepath.Base(m))
		if kernel.Spare(m) {
			dst = vm.SpareModuleDir + "/" + filepath.Base(m)
		}
		if err := w.CopyFile(dst, m, 0o644); err != nil {
			return err
		}
	}
	// busybox last, so that its applets never shadow a real tool.
	if err := w.CopyFile("/bin/busybox", l.busybox, 0o755); err != nil {
		return err
	}
	for _, a := range l.applets {
		if w.Has(a) {
			continue
		}
		if err := w.Symlink(a, "/bin/busybox"); err != nil {
			return err
		}
	}
	return nil
}

// boot runs the VM, and again (at most twice more) if the kernel panicked
// or stalled before its init: the emulated machine occasionally does either
// for reasons of its own. After a panic the next boot gets one vCPU: the
// panics seen are the emulator's, an int3 left in kernel text that another
// vCPU is live-patching (XDP program swaps under traffic), which needs two.
// output receives the guest command's lines.
func (l *lab) boot(ctx context.Context, line kernel.Line, k *kernel.Kernel, initrd string, timeout time.Duration, output func(string)) (vm.Result, error) {
	cfg := vm.Config{Qemu: l.qemu, Kernel: k.Vmlinuz(), Initrd: initrd, Cmdline: line.Cmdline, Timeout: timeout, BootTimeout: bootTimeout, Icount: l.icount}
	const attempts = 3
	var res vm.Result
	for attempt := 1; attempt <= attempts; attempt++ {
		con := &vm.Console{Output: output}
		if l.verbose {
			con.Verbose = l.log
		}
		var err error
		res, err = vm.Run(ctx, cfg, con)
		if err != nil {
			return res, labError{err}
		}
		if !(res.Panicked || res.BootStalled) || res.Interrupted || attempt == attempts {
			break
		}
		if res.BootStalled {
			fmt.Fprintf(l.log, "vmlab: %s: %v; booting once more\n", k.Release, res.LabError())
		} else {
			cfg.CPUs = 1
			fmt.Fprintf(l.log, "vmlab: %s: kernel panicked (%s); booting once more, with one vCPU\n", k.Release, strings.TrimSpace(res.Crash))
		}
		l.printTail(res)
	}
	return res, nil
}

// printTail shows the last console lines of a failed run.
func (l *lab) printTail(res vm.Result) {
	if l.verbose {
		return // already shown
	}
	fmt.Fprintln(l.log, "vmlab: last console lines:")
	for _, t := range res.Tail {
		fmt.Fprintln(l.log, "  | "+t)
	}
}
