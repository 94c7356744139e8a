package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/carverauto/fortress/tools/vmlab/internal/arch"
	"github.com/carverauto/fortress/tools/vmlab/internal/initramfs"
	"github.com/carverauto/fortress/tools/vmlab/internal/kernel"
	"github.com/carverauto/fortress/tools/vmlab/internal/vm"
)

// cmdRun boots one kernel and runs a command in it as root; vmlab exits
// with the command's status.
func cmdRun(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: vmlab run [--arch amd64|arm64] --kernel 5.10|6.1|6.12 [--add DIR] [--icount] [--timeout D] [-v] -- CMD ARGS...")
		fs.PrintDefaults()
	}
	aname := archFlag(fs)
	kname := fs.String("kernel", "", "kernel line to boot: 5.10 (amd64 only), 6.1 or 6.12")
	add := fs.String("add", "", "host directory copied into the guest at /lab/extra (the command's working directory)")
	timeout := fs.Duration("timeout", defaultTimeout, "limit for the whole VM run, boot included")
	verbose := fs.Bool("v", false, "print the whole serial console to stderr")
	icount := fs.Bool("icount", false, "guest time counts executed instructions, not host time (stable benchmark ratios on a busy host; slower)")
	if err := fs.Parse(args); err != nil {
		return parseError(err)
	}
	if *kname == "" || fs.NArg() == 0 {
		fs.Usage()
		return usageError{errors.New("run needs --kernel and a command")}
	}
	a, err := arch.Lookup(*aname)
	if err != nil {
		return usageError{err}
	}
	line, err := kernel.LookupLineFor(a.Name, *kname)
	if err != nil {
		return usageError{err}
	}
	if *add != "" {
		if fi, err := os.Stat(*add); err != nil || !fi.IsDir() {
			return usageError{fmt.Errorf("--add %s: not a directory", *add)}
		}
	}

	l, err := newLab(ctx, *verbose, a)
	if err != nil {
		return labError{err}
	}
	defer l.close()
	l.icount = *icount
	_, ks, err := l.kernels(ctx, line.Name)
	if err != nil {
		return err
	}
	k := ks[0]
	if _, err := l.buildCommands(ctx); err != nil {
		return labError{err}
	}
	script := "cd /lab/extra 2>/dev/null || cd /root\nexec " + vm.Quote(fs.Args()) + "\n"
	var extra func(*initramfs.Writer) error
	if *add != "" {
		extra = func(w *initramfs.Writer) error { return w.CopyTree("/lab/extra", *add) }
	}
	initrd := filepath.Join(l.work, "initrd-"+line.Name+".cpio.gz")
	if err := l.image(ctx, k, initrd, script, extra); err != nil {
		return labError{err}
	}
	res, err := l.boot(ctx, line, k, initrd, *timeout, func(s string) { fmt.Fprintln(os.Stdout, s) })
	if err != nil {
		return err
	}
	if lerr := res.LabError(); lerr != nil {
		l.printTail(res)
		return labError{fmt.Errorf("%s: %w", k.Release, lerr)}
	}
	fmt.Fprintf(os.Stderr, "vmlab: %s: exit %d (%s)\n", k.Release, res.ExitCode, seconds(res.Duration))
	if res.ExitCode != 0 {
		return exitCode(res.ExitCode)
	}
	return nil
}

// cmdFetch downloads (or refreshes) the kernels without booting them.
func cmdFetch(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fetch", flag.ContinueOnError)
	aname := archFlag(fs)
	kname := fs.String("kernel", "all", "kernel line: 5.10 (amd64 only), 6.1, 6.12 or all")
	if err := fs.Parse(args); err != nil {
		return parseError(err)
	}
	a, err := arch.Lookup(*aname)
	if err != nil {
		return usageError{err}
	}
	if *kname != "all" {
		if _, err := kernel.LookupLineFor(a.Name, *kname); err != nil {
			return usageError{err}
		}
	}
	l, err := newLab(ctx, false, a)
	if err != nil {
		return labError{err}
	}
	defer l.close()
	_, ks, err := l.kernels(ctx, *kname)
	if err != nil {
		return err
	}
	for _, k := range ks {
		fmt.Printf("vmlab: %s: %s %s (%s)\n", k.Line, k.Package, k.Version, k.Dir)
	}
	return nil
}

// archFlag defines the --arch flag of a sub-command.
func archFlag(fs *flag.FlagSet) *string {
	return fs.String("arch", "amd64", "guest architecture: amd64 or arm64 (arm64 has the 6.1 and 6.12 lines)")
}
