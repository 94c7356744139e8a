package shield

import (
	"testing"
)

// TestBenchSmall runs the benchmark machinery on a small set: the kernel
// verdicts must equal the reference for every checked address, and the
// figures must be present.
func TestBenchSmall(t *testing.T) {
	newShield(t, Config{}) // root and feature checks
	r, err := Bench(BenchOptions{CIDRsV4: 5000, CIDRsV6: 2000, Verify: 1 << 16, Rounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Checked < 2<<16 || r.Mismatches != 0 {
		t.Fatalf("checked %d addresses, %d mismatches", r.Checked, r.Mismatches)
	}
	if r.TrieV4Ns <= 0 || r.ShieldV4Ns <= 0 || r.ProgramNs <= 0 || r.MapBytes == 0 {
		t.Fatalf("implausible figures: %+v", r)
	}
	t.Logf("%+v", r)
}
