package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/carverauto/fortress/internal/bytecode"
	"github.com/carverauto/fortress/internal/lpm"
	"github.com/carverauto/fortress/internal/shield"
)

// benchBatch matches BENCH_BATCH in bpf/shield/bench.c.
const benchBatch = 16

// Allow is the helper allowlist of the embedded benchmark object.
var Allow = func() bytecode.Allowlist {
	a := bytecode.Allowlist{}
	for _, p := range []string{"bench_empty", "bench_fetch_v4", "bench_trie_v4", "bench_shield_v4",
		"bench_fetch_v6", "bench_trie_v6", "bench_shield_v6", "verify_v4", "verify_v6"} {
		a[p] = bytecode.ProgramAllow{Helpers: []asm.BuiltinFunc{asm.FnMapLookupElem}}
	}
	return a
}()

// Object describes the embedded benchmark object for the allowlist check.
var Object = bytecode.Embedded{Name: "shield-bench", Load: loadBench, Allow: Allow}

// Options configures Bench.
type Options struct {
	CIDRsV4, CIDRsV6 int
	// Shape is ShapeUniform (the default) or ShapeFeed.
	Shape string
	// Addrs is the number of distinct random addresses per family for the
	// timing runs (a power of two, at least 65536).
	Addrs int
	// Verify is the number of random addresses per family checked against
	// the reference LPM, in addition to every rule's edges.
	Verify int
	// Rounds is how many times each measurement is repeated; medians are
	// reported.
	Rounds int
	Seed   uint64
	Budget uint64
}

// Result is the output of `bench shield --json` (tools/bench). All
// per-address figures are medians over Rounds, in nanoseconds.
type Result struct {
	Shape      string  `json:"shape"`
	CIDRsV4    int     `json:"cidrs_v4"`
	CIDRsV6    int     `json:"cidrs_v6"`
	Addrs      int     `json:"addrs"`
	Rounds     int     `json:"rounds"`
	EmptyNs    float64 `json:"empty_ns"`
	FetchV4Ns  float64 `json:"fetch_v4_ns"`
	FetchV6Ns  float64 `json:"fetch_v6_ns"`
	TrieV4Ns   float64 `json:"trie_v4_ns"`
	TrieV6Ns   float64 `json:"trie_v6_ns"`
	ShieldV4Ns float64 `json:"shield_v4_ns"`
	ShieldV6Ns float64 `json:"shield_v6_ns"`
	RatioV4    float64 `json:"ratio_v4"`
	RatioV6    float64 `json:"ratio_v6"`
	ProgramNs  float64 `json:"program_ns"`
	MapBytes   uint64  `json:"map_bytes"`
	TrieBytes  uint64  `json:"trie_value_bytes"`
	SwapMs     float64 `json:"swap_ms"`
	CompileMs  float64 `json:"compile_ms"`
	V4Ranges   int     `json:"v4_ranges"`
	V6Ranges   int     `json:"v6_ranges"`
	Checked    int     `json:"checked"`
	Mismatches int     `json:"mismatches"`

	// End to end: a signed bundle whose list_ref names a list file,
	// verified, the list streamed through the parser and checked against
	// its digest, compiled and swapped in. Two disjoint sets of the same
	// shape and size replace each other; medians over Rounds.
	ApplyMs          float64 `json:"apply_ms"`
	SecondSetApplied bool    `json:"second_set_applied"`
	// Peak RSS of the process from just before the first apply to the end
	// of the last (VmHWM).
	PeakRSSBytes uint64 `json:"peak_rss_bytes"`
	// Restart: open the pinned Shield and find the last set in force.
	AdoptMs    float64 `json:"adopt_ms"`
	AdoptRatio float64 `json:"adopt_ms_per_apply_ms"`
	// Map memory of that Shield for 64 and 256 CPUs (map_bytes is for the
	// CPUs of this machine).
	MapBytes64  uint64 `json:"map_bytes_64cpu"`
	MapBytes256 uint64 `json:"map_bytes_256cpu"`
	// ipset restore (hash:ip) of the same set's single IPv4 drop addresses,
	// in a private network namespace; 0 when ipset is not installed.
	IpsetEntries    int     `json:"ipset_entries"`
	IpsetRestoreMs  float64 `json:"ipset_restore_ms"`
	ApplyIpsetRatio float64 `json:"apply_ms_per_ipset_restore_ms"`
	// The whole program on a packet that matches one drop rule: on one CPU,
	// and per CPU while every CPU hits that rule at once (one shared
	// counter).
	RuleHitNs        float64 `json:"rule_hit_ns"`
	RuleHitAllCPUsNs float64 `json:"rule_hit_all_cpus_ns"`
	HitCPUs          int     `json:"rule_hit_cpus"`
}

// Run measures Shield against the kernel LPM trie on the same rule set.
//
// Method: both structures are searched by XDP programs run through
// BPF_PROG_TEST_RUN. Each run of a bench program looks up the next 16 of
// Addrs distinct addresses (half inside rules, half uniform), so caches see
// the real access pattern rather than one repeated packet. A companion
// program does the same loop but only fetches each address; the per-address
// cost of a lookup is (run time - fetch-only run time) / 16. empty_ns is an
// empty XDP program per run; program_ns is the whole Shield program on one
// UDP frame. Mismatches compares the kernel's Shield verdicts with the
// plain Go reference LPM for Verify random addresses per family plus the
// first, last and neighbouring addresses of every rule.
func Run(opts Options) (*Result, error) {
	if opts.Addrs == 0 {
		opts.Addrs = 1 << 16
	}
	if opts.Addrs&(opts.Addrs-1) != 0 || opts.Addrs < 1<<16 {
		return nil, fmt.Errorf("bench: addrs %d must be a power of two >= 65536", opts.Addrs)
	}
	if opts.Verify == 0 {
		opts.Verify = 1 << 20
	}
	if opts.Rounds == 0 {
		opts.Rounds = 5
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.Shape == "" {
		opts.Shape = ShapeUniform
	}
	gen, err := generator(opts.Shape)
	if err != nil {
		return nil, err
	}
	res := &Result{Shape: opts.Shape, CIDRsV4: opts.CIDRsV4, CIDRsV6: opts.CIDRsV6, Addrs: opts.Addrs, Rounds: opts.Rounds}

	// First, while nothing else is in memory: end-to-end applies, peak
	// RSS, adoption, ipset.
	if err := applyBench(opts, gen, res); err != nil {
		return nil, err
	}
	applyMapBytes := res.MapBytes

	rules := gen(opts.Seed, opts.CIDRsV4, opts.CIDRsV6)
	s, err := shield.New(shield.Config{Budget: opts.Budget, Logger: quietLogger()})
	if err != nil {
		return nil, err
	}
	defer s.Close()

	// Build and swap the whole set; the first apply also sizes the maps, so
	// time the following ones, alternating generations.
	if _, err := s.Apply(rules, false); err != nil {
		return nil, err
	}
	var swaps, compiles []float64
	for i := 0; i < 3; i++ {
		ar, err := s.Apply(rules, false)
		if err != nil {
			return nil, err
		}
		compiles = append(compiles, ms(ar.Compile))
		swaps = append(swaps, ms(ar.Compile+ar.Swap))
		res.V4Ranges, res.V6Ranges = ar.V4Ranges, ar.V6Ranges
	}
	res.SwapMs, res.CompileMs = median(swaps), median(compiles)
	res.MapBytes = max(s.Info().MapBytes, applyMapBytes)

	b, err := loadRig(s, rules, opts)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	res.TrieBytes = uint64(len(rules)) * 4

	v4 := lpm.RandomAddrs(opts.Seed+1, rules, 4, opts.Verify)
	v6 := lpm.RandomAddrs(opts.Seed+2, rules, 6, opts.Verify)
	for _, e := range lpm.Edges(rules) {
		if e.Is4() {
			v4 = append(v4, e)
		} else {
			v6 = append(v6, e)
		}
	}
	if err := b.fill(v4, v6); err != nil {
		return nil, err
	}

	frame := shield.Frame(v4[0], netip.MustParseAddr("192.0.2.1"))
	measure := func(p *ebpf.Program, perRun int) (float64, error) {
		var xs []float64
		for r := 0; r < opts.Rounds; r++ {
			repeat := opts.Addrs / benchBatch * 8
			if perRun == 1 {
				repeat = 1 << 20
			}
			_, d, err := p.Benchmark(frame, repeat, nil)
			if err != nil {
				return 0, fmt.Errorf("benchmark %s: %w", p, err)
			}
			xs = append(xs, float64(d.Nanoseconds()))
		}
		return median(xs), nil
	}
	type m struct {
		p   *ebpf.Program
		out *float64
		per int
	}
	var fetch4, fetch6, trie4, trie6, sh4, sh6 float64
	for _, x := range []m{
		{b.objs.BenchEmpty, &res.EmptyNs, 1},
		{s.Info().Program, &res.ProgramNs, 1},
		{b.objs.BenchFetchV4, &fetch4, benchBatch},
		{b.objs.BenchTrieV4, &trie4, benchBatch},
		{b.objs.BenchShieldV4, &sh4, benchBatch},
		{b.objs.BenchFetchV6, &fetch6, benchBatch},
		{b.objs.BenchTrieV6, &trie6, benchBatch},
		{b.objs.BenchShieldV6, &sh6, benchBatch},
	} {
		if *x.out, err = measure(x.p, x.per); err != nil {
			return nil, err
		}
	}
	per := func(run, base float64) float64 { return round2((run - base) / benchBatch) }
	res.FetchV4Ns = per(fetch4, res.EmptyNs)
	res.FetchV6Ns = per(fetch6, res.EmptyNs)
	res.TrieV4Ns, res.ShieldV4Ns = per(trie4, fetch4), per(sh4, fetch4)
	res.TrieV6Ns, res.ShieldV6Ns = per(trie6, fetch6), per(sh6, fetch6)
	if res.ShieldV4Ns > 0 {
		res.RatioV4 = round2(res.TrieV4Ns / res.ShieldV4Ns)
	}
	if res.ShieldV6Ns > 0 {
		res.RatioV6 = round2(res.TrieV6Ns / res.ShieldV6Ns)
	}

	for _, r := range rules {
		if r.Action == lpm.Drop && !r.LogOnly && r.Prefix.Addr().Is4() {
			one, all, cpus, err := hitContention(s, shield.Frame(r.Prefix.Addr(), netip.MustParseAddr("192.0.2.1")), opts.Rounds)
			if err != nil {
				return nil, err
			}
			res.RuleHitNs, res.RuleHitAllCPUsNs, res.HitCPUs = round2(one), round2(all), cpus
			break
		}
	}

	checked, bad, err := b.verify(rules, v4, v6)
	if err != nil {
		return nil, err
	}
	res.Checked, res.Mismatches = checked, bad
	return res, nil
}

type benchRig struct {
	s    *shield.Shield
	objs benchObjects
	n4   int
	n6   int
}

func (b *benchRig) Close() error { return b.objs.Close() }

func loadRig(s *shield.Shield, rules []lpm.Rule, opts Options) (*benchRig, error) {
	spec, err := loadBench()
	if err != nil {
		return nil, fmt.Errorf("load embedded bench: %w", err)
	}
	if _, err := bytecode.Check("shield-bench", spec, Allow); err != nil {
		return nil, err
	}
	// The address arrays hold the verify set; the timing runs use the
	// first Addrs entries, which are random addresses.
	n := opts.Verify + 4*len(rules) + 1
	for _, name := range []string{"addrs_v4", "addrs_v6", "results"} {
		spec.Maps[name].MaxEntries = uint32(max(n, opts.Addrs))
	}
	n4, n6 := 1, 1
	for _, r := range rules {
		if r.Prefix.Addr().Is4() {
			n4++
		} else {
			n6++
		}
	}
	spec.Maps["trie_v4"].MaxEntries = uint32(n4)
	spec.Maps["trie_v6"].MaxEntries = uint32(n6)

	b := &benchRig{s: s}
	err = s.WithTables(func(t shield.Tables) error {
		for name, m := range t.Maps {
			spec.Maps[name].MaxEntries = m.MaxEntries()
		}
		for name, v := range map[string]uint32{"addr_mask": uint32(opts.Addrs - 1), "bench_gen": t.Gen,
			"v4_gen_stride": t.V4Stride, "v6_gen_stride": t.V6Stride} {
			if err := spec.Variables[name].Set(v); err != nil {
				return fmt.Errorf("set %s: %w", name, err)
			}
		}
		if err := spec.LoadAndAssign(&b.objs, &ebpf.CollectionOptions{MapReplacements: t.Maps}); err != nil {
			return fmt.Errorf("load bench: %w", err)
		}
		if err := b.fillTries(rules); err != nil {
			b.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

type trieV4Key struct {
	Prefixlen uint32
	Addr      [4]byte
}

type trieV6Key struct {
	Prefixlen uint32
	Addr      [16]byte
}

// fillTries loads the same rules into the kernel LPM tries, with the rule
// index + 1 as value.
func (b *benchRig) fillTries(rules []lpm.Rule) error {
	var k4 []trieV4Key
	var v4 []uint32
	var k6 []trieV6Key
	var v6 []uint32
	for i, r := range rules {
		p := r.Prefix.Masked()
		if p.Addr().Is4() {
			k4 = append(k4, trieV4Key{uint32(p.Bits()), p.Addr().As4()})
			v4 = append(v4, uint32(i+1))
		} else {
			k6 = append(k6, trieV6Key{uint32(p.Bits()), p.Addr().As16()})
			v6 = append(v6, uint32(i+1))
		}
	}
	if err := putAll(b.objs.TrieV4, k4, v4); err != nil {
		return fmt.Errorf("fill ipv4 trie: %w", err)
	}
	if err := putAll(b.objs.TrieV6, k6, v6); err != nil {
		return fmt.Errorf("fill ipv6 trie: %w", err)
	}
	return nil
}

func putAll[K any](m *ebpf.Map, keys []K, vals []uint32) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := m.BatchUpdate(keys, vals, nil); err == nil {
		return nil
	} else if !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	for i := range keys {
		if err := m.Put(keys[i], vals[i]); err != nil {
			return err
		}
	}
	return nil
}

func (b *benchRig) fill(v4, v6 []netip.Addr) error {
	a4 := make([]uint64, len(v4))
	for i, a := range v4 {
		x := a.As4()
		a4[i] = uint64(binary.NativeEndian.Uint32(x[:]))
	}
	a6 := make([]benchShieldKey128, len(v6))
	for i, a := range v6 {
		x := a.As16()
		a6[i] = benchShieldKey128{Hi: binary.BigEndian.Uint64(x[:8]), Lo: binary.BigEndian.Uint64(x[8:])}
	}
	b.n4, b.n6 = len(v4), len(v6)
	for _, w := range []struct {
		m *ebpf.Map
		b []byte
	}{{b.objs.AddrsV4, asBytes(a4)}, {b.objs.AddrsV6, asBytes(a6)}} {
		mem, err := w.m.Memory()
		if err != nil {
			return fmt.Errorf("bench addresses: %w", err)
		}
		if _, err := mem.WriteAt(w.b, 0); err != nil {
			return fmt.Errorf("bench addresses: %w", err)
		}
	}
	return nil
}

// verify runs every address through the kernel lookup and compares the
// verdict's rule with the reference LPM's.
func (b *benchRig) verify(rules []lpm.Rule, v4, v6 []netip.Addr) (checked, bad int, err error) {
	ref := lpm.NewReference(rules)
	results := make([]uint64, max(len(v4), len(v6)))
	mem, err := b.objs.Results.Memory()
	if err != nil {
		return 0, 0, fmt.Errorf("bench results: %w", err)
	}
	for _, fam := range []struct {
		p     *ebpf.Program
		addrs []netip.Addr
	}{{b.objs.VerifyV4, v4}, {b.objs.VerifyV6, v6}} {
		pkt := make([]byte, 64)
		for base := 0; base < len(fam.addrs); base += benchBatch {
			binary.NativeEndian.PutUint32(pkt, uint32(base))
			if _, err := fam.p.Run(&ebpf.RunOptions{Data: pkt}); err != nil {
				return 0, 0, fmt.Errorf("verify run: %w", err)
			}
		}
		out := results[:len(fam.addrs)]
		if _, err := mem.ReadAt(asBytes(out), 0); err != nil {
			return 0, 0, fmt.Errorf("bench results: %w", err)
		}
		for i, a := range fam.addrs {
			var want lpm.Rule
			if idx, ok := ref.Lookup(a); ok {
				want = rules[idx]
				want.Prefix = want.Prefix.Masked()
			}
			got, _ := shield.RuleOf(uint32(out[i]), a)
			checked++
			if got != want {
				bad++
			}
		}
	}
	return checked, bad, nil
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func ms(d time.Duration) float64 { return round2(float64(d.Microseconds()) / 1000) }

func round2(x float64) float64 { return float64(int64(x*100+0.5)) / 100 }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func asBytes[T any](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	var z T
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(z)))
}
