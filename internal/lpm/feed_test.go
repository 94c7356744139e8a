package lpm

import (
	"testing"
)

// TestCompileRulesFeed: a feed-shaped set compiled from rules with verdicts
// that only name a prefix length and kind (so adjacent ranges merge) looks
// up exactly as the reference LPM, and its digest ignores rule order.
func TestCompileRulesFeed(t *testing.T) {
	rules := GenerateFeed(3, 60000, 6000)
	verdict := func(r Rule) uint32 { return 1<<26 | uint32(r.Flags())<<8 | uint32(r.Prefix.Bits()) }
	tab, err := CompileRules(rules, verdict)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.V4Blocks) != cap(tab.V4Blocks) {
		t.Errorf("IPv4 blocks sized %d for %d", cap(tab.V4Blocks), len(tab.V4Blocks))
	}
	if tab.Prefixes4 != 60000 || tab.Prefixes6 != 6000 {
		t.Errorf("prefix counts %d + %d", tab.Prefixes4, tab.Prefixes6)
	}
	ref := NewReference(rules)
	addrs := append(RandomAddrs(4, rules, 4, 100000), RandomAddrs(5, rules, 6, 100000)...)
	addrs = append(addrs, Edges(rules)...)
	for _, a := range addrs {
		want := uint32(0)
		if i, ok := ref.Lookup(a); ok {
			want = verdict(rules[i])
		}
		if got := tab.Lookup(a); got != want {
			t.Fatalf("lookup %s: verdict %#x, reference %#x", a, got, want)
		}
	}
	rev := make([]Rule, len(rules))
	for i, r := range rules {
		rev[len(rules)-1-i] = r
	}
	tab2, err := CompileRules(rev, verdict)
	if err != nil {
		t.Fatal(err)
	}
	if tab2.Digest != tab.Digest {
		t.Error("digest depends on rule order")
	}
	dup := append(rules[:10:10], rules[3])
	if _, err := CompileRules(dup, verdict); err == nil {
		t.Error("duplicate prefix accepted")
	}
}
