package shield

import (
	"net/netip"
	"runtime"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/lpm"
)

// TestMemoryFormula: the worst case of any set of 1,000,000 IPv4 and
// 100,000 IPv6 prefixes, with both generations and the rule counters, fits
// the default budget on this machine's CPU count and on 64 and 256 CPUs,
// and the CPU count moves it by a few hundred bytes per CPU only.
func TestMemoryFormula(t *testing.T) {
	c := WorstCase(1000000, 100000, DefaultTrackedRules)
	real := runtime.NumCPU()
	if n, err := ebpf.PossibleCPU(); err == nil {
		real = n
	}
	for _, ncpu := range []int{real, 64, 256} {
		b := c.MapBytes(ncpu)
		t.Logf("%d CPUs: worst case %d bytes (%.1f MiB) for %d IPv4 blocks, %d IPv6 ranges, %d tracked rules",
			ncpu, b, float64(b)/(1<<20), c.V4Blocks, c.V6Ranges, c.Tracked)
		if b > DefaultBudget {
			t.Errorf("%d CPUs: %d bytes, over the default budget of %d", ncpu, b, DefaultBudget)
		}
	}
	if d := c.MapBytes(256) - c.MapBytes(1); d > 255*256 {
		t.Errorf("256 CPUs cost %d bytes more than one: counters grow with the CPU count", d)
	}
	// Real feed-shaped sets never need more than the worst case, and a
	// swap between two of them needs no larger maps than the worst case.
	for seed := uint64(1); seed <= 2; seed++ {
		rules := lpm.GenerateFeed(seed, 1000000, 100000)
		tab, err := lpm.CompileRules(rules, verdictOf)
		if err != nil {
			t.Fatal(err)
		}
		_, r6 := tab.Ranges()
		if !c.Fits(len(tab.V4Blocks), r6) {
			t.Errorf("feed set %d: %d IPv4 blocks, %d IPv6 ranges exceed the worst case %+v", seed, len(tab.V4Blocks), r6, c)
		}
	}
}

// TestRuleCounters: counts are exact per rule (drop, log-only and allow
// kept apart), shared by all CPUs, carried across swaps that keep the rule,
// dropped with rules that leave, and a full table counts in Untracked
// without losing a rule's exact count.
func TestRuleCounters(t *testing.T) {
	s := newShield(t, Config{TrackedRules: 3})
	set := []lpm.Rule{rule("10.0.0.0/8", lpm.Drop, false), rule("10.1.0.0/16", lpm.Allow, false),
		rule("11.0.0.0/8", lpm.Drop, true), rule("12.0.0.0/8", lpm.Drop, false), rule("2001:db8::/32", lpm.Drop, false)}
	if _, err := s.Apply(set, false); err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	// Two CPUs at once on one rule: atomic adds lose nothing.
	var wg sync.WaitGroup
	for cpu := 0; cpu < min(runtime.NumCPU(), 4); cpu++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var cs unix.CPUSet
			cs.Set(cpu)
			_ = unix.SchedSetaffinity(0, &cs)
			if _, _, err := s.Info().Program.Benchmark(Frame(a("10.2.3.4"), dst), 1000, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	ncpu := min(runtime.NumCPU(), 4)
	run(t, s, Frame(a("10.1.2.3"), dst))
	run(t, s, Frame(a("11.1.2.3"), dst))
	run(t, s, Frame(a("12.1.2.3"), dst)) // a fourth rule: the table holds three
	m := countsByRule(t, s)
	if m["10.0.0.0/8"].Packets != uint64(1000*ncpu) || m["10.1.0.0/16"].Packets != 1 || m["11.0.0.0/8"].Packets != 1 {
		t.Fatalf("counts %+v, want %d, 1, 1", m, 1000*ncpu)
	}
	if m["12.0.0.0/8"].Packets != 0 {
		t.Fatalf("a rule beyond TrackedRules has counts: %+v", m["12.0.0.0/8"])
	}
	st, err := s.Counters().Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Untracked != 1 || st.Drop != uint64(1000*ncpu)+1 {
		t.Fatalf("stats %+v: want 1 untracked and every drop counted", st)
	}
	// Keep 10/8, drop 11/8 and the allow rule: their counters go, and the
	// freed entries take new rules.
	if _, err := s.Apply([]lpm.Rule{set[0], set[3], set[4]}, false); err != nil {
		t.Fatal(err)
	}
	run(t, s, Frame(a("12.1.2.3"), dst))
	run(t, s, Frame(a("2001:db8::1"), d6))
	act, err := s.Counters().ActiveRuleStats()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, r := range act {
		got[r.Rule.String()] = r.Packets
	}
	want := map[string]uint64{"10.0.0.0/8 drop": uint64(1000 * ncpu), "12.0.0.0/8 drop": 1, "2001:db8::/32 drop": 1}
	if len(got) != len(want) {
		t.Fatalf("active rules %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("active rules %v, want %v", got, want)
		}
	}
	// 11/8 comes back: it starts from zero.
	if _, err := s.Apply(set, false); err != nil {
		t.Fatal(err)
	}
	if c := countsByRule(t, s)["11.0.0.0/8"]; c.Packets != 0 {
		t.Fatalf("a rule that left and came back kept its old count %d", c.Packets)
	}
}

// TestMapBytesMatchesKernel: the memory formula agrees with what the
// kernel charges for Shield's maps (memlock in fdinfo), within 1%.
func TestMapBytesMatchesKernel(t *testing.T) {
	s := newShield(t, Config{})
	n4, n6 := 1000000, 100000
	if testing.Short() {
		n4, n6 = 20000, 2000
	}
	if _, err := s.Apply(lpm.GenerateFeed(1, n4, n6), false); err != nil {
		t.Fatal(err)
	}
	var kernel uint64
	for _, name := range append(tableMaps, "sample_last") {
		m := objectMap(s.objs, name)
		if name == "sample_last" {
			m = s.objs.SampleLast
		}
		info, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		ml, ok := info.Memlock()
		if !ok {
			t.Skipf("the kernel does not report memlock for %s", name)
		}
		kernel += ml
	}
	formula := s.Info().MapBytes
	t.Logf("kernel %d bytes, formula %d bytes for %+v", kernel, formula, s.Info().Capacity)
	if formula*100 < kernel*99 || formula*100 > kernel*101 {
		t.Fatalf("formula %d bytes, kernel %d: more than 1%% apart", formula, kernel)
	}
}
