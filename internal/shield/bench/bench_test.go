package bench

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/carverauto/fortress/internal/shield"
	"github.com/carverauto/fortress/internal/testutil"
)

// requireShield skips where Shield cannot load (no root, no BPF) the way
// package shield's tests do.
func requireShield(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	s, err := shield.New(shield.Config{})
	if errors.Is(err, ebpf.ErrNotSupported) {
		testutil.MissingFeature(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// TestBenchSmall runs the benchmark machinery on a small set: the kernel
// verdicts must equal the reference for every checked address, and the
// figures must be present.
func TestBenchSmall(t *testing.T) {
	requireShield(t)
	for _, shape := range []string{ShapeUniform, ShapeFeed} {
		r, err := Run(Options{Shape: shape, CIDRsV4: 5000, CIDRsV6: 2000, Verify: 1 << 16, Rounds: 1})
		if err != nil {
			t.Fatal(err)
		}
		if r.Checked < 2<<16 || r.Mismatches != 0 {
			t.Fatalf("%s: checked %d addresses, %d mismatches", shape, r.Checked, r.Mismatches)
		}
		if r.TrieV4Ns <= 0 || r.ShieldV4Ns <= 0 || r.ProgramNs <= 0 || r.MapBytes == 0 {
			t.Fatalf("%s: implausible figures: %+v", shape, r)
		}
		if r.ApplyMs <= 0 || !r.SecondSetApplied || r.AdoptMs <= 0 || r.PeakRSSBytes == 0 || r.RuleHitNs <= 0 ||
			r.RuleHitAllCPUsNs <= 0 || r.MapBytes64 < r.MapBytes || r.MapBytes256 < r.MapBytes64 {
			t.Fatalf("%s: implausible apply figures: %+v", shape, r)
		}
		t.Logf("%+v", r)
	}
}
