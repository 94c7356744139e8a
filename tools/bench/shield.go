package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/cilium/ebpf/rlimit"

	"github.com/carverauto/fortress/internal/shield"
	"github.com/carverauto/fortress/internal/shield/bench"
)

func benchShield(_ context.Context, args []string, out io.Writer) (int, error) {
	fs := newFlagSet("shield")
	var o bench.Options
	fs.StringVar(&o.Shape, "shape", bench.ShapeUniform, "rule set shape: uniform (IPv4 /8-/32, IPv6 /16-/128) or feed (mostly single addresses)")
	fs.IntVar(&o.CIDRsV4, "cidrs-v4", 100000, "number of IPv4 CIDRs")
	fs.IntVar(&o.CIDRsV6, "cidrs-v6", 100000, "number of IPv6 CIDRs")
	fs.IntVar(&o.Addrs, "addrs", 1<<16, "distinct random addresses per family for timing (power of two >= 65536)")
	fs.IntVar(&o.Verify, "verify", 1<<20, "random addresses per family checked against the reference LPM")
	fs.IntVar(&o.Rounds, "rounds", 5, "repetitions per measurement (medians are reported)")
	budget := fs.Uint64("budget-mib", shield.DefaultBudget>>20, "map memory budget in MiB")
	seed := fs.Uint64("seed", 1, "rule and address generator seed")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := fs.Parse(args); err != nil {
		return 2, usageError{err.Error()}
	}
	o.Budget, o.Seed = *budget<<20, *seed
	if err := rlimit.RemoveMemlock(); err != nil {
		return 1, fmt.Errorf("remove memlock limit: %w", err)
	}
	r, err := bench.Run(o)
	if err != nil {
		return 1, err
	}
	if *asJSON {
		return 0, json.NewEncoder(out).Encode(r)
	}
	fmt.Fprintf(out, "rules: %d IPv4 + %d IPv6, %s shape (%d + %d ranges)\n", r.CIDRsV4, r.CIDRsV6, r.Shape, r.V4Ranges, r.V6Ranges)
	fmt.Fprintf(out, "map memory         %.1f MiB here, %.1f MiB on 64 CPUs, %.1f MiB on 256 CPUs\n", float64(r.MapBytes)/(1<<20), float64(r.MapBytes64)/(1<<20), float64(r.MapBytes256)/(1<<20))
	fmt.Fprintf(out, "empty program      %6.2f ns/run\n", r.EmptyNs)
	fmt.Fprintf(out, "LPM_TRIE  IPv4     %6.2f ns/lookup   IPv6 %6.2f ns/lookup\n", r.TrieV4Ns, r.TrieV6Ns)
	fmt.Fprintf(out, "Shield    IPv4     %6.2f ns/lookup   IPv6 %6.2f ns/lookup\n", r.ShieldV4Ns, r.ShieldV6Ns)
	fmt.Fprintf(out, "speed-up  IPv4     %6.2fx             IPv6 %6.2fx\n", r.RatioV4, r.RatioV6)
	fmt.Fprintf(out, "whole program      %6.2f ns/packet\n", r.ProgramNs)
	fmt.Fprintf(out, "build+swap         %6.2f ms (compile %.2f ms)\n", r.SwapMs, r.CompileMs)
	fmt.Fprintf(out, "apply (bundle to set in force) %.0f ms, two disjoint sets in turn: %v; peak RSS %.0f MiB\n", r.ApplyMs, r.SecondSetApplied, float64(r.PeakRSSBytes)/(1<<20))
	fmt.Fprintf(out, "adopt after restart %.1f ms (%.3f of an apply)\n", r.AdoptMs, r.AdoptRatio)
	if r.IpsetRestoreMs > 0 {
		fmt.Fprintf(out, "ipset restore      %.0f ms for %d addresses (apply / ipset %.2f)\n", r.IpsetRestoreMs, r.IpsetEntries, r.ApplyIpsetRatio)
	}
	fmt.Fprintf(out, "rule hit           %.2f ns/packet on one CPU, %.2f ns/packet with %d CPUs on one rule\n", r.RuleHitNs, r.RuleHitAllCPUsNs, r.HitCPUs)
	fmt.Fprintf(out, "checked %d addresses against the reference LPM: %d mismatches\n", r.Checked, r.Mismatches)
	if r.Mismatches != 0 {
		return 1, fmt.Errorf("%d mismatches against the reference LPM", r.Mismatches)
	}
	return 0, nil
}
