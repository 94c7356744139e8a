package bench

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/blocklist"
	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/lpm"
	"github.com/carverauto/fortress/internal/pins"
	"github.com/carverauto/fortress/internal/shield"
)

// Shapes of generated rule sets.
const (
	ShapeUniform = "uniform" // IPv4 /8-/32, IPv6 /16-/128, uniform lengths
	ShapeFeed    = "feed"    // mostly single addresses, like threat feeds
)

func generator(shape string) (func(seed uint64, n4, n6 int) []lpm.Rule, error) {
	switch shape {
	case "", ShapeUniform:
		return lpm.Generate, nil
	case ShapeFeed:
		return lpm.GenerateFeed, nil
	}
	return nil, fmt.Errorf("bench: unknown shape %q (want %s or %s)", shape, ShapeUniform, ShapeFeed)
}

// hashingFile reads a file while hashing what it reads; Stat lets the
// parser size its tables from the file size.
type hashingFile struct {
	f *os.File
	h hash.Hash
}

func (r hashingFile) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	r.h.Write(p[:n])
	return n, err
}

func (r hashingFile) Stat() (os.FileInfo, error) { return r.f.Stat() }

// applyListBundle is the agent's path from bundle bytes to the set in
// force: verify the bundle, stream the referenced list through the parser
// while hashing it, refuse it if the digest differs, apply it.
func applyListBundle(s *shield.Shield, raw []byte, keys []ed25519.PublicKey) (shield.ApplyResult, error) {
	b, err := bundle.Parse(raw, bundle.Options{Keys: keys})
	if err != nil {
		return shield.ApplyResult{}, err
	}
	sec := b.Payload.Shield
	if sec == nil || sec.ListRef == nil {
		return shield.ApplyResult{}, fmt.Errorf("bench bundle: no shield list_ref")
	}
	f, err := os.Open(sec.ListRef.URL)
	if err != nil {
		return shield.ApplyResult{}, fmt.Errorf("open list: %w", err)
	}
	defer f.Close()
	hr := hashingFile{f: f, h: sha256.New()}
	l, err := blocklist.Parse(hr)
	if err != nil {
		return shield.ApplyResult{}, fmt.Errorf("list %s: %w", sec.ListRef.URL, err)
	}
	if got := hex.EncodeToString(hr.h.Sum(nil)); got != sec.ListRef.SHA256 {
		return shield.ApplyResult{}, fmt.Errorf("%w: %s has sha256 %s, bundle says %s", bundle.ErrListDigest, sec.ListRef.URL, got, sec.ListRef.SHA256)
	}
	dry := sec.Mode == bundle.ShieldDryRun
	return s.ApplyAs(l.Rules, dry, shield.SetIDForList(sec.ListRef.SHA256, dry))
}

// writeList writes rules as a plain-text list (bare addresses for single
// hosts, as feeds do) and returns its SHA-256, plus an ipset restore file of
// its IPv4 single addresses (hash:ip) when ipsetPath is set.
func writeList(path, ipsetPath, setName string, rules []lpm.Rule) (sum string, ipsetEntries int, err error) {
	f, err := os.Create(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	var iw *bufio.Writer
	if ipsetPath != "" {
		fi, err := os.Create(ipsetPath)
		if err != nil {
			return "", 0, err
		}
		defer fi.Close()
		iw = bufio.NewWriterSize(fi, 1<<20)
		n := 0
		for _, r := range rules {
			if r.Prefix.Addr().Is4() && r.Prefix.IsSingleIP() && r.Action == lpm.Drop {
				n++
			}
		}
		fmt.Fprintf(iw, "create %s hash:ip family inet hashsize %d maxelem %d\n", setName, max(1024, n/2), max(65536, 2*n))
	}
	var buf []byte
	for _, r := range rules {
		buf = buf[:0]
		if r.Prefix.IsSingleIP() {
			buf = r.Prefix.Addr().AppendTo(buf)
			if iw != nil && r.Prefix.Addr().Is4() && r.Action == lpm.Drop {
				iw.WriteString("add " + setName + " ")
				iw.Write(buf)
				iw.WriteByte('\n')
				ipsetEntries++
			}
		} else {
			buf = r.Prefix.AppendTo(buf)
		}
		if r.Action == lpm.Allow {
			buf = append(buf, " allow"...)
		}
		buf = append(buf, '\n')
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		return "", 0, err
	}
	if iw != nil {
		if err := iw.Flush(); err != nil {
			return "", 0, err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), ipsetEntries, f.Close()
}

// peakRSS returns the process's peak resident set size (VmHWM); resetPeak
// starts a new peak from the current size.
func peakRSS() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func resetPeak() {
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// ipsetRestore times `ipset restore` of file in a private network namespace
// (sets are per namespace, so nothing on the host changes and the set goes
// with the process).
func ipsetRestore(file string) (time.Duration, error) {
	in, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	cmd := exec.Command("ipset", "restore")
	cmd.Stdin = in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("ipset restore: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return time.Since(start), nil
}

// applyBench measures the end-to-end apply of two disjoint sets of the
// same shape and size, alternating, in a Shield pinned on a private bpffs;
// then restarts (adoption of the pinned set) and ipset restore of the same
// IPv4 addresses.
func applyBench(opts Options, gen func(uint64, int, int) []lpm.Rule, res *Result) error {
	dir, err := os.MkdirTemp("", "fortress-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pub, priv, err := bundle.GenerateKey()
	if err != nil {
		return err
	}
	_, haveIpset := exec.LookPath("ipset")
	var bundles [2][]byte
	var ids [2]shield.SetID
	for i := range bundles {
		rules := gen(opts.Seed+uint64(i)*1000, opts.CIDRsV4, opts.CIDRsV6)
		list := filepath.Join(dir, fmt.Sprintf("list-%d.txt", i))
		ipsetFile := ""
		if haveIpset == nil {
			ipsetFile = filepath.Join(dir, fmt.Sprintf("ipset-%d.txt", i))
		}
		sum, n, err := writeList(list, ipsetFile, fmt.Sprintf("fortress_bench_%d", i), rules)
		if err != nil {
			return fmt.Errorf("write bench list: %w", err)
		}
		res.IpsetEntries = n
		bundles[i], err = bundle.Sign(bundle.Body{Version: uint64(i + 1), IssuedAt: time.Now(), Targets: []string{bundle.AllAgents},
			Payload: bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldEnforce, ListRef: &bundle.ListRef{URL: list, SHA256: sum}}}}, priv)
		if err != nil {
			return err
		}
		ids[i] = shield.SetIDForList(sum, false)
	}
	keys := []ed25519.PublicKey{pub}

	bpffs := filepath.Join(dir, "bpffs")
	if err := os.Mkdir(bpffs, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("bpf", bpffs, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bench bpffs: %w", err)
	}
	defer unix.Unmount(bpffs, unix.MNT_DETACH)
	cfg := shield.Config{Budget: opts.Budget, PinRoot: pins.Root(bpffs), Logger: quietLogger()}

	resetPeak()
	s, err := shield.Open(cfg)
	if err != nil {
		return err
	}
	// First apply sizes the maps; then the sets replace each other.
	var applies []float64
	last := 0
	for i := 0; i <= opts.Rounds; i++ {
		start := time.Now()
		ar, err := applyListBundle(s, bundles[i%2], keys)
		if err != nil {
			s.Close()
			return fmt.Errorf("apply set %d (round %d): %w", i%2, i, err)
		}
		if i > 0 {
			applies = append(applies, ms(time.Since(start)))
			res.SecondSetApplied = true
		}
		last = i % 2
		res.MapBytes = ar.MapBytes
	}
	res.PeakRSSBytes = peakRSS()
	res.ApplyMs = median(applies)
	c := s.Info().Capacity
	res.MapBytes64, res.MapBytes256 = c.MapBytes(64), c.MapBytes(256)
	// The agent exits without cleanup: descriptors close, pins stay.
	if err := s.Close(); err != nil {
		return err
	}
	var adopts []float64
	for i := 0; i < opts.Rounds; i++ {
		start := time.Now()
		s2, err := shield.Open(cfg)
		if err != nil {
			return fmt.Errorf("adopt: %w", err)
		}
		held := s2.Holds(ids[last])
		d := time.Since(start)
		s2.Close()
		if !held {
			return fmt.Errorf("adopt: the pinned tables do not hold the set last applied")
		}
		adopts = append(adopts, ms(d))
	}
	res.AdoptMs = median(adopts)
	if res.ApplyMs > 0 {
		res.AdoptRatio = round2(res.AdoptMs / res.ApplyMs)
	}

	if haveIpset == nil {
		var xs []float64
		for i := 0; i < opts.Rounds; i++ {
			d, err := ipsetRestore(filepath.Join(dir, fmt.Sprintf("ipset-%d.txt", i%2)))
			if err != nil {
				return err
			}
			xs = append(xs, ms(d))
		}
		res.IpsetRestoreMs = median(xs)
		if res.IpsetRestoreMs > 0 {
			res.ApplyIpsetRatio = round2(res.ApplyMs / res.IpsetRestoreMs)
		}
	}
	return nil
}

// hitContention measures the whole program on a frame that matches one
// drop rule: on one CPU alone, then on every CPU at once (one shared
// counter, atomic adds from all of them).
func hitContention(s *shield.Shield, frame []byte, rounds int) (one, all float64, cpus int, err error) {
	prog := s.Info().Program
	const repeat = 1 << 20
	cpus = runtime.NumCPU()
	var xs, ys []float64
	for r := 0; r < rounds; r++ {
		_, d, err := prog.Benchmark(frame, repeat, nil)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("benchmark rule hit: %w", err)
		}
		xs = append(xs, float64(d.Nanoseconds()))
		per := make([]float64, cpus)
		errs := make([]error, cpus)
		var wg sync.WaitGroup
		for cpu := 0; cpu < cpus; cpu++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				var set unix.CPUSet
				set.Set(cpu)
				if err := unix.SchedSetaffinity(0, &set); err != nil {
					errs[cpu] = err
					return
				}
				_, d, err := prog.Benchmark(frame, repeat, nil)
				per[cpu], errs[cpu] = float64(d.Nanoseconds()), err
			}()
		}
		wg.Wait()
		for _, e := range errs {
			if e != nil {
				return 0, 0, 0, fmt.Errorf("benchmark rule hit on all cpus: %w", e)
			}
		}
		ys = append(ys, median(per))
	}
	return median(xs), median(ys), cpus, nil
}
