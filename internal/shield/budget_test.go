package shield

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/carverauto/fortress/internal/lpm"
)

func TestDryRunSamples(t *testing.T) {
	s := newShield(t, Config{SampleGap: time.Nanosecond})
	if _, err := s.Apply([]lpm.Rule{rule("10.0.0.0/8", lpm.Drop, true), rule("11.0.0.0/8", lpm.Drop, false)}, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.Counters().Samples(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("10.1.2.3")
	if got := run(t, s, Frame(src, dst)); got != xdpPass {
		t.Fatalf("log-only rule: verdict %d, want pass", got)
	}
	run(t, s, Frame(netip.MustParseAddr("11.1.1.1"), dst)) // enforced: no sample
	select {
	case smp := <-ch:
		if smp.Source != src || smp.Rule.Prefix.String() != "10.0.0.0/8" || !smp.Rule.LogOnly || smp.Length == 0 {
			t.Fatalf("sample %+v", smp)
		}
		if d := time.Since(smp.Time); d < 0 || d > time.Minute {
			t.Fatalf("sample time %v is %v from now", smp.Time, d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no dry-run sample arrived")
	}
	select {
	case smp := <-ch:
		t.Fatalf("an enforced drop produced a sample: %+v", smp)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestBudgetRefusesAndKeepsRunningSet(t *testing.T) {
	s := newShield(t, Config{Budget: 8 << 20, TrackedRules: 1024})
	keep := []lpm.Rule{rule("10.0.0.0/8", lpm.Drop, false)}
	if _, err := s.Apply(keep, false); err != nil {
		t.Fatal(err)
	}
	_, err := s.Apply(lpm.Generate(5, 300000, 0), false)
	var be *BudgetError
	if !errors.As(err, &be) || be.Need <= be.Budget || be.Budget != 8<<20 {
		t.Fatalf("error %v, want a BudgetError over 8 MiB", err)
	}
	if got := run(t, s, Frame(netip.MustParseAddr("10.0.0.1"), dst)); got != xdpDrop {
		t.Fatal("running set lost after a refused policy")
	}
	if got := run(t, s, Frame(netip.MustParseAddr("1.2.3.4"), dst)); got != xdpPass {
		t.Fatal("refused policy partly applied")
	}
}

// TestMillionIPv4WithinDefaultBudget loads 1,000,000 IPv4 CIDRs under the
// default 64 MiB budget and spot-checks verdicts.
func TestMillionIPv4WithinDefaultBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: builds a 1,000,000-rule set")
	}
	bigSet(t, Config{}, 1000000, 0)
}

// TestMillionIPv4AndIPv6 loads 1,000,000 IPv4 plus 100,000 IPv6 CIDRs
// under the default budget, then replaces them with another such set.
func TestMillionIPv4AndIPv6(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: builds a 1,100,000-rule set")
	}
	bigSet(t, Config{}, 1000000, 100000)
}

func bigSet(t *testing.T, cfg Config, n4, n6 int) {
	s := newShield(t, cfg)
	if _, err := s.Apply(lpm.Generate(10, n4, n6), false); err != nil {
		t.Fatal(err)
	}
	rules := lpm.Generate(11, n4, n6)
	res, err := s.Apply(rules, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.MapBytes > s.cfg.Budget {
		t.Fatalf("map memory %d over the budget %d", res.MapBytes, s.cfg.Budget)
	}
	t.Logf("%d IPv4 + %d IPv6: %d + %d ranges, map memory %.1f MiB, compile %v, swap %v", n4, n6, res.V4Ranges, res.V6Ranges, float64(res.MapBytes)/(1<<20), res.Compile, res.Swap)
	ref := lpm.NewReference(rules)
	addrs := lpm.RandomAddrs(12, rules, 4, 2000)
	if n6 > 0 {
		addrs = append(addrs, lpm.RandomAddrs(13, rules, 6, 2000)...)
	}
	for _, a := range addrs {
		want := uint32(xdpPass)
		if i, ok := ref.Lookup(a); ok && rules[i].Action == lpm.Drop {
			want = xdpDrop
		}
		d := dst
		if a.Is6() {
			d = d6
		}
		if got := run(t, s, Frame(a, d)); got != want {
			t.Fatalf("%s: verdict %d, want %d", a, got, want)
		}
	}
}
