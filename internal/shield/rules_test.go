package shield

import (
	"net/netip"
	"testing"

	"github.com/carverauto/fortress/internal/lpm"
)

func TestRuleKeyRoundTrip(t *testing.T) {
	for _, c := range []string{"0.0.0.0/0", "1.2.3.4/32", "::/0", "::ffff:1.2.3.4/128", "2001:db8::1/128", "10.0.0.0/8", "2001:db8:8000::/33", "2001:db8::8000:0:0:0/65"} {
		for _, r := range []lpm.Rule{{Prefix: netip.MustParsePrefix(c)}, {Prefix: netip.MustParsePrefix(c), Action: lpm.Allow}, {Prefix: netip.MustParsePrefix(c), LogOnly: true}} {
			if got, ok := keyOf(r).rule(); !ok || got != r {
				t.Errorf("round trip of %v gave %v (%v)", r, got, ok)
			}
		}
	}
	if keyOf(lpm.Rule{Prefix: netip.MustParsePrefix("1.2.3.4/32")}) == keyOf(lpm.Rule{Prefix: netip.MustParsePrefix("::ffff:1.2.3.4/128")}) {
		t.Fatal("IPv4 and IPv4-mapped IPv6 prefixes share a key")
	}
	if keyOf(lpm.Rule{Prefix: netip.MustParsePrefix("10.0.0.0/8")}) == keyOf(lpm.Rule{Prefix: netip.MustParsePrefix("10.0.0.0/8"), LogOnly: true}) {
		t.Fatal("a drop rule and its log-only twin share counters: drops and would-drops would mix")
	}
	for _, bad := range []ruleKey{{Family: 4, Bits: 33}, {Family: 4, Bits: 8, Lo: 1}, {Family: 7}, {Family: 6, Bits: 129}, {Family: 4, Bits: 8, Flags: 3}} {
		if r, ok := bad.rule(); ok {
			t.Errorf("key %+v decoded as %v", bad, r)
		}
	}
}

// TestVerdictNamesRule: the rule the program counts (source address masked
// to the verdict's length, with its kind) is the rule that matched, for
// every address inside it, and the verdict never collides with "no match"
// or the directory's leaf bit.
func TestVerdictNamesRule(t *testing.T) {
	rules := lpm.Generate(9, 2000, 2000)
	rules = append(rules, lpm.Rule{Prefix: netip.MustParsePrefix("0.0.0.0/0")}, lpm.Rule{Prefix: netip.MustParsePrefix("::/0"), LogOnly: true})
	for _, r := range rules {
		v := verdictOf(r)
		if v == 0 || v&lpm.V4Leaf != 0 {
			t.Fatalf("%v: verdict %#x", r, v)
		}
		fam := 6
		if r.Prefix.Addr().Is4() {
			fam = 4
		}
		// First, last and a random address inside the rule.
		addrs := append(lpm.Edges([]lpm.Rule{r})[:2], lpm.RandomAddrs(uint64(v), []lpm.Rule{r}, fam, 1)...)
		for _, a := range addrs {
			got, ok := ruleFor(v, a)
			want := r
			want.Prefix = want.Prefix.Masked()
			if !ok || got != want || keyOf(got) != keyOf(want) {
				t.Fatalf("verdict %#x for %v names %v, want %v", v, a, got, want)
			}
		}
	}
	if _, ok := ruleFor(0, netip.MustParseAddr("1.2.3.4")); ok {
		t.Fatal("verdict 0 names a rule")
	}
}
