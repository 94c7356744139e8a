package blocklist

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/carverauto/fortress/internal/lpm"
)

// TestFastPathAgrees: whatever the allocation-free IPv4 parser accepts, the
// general parser accepts as the same prefix; it takes every canonical IPv4
// address and CIDR; and it leaves everything odd to the general path.
func TestFastPathAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var in []string
	for i := 0; i < 20000; i++ {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], rng.Uint32())
		p := netip.PrefixFrom(netip.AddrFrom4(b), rng.IntN(33)).Masked()
		if p.Bits() == 32 && i%2 == 0 {
			in = append(in, p.Addr().String())
		} else {
			in = append(in, p.String())
		}
	}
	canonical := len(in)
	in = append(in, "01.2.3.4", "1.2.3.4/024", "1.2.3.4/33", "1.2.3.4/", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4/24",
		"1..2.3", "1.2.3.4 drop", "::1", "1.2.3.4/8x", "0.0.0.0/0", "255.255.255.255", "1.2.3.4/-1", "1.2.3.0/24 ", "1.2.3.0000")
	for i, s := range in {
		p, ok := fastPrefix4([]byte(s))
		r, err := ParseRule(s, "", false)
		if ok && (err != nil || r.Prefix != p) {
			t.Fatalf("%q: fast path gave %v, general path %v (%v)", s, p, r.Prefix, err)
		}
		if i < canonical && !ok {
			t.Fatalf("%q: canonical IPv4 not taken by the fast path", s)
		}
	}
}

// TestBuilderIndex: duplicates and conflicts are found across index growth.
func TestBuilderIndex(t *testing.T) {
	var sb strings.Builder
	rules := lpm.Generate(4, 30000, 3000)
	for _, r := range rules {
		fmt.Fprintf(&sb, "%s %s\n", r.Prefix, r.Action)
	}
	for _, r := range rules[:500] {
		fmt.Fprintf(&sb, "%s %s\n", r.Prefix, r.Action)
	}
	l, err := Parse(strings.NewReader(sb.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Rules) != len(rules) || l.Duplicates != 500 {
		t.Fatalf("%d rules, %d duplicates; want %d and 500", len(l.Rules), l.Duplicates, len(rules))
	}
	fmt.Fprintf(&sb, "%s allow\n", rules[7].Prefix)
	_, err = Parse(strings.NewReader(sb.String()))
	if err == nil || !strings.Contains(err.Error(), "conflicts with line 8") {
		t.Fatalf("conflict: %v", err)
	}
}
