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
	"slices"
	"strings"
	"time"

	"github.com/carverauto/fortress/tools/vmlab/internal/apt"
	"github.com/carverauto/fortress/tools/vmlab/internal/arch"
	"github.com/carverauto/fortress/tools/vmlab/internal/initramfs"
	"github.com/carverauto/fortress/tools/vmlab/internal/kernel"
	"github.com/carverauto/fortress/tools/vmlab/internal/userland"
	"github.com/carverauto/fortress/tools/vmlab/internal/vm"
)

// hostPackages are the Debian packages vmlab needs on the host to boot a
// guests: the architecture's emulator, and the tools the guest gets (for
// another architecture the host's copies still list busybox's applets and
// name the library packages the guest's copies need).
func hostPackages(a arch.Arch) []string {
	return []string{a.QemuPackage, "busybox-static", "bpftool", "iproute2"}
}

// guestSuites are the Debian suites the guest's own tools come from when
// its architecture is not the host's: the release of the lab's hosts
// (Debian 12), whose package names the host's package database gives.
var guestSuites = []string{"bookworm", "bookworm-security"}

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
	arch    arch.Arch // the guest's architecture
	root    string    // module root
	work    string    // scratch directory, removed by close
	cache   *kernel.Cache
	log     io.Writer
	verbose bool
	icount  bool // guest time counts instructions (vm.Config.Icount)

	qemu    string
	files   []userland.File // the guest's programs and their libraries, busybox last
	applets []string
	binDir  string // built project binaries
}

// newLab installs missing host packages, finds the tools and the module,
// and gathers the guest's programs for architecture a.
func newLab(ctx context.Context, verbose bool, a arch.Arch) (*lab, error) {
	l := &lab{arch: a, log: os.Stderr, verbose: verbose}
	if err := apt.EnsureInstalled(ctx, l.log, hostPackages(a)...); err != nil {
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
	l.cache = &kernel.Cache{Dir: kernel.DirFor(dir, a.Name), Arch: a.Name, Log: l.log}
	if l.qemu, err = lookTool(a.Qemu); err != nil {
		return nil, err
	}
	busybox, err := lookTool("busybox")
	if err != nil {
		return nil, err
	}
	static, err := initramfs.IsStatic(busybox)
	if err != nil {
		return nil, err
	}
	if !static {
		return nil, fmt.Errorf("busybox at %s is not static: install busybox-static", busybox)
	}
	// The guest's busybox, of any architecture, comes from the same Debian
	// release as the host's, with the same applets.
	if l.applets, err = initramfs.Applets(ctx, busybox); err != nil {
		return nil, err
	}
	if a.Native() {
		l.files, err = hostFiles(ctx, busybox)
	} else {
		fetch := func(ctx context.Context, name string) (string, error) {
			return l.cache.Package(ctx, name, guestSuites)
		}
		host, ok := arch.Host()
		if !ok {
			return nil, fmt.Errorf("guest programs for %s: vmlab does not know the host's architecture", a.Name)
		}
		l.files, err = userland.Assemble(ctx, a, userland.Tools, fetch, userland.HostProviders(host.Triplet))
	}
	if err != nil {
		return nil, fmt.Errorf("guest programs for %s: %w", a.Name, err)
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

// hostFiles are the guest's programs when it runs the host's binaries:
// bpftool, ip and dash (as /bin/sh) with every library ldd lists, at the
// same paths, and busybox. /bin/sh is dash, not busybox's shell: Debian
// builds busybox with FEATURE_SH_STANDALONE, whose shell runs its own
// applets before any program in PATH, so "ip" in a script would never
// reach iproute2.
func hostFiles(ctx context.Context, busybox string) ([]userland.File, error) {
	var files []userland.File
	tools := []struct{ name, dst string }{{"bpftool", "/usr/sbin/bpftool"}, {"ip", "/usr/sbin/ip"}, {"dash", "/bin/sh"}}
	for _, t := range tools {
		src, err := lookTool(t.name)
		if err != nil {
			if t.name == "dash" {
				continue // essential on Debian; without it, busybox's shell
			}
			return nil, err
		}
		files = append(files, userland.File{Dest: t.dst, Src: src})
		libs, err := initramfs.Libraries(ctx, src)
		if err != nil {
			return nil, err
		}
		for _, lib := range libs {
			files = append(files, userland.File{Dest: lib, Src: lib})
		}
	}
	return append(files, userland.File{Dest: "/bin/busybox", Src: busybox}), nil
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

// kernels resolves the named lines' kernels ("all" means every line of
// the lab's architecture).
func (l *lab) kernels(ctx context.Context, name string) ([]kernel.Line, []*kernel.Kernel, error) {
	var lines []kernel.Line
	if name == "all" {
		lines = kernel.LinesFor(l.arch.Name)
	} else {
		line, err := kernel.LookupLineFor(l.arch.Name, name)
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

// goBuild runs the go tool in the module root with cgo disabled, for the
// guest's architecture.
func (l *lab) goBuild(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = l.root
	cmd.Env = buildEnv(os.Environ(), l.arch)
	cmd.Stdout = l.log
	cmd.Stderr = l.log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// buildEnv is env with the settings of every build for the guest: no cgo
// (static binaries), and the guest's GOOS and GOARCH.
func buildEnv(env []string, a arch.Arch) []string {
	return append(slices.Clone(env), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+a.OrDefault().Name)
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
	for _, f := range l.files {
		if w.Has(f.Dest) {
			continue
		}
		if err := w.CopyFile(f.Dest, f.Src, 0o755); err != nil {
			return err
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
	// Applets last, so that they never shadow a real tool.
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

// boot runs the VM, and again (at most twice more) if the kernel panicked,
// hung (a CPU reported stuck again and again) or stalled before its init:
// the emulated machine occasionally does each for reasons of its own.
// After a panic or hang the next boot gets one vCPU: those seen were the
// emulator's, around kernel text that another vCPU is live-patching (XDP
// program swaps under traffic), which needs two. The x86-64 lines boot
// with one vCPU from the start (Line.CPUs).
// output receives the guest command's lines.
func (l *lab) boot(ctx context.Context, line kernel.Line, k *kernel.Kernel, initrd string, timeout time.Duration, output func(string)) (vm.Result, error) {
	cfg := vm.Config{Arch: l.arch, Qemu: l.qemu, Kernel: k.Vmlinuz(), Initrd: initrd, Cmdline: line.Cmdline, CPUs: line.CPUs,
		Timeout: timeout, BootTimeout: bootTimeout, Icount: l.icount}
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
		if !(res.Panicked || res.Hung || res.BootStalled) || res.Interrupted || attempt == attempts {
			break
		}
		if res.BootStalled {
			fmt.Fprintf(l.log, "vmlab: %s: %v; booting once more\n", k.Release, res.LabError())
		} else {
			cfg.CPUs = 1
			fmt.Fprintf(l.log, "vmlab: %s: %v; booting once more, with one vCPU\n", k.Release, res.LabError())
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
