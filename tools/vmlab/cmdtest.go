package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/carverauto/fortress/tools/vmlab/internal/arch"
	"github.com/carverauto/fortress/tools/vmlab/internal/initramfs"
	"github.com/carverauto/fortress/tools/vmlab/internal/kernel"
	"github.com/carverauto/fortress/tools/vmlab/internal/vm"
)

// Markers the guest's test runner prints, parsed by the host.
const (
	lsmMarker = "FORTRESS-VMLAB-LSM="
	pkgMarker = "FORTRESS-VMLAB-PKG="
)

// testPackage is a lab package with its test binary built.
type testPackage struct {
	pattern string // "./internal/sentinel"
	name    string // "internal_sentinel": guest directory and binary name
	dir     string // host source directory
	bin     string // host test binary
}

// cmdTest builds the lab packages' test binaries and runs them all in one
// boot of each kernel, after asserting that BPF is an active LSM there.
func cmdTest(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: vmlab test [--arch amd64|arm64] [--kernel 5.10|6.1|6.12|all] [--run REGEX] [--timeout D] [-v]")
		fs.PrintDefaults()
	}
	aname := archFlag(fs)
	kname := fs.String("kernel", "all", "kernel line to test: 5.10 (amd64 only), 6.1, 6.12 or all")
	runRe := fs.String("run", "", "run only the tests matching this regular expression (go test -run)")
	timeout := fs.Duration("timeout", defaultTimeout, "limit for each VM run, boot included")
	testTimeout := fs.Duration("test-timeout", 10*time.Minute, "limit for each test binary (go test -timeout)")
	verbose := fs.Bool("v", false, "print the whole serial console to stderr")
	if err := fs.Parse(args); err != nil {
		return parseError(err)
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("test takes no arguments, got %q", fs.Args())}
	}
	if *runRe != "" {
		if _, err := regexp.Compile(*runRe); err != nil {
			return usageError{fmt.Errorf("--run: %w", err)}
		}
	}
	a, err := arch.Lookup(*aname)
	if err != nil {
		return usageError{err}
	}
	lines := kernel.LinesFor(a.Name)
	if *kname != "all" {
		line, err := kernel.LookupLineFor(a.Name, *kname)
		if err != nil {
			return usageError{err}
		}
		lines = []kernel.Line{line}
	}

	l, err := newLab(ctx, *verbose, a)
	if err != nil {
		return labError{err}
	}
	defer l.close()

	// Fetch every kernel first: a network problem shows before any build.
	ks := make([]*kernel.Kernel, len(lines))
	fetchErr := make([]error, len(lines))
	for i, line := range lines {
		ks[i], fetchErr[i] = l.cache.Get(ctx, line)
		if ctx.Err() != nil {
			return labError{ctx.Err()}
		}
	}
	// A command or test package that does not build fails on every kernel;
	// the rest still run.
	broken, err := l.buildCommands(ctx)
	if err != nil {
		return labError{err}
	}
	pkgs, brokenTests, err := l.buildTests(ctx)
	if err != nil {
		return err
	}
	broken = append(broken, brokenTests...)
	script := testScript(pkgs, *runRe, *testTimeout)

	var failed, labFailed bool
	for i, line := range lines {
		if fetchErr[i] != nil {
			fmt.Printf("vmlab: %s: LAB FAILURE: %v\n", line.Name, fetchErr[i])
			labFailed = true
			continue
		}
		k := ks[i]
		sum, err := l.testKernel(ctx, line, k, pkgs, broken, script, *timeout)
		if err != nil {
			return err
		}
		fmt.Println(sum.line(k.Release))
		failed = failed || len(sum.failed) > 0
		labFailed = labFailed || sum.labErr != nil
		if ctx.Err() != nil {
			return labError{ctx.Err()}
		}
	}
	switch {
	case labFailed:
		return exitCode(exitLab)
	case failed:
		return exitCode(exitFailure)
	}
	return nil
}

// buildTests builds a test binary for every lab package that has tests.
// Packages that do not exist or have no test files are skipped with a note;
// packages whose tests do not compile are returned in broken.
func (l *lab) buildTests(ctx context.Context) (pkgs []testPackage, broken []string, err error) {
	for _, pattern := range labPackages {
		dir := filepath.Join(l.root, filepath.FromSlash(pattern))
		tests, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
		if len(tests) == 0 {
			fmt.Fprintf(l.log, "vmlab: note: %s has no test files yet; skipped\n", pattern)
			continue
		}
		name := strings.ReplaceAll(strings.Trim(pattern, "./"), "/", "_")
		p := testPackage{pattern: pattern, name: name, dir: dir, bin: filepath.Join(l.work, "tests", name+".test")}
		if err := l.goBuild(ctx, "test", "-c", "-o", p.bin, pattern); err != nil {
			if ctx.Err() != nil {
				return nil, nil, labError{ctx.Err()}
			}
			fmt.Fprintf(l.log, "vmlab: %s: test build failed: %v\n", pattern, err)
			broken = append(broken, pattern)
			continue
		}
		if _, err := os.Stat(p.bin); err != nil {
			fmt.Fprintf(l.log, "vmlab: note: %s produced no test binary; skipped\n", pattern)
			continue
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, broken, nil
}

// testScript is the guest command for "vmlab test": the LSM assertion,
// then every test binary from its own directory (with its testdata), each
// followed by a marker line with its exit status.
func testScript(pkgs []testPackage, runRe string, testTimeout time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, `status=0
lsm=$(cat /sys/kernel/security/lsm 2>&1)
echo "%[1]s$lsm"
case ",$lsm," in
*,bpf,*) echo "vmlab: active LSMs: $lsm" ;;
*) echo "vmlab: FAIL: bpf is not an active LSM ($lsm)"; status=1 ;;
esac
`, lsmMarker)
	flags := fmt.Sprintf("-test.v -test.count=1 -test.short -test.timeout=%s", testTimeout)
	if runRe != "" {
		flags += " -test.run " + vm.Quote([]string{runRe})
	}
	for _, p := range pkgs {
		fmt.Fprintf(&b, `echo "=== vmlab: %[1]s"
cd /lab/pkgs/%[2]s && ./%[2]s.test %[3]s
rc=$?
echo "%[4]s%[1]s $rc"
[ "$rc" = 0 ] || status=1
`, p.pattern, p.name, flags, pkgMarker)
	}
	b.WriteString("exit $status\n")
	return b.String()
}

// kernelSummary is the result of the lab packages on one kernel.
type kernelSummary struct {
	packages int
	failed   []string // failing packages, packages that do not build, the LSM assertion
	labErr   error
	took     time.Duration
}

// line is the one summary line printed for a kernel.
func (s kernelSummary) line(release string) string {
	took := seconds(s.took)
	switch {
	case s.labErr != nil:
		return fmt.Sprintf("vmlab: %s: LAB FAILURE: %v (%s)", release, s.labErr, took)
	case len(s.failed) > 0:
		return fmt.Sprintf("vmlab: %s: FAIL: %s (%d packages, %s)", release, strings.Join(s.failed, ", "), s.packages, took)
	}
	return fmt.Sprintf("vmlab: %s: PASS (%d packages, %s)", release, s.packages, took)
}

// testKernel boots k once with every test binary and collects the results.
func (l *lab) testKernel(ctx context.Context, line kernel.Line, k *kernel.Kernel, pkgs []testPackage, broken []string, script string, timeout time.Duration) (kernelSummary, error) {
	sum := kernelSummary{packages: len(pkgs)}
	initrd := filepath.Join(l.work, "initrd-"+line.Name+".cpio.gz")
	err := l.image(ctx, k, initrd, script, func(w *initramfs.Writer) error {
		for _, p := range pkgs {
			dir := "/lab/pkgs/" + p.name
			if err := w.CopyFile(dir+"/"+p.name+".test", p.bin, 0o755); err != nil {
				return err
			}
			if fi, err := os.Stat(filepath.Join(p.dir, "testdata")); err == nil && fi.IsDir() {
				if err := w.CopyTree(dir+"/testdata", filepath.Join(p.dir, "testdata")); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		sum.labErr = err
		return sum, nil
	}

	results := map[string]int{}
	lsm, lsmSeen := "", false
	output := func(s string) {
		switch {
		case strings.HasPrefix(s, pkgMarker):
			f := strings.Fields(strings.TrimPrefix(s, pkgMarker))
			if len(f) == 2 {
				if rc, err := strconv.Atoi(f[1]); err == nil {
					results[f[0]] = rc
				}
			}
		case strings.HasPrefix(s, lsmMarker):
			lsm, lsmSeen = strings.TrimPrefix(s, lsmMarker), true
		default:
			fmt.Println(s)
		}
	}
	res, err := l.boot(ctx, line, k, initrd, timeout, output)
	if err != nil {
		return sum, err
	}
	sum.took = res.Duration
	if lerr := res.LabError(); lerr != nil {
		l.printTail(res)
		sum.labErr = lerr
		return sum, nil
	}
	if !lsmSeen || !slices.Contains(strings.Split(strings.TrimSpace(lsm), ","), "bpf") {
		sum.failed = append(sum.failed, "lsm (bpf not active)")
	}
	for _, b := range broken {
		sum.failed = append(sum.failed, b+" (build)")
	}
	for _, p := range pkgs {
		if rc, ok := results[p.pattern]; !ok || rc != 0 {
			sum.failed = append(sum.failed, p.pattern)
		}
	}
	if len(sum.failed) == 0 && res.ExitCode != 0 {
		sum.failed = append(sum.failed, fmt.Sprintf("test runner (exit %d)", res.ExitCode))
	}
	return sum, nil
}

// seconds formats a duration as whole seconds, "41s".
func seconds(d time.Duration) string {
	return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second))
}
