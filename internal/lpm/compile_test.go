package lpm

import (
	"net/netip"
	"testing"
)

func entriesOf(rules []Rule) []Entry {
	es := make([]Entry, len(rules))
	for i, r := range rules {
		es[i] = Entry{Prefix: r.Prefix, Verdict: uint32(i + 1)}
	}
	return es
}

// check compares the compiled tables with the reference on addrs.
func check(t *testing.T, rules []Rule, addrs []netip.Addr) {
	t.Helper()
	tab, err := Compile(entriesOf(rules))
	if err != nil {
		t.Fatal(err)
	}
	ref := NewReference(rules)
	bad := 0
	for _, a := range addrs {
		want := uint32(0)
		if i, ok := ref.Lookup(a); ok {
			want = uint32(i + 1)
		}
		if got := tab.Lookup(a); got != want {
			if bad < 10 {
				t.Errorf("lookup %s: got verdict %d, reference %d", a, got, want)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d addresses disagree with the reference", bad, len(addrs))
	}
}

func mustRules(t *testing.T, cidrs ...string) []Rule {
	t.Helper()
	var rs []Rule
	for _, c := range cidrs {
		rs = append(rs, Rule{Prefix: netip.MustParsePrefix(c)})
	}
	return rs
}

func TestCompileHandPicked(t *testing.T) {
	rules := mustRules(t, "0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32",
		"255.255.255.255/32", "10.1.2.128/25", "192.168.0.0/31", "::/0", "2001:db8::/32",
		"2001:db8::1/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "2001:db8:0:1::/64")
	var addrs []netip.Addr
	for _, s := range []string{"0.0.0.0", "9.255.255.255", "10.0.0.0", "10.1.2.3", "10.1.2.4", "10.1.2.127",
		"10.1.2.128", "10.1.2.255", "10.1.3.0", "10.2.0.0", "255.255.255.254", "255.255.255.255",
		"192.168.0.1", "192.168.0.2", "::", "2001:db8::", "2001:db8::1", "2001:db8::2", "2001:db8:0:1::5",
		"2001:db9::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	check(t, rules, append(addrs, Edges(rules)...))
}

func TestCompileEmpty(t *testing.T) {
	tab, err := Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"1.2.3.4", "::1"} {
		if v := tab.Lookup(netip.MustParseAddr(a)); v != 0 {
			t.Fatalf("empty set: %s got verdict %d", a, v)
		}
	}
	if n4, n6 := tab.Ranges(); n4 != 0 || n6 != 0 {
		t.Fatalf("empty set stores %d/%d ranges", n4, n6)
	}
}

func TestCompileDenseBucket(t *testing.T) {
	// Every other /32 of one /16: the largest IPv4 bucket there can be.
	var rules []Rule
	for i := 0; i < 1<<16; i += 2 {
		rules = append(rules, Rule{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), 32)})
	}
	tab, err := Compile(entriesOf(rules))
	if err != nil {
		t.Fatal(err)
	}
	if d := tab.V4Dir[10<<8|9]; d&V4Leaf != 0 || tab.V4Blocks[d].Count != 1<<16 {
		t.Fatalf("dense bucket: dir %#x, want a block with %d ranges", d, 1<<16)
	}
	check(t, rules, Edges(rules))
}

func TestCompileDuplicateRefused(t *testing.T) {
	_, err := Compile([]Entry{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Verdict: 1}, {Prefix: netip.MustParsePrefix("10.1.0.0/8"), Verdict: 2}})
	if err == nil {
		t.Fatal("duplicate prefix (after masking) accepted")
	}
}

func TestCompileRandomAgainstReference(t *testing.T) {
	n4, n6, addrs := 20000, 5000, 200000
	if testing.Short() {
		n4, n6, addrs = 5000, 1000, 50000
	}
	for seed := uint64(1); seed <= 3; seed++ {
		rules := Generate(seed, n4, n6)
		as := append(RandomAddrs(seed, rules, 4, addrs), RandomAddrs(seed+100, rules, 6, addrs)...)
		check(t, rules, append(as, Edges(rules)...))
	}
}

func FuzzCompile(f *testing.F) {
	f.Add([]byte{10, 0, 0, 0, 8, 10, 1, 0, 0, 16, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		var rules []Rule
		seen := map[netip.Prefix]bool{}
		for len(data) >= 5 {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte(data[:4])), int(data[4])%33).Masked()
			data = data[5:]
			if !seen[p] {
				seen[p] = true
				rules = append(rules, Rule{Prefix: p})
			}
		}
		check(t, rules, Edges(rules))
	})
}

func TestDigestIgnoresOrderAndVerdict(t *testing.T) {
	rules := Generate(4, 500, 200)
	es := entriesOf(rules)
	a, err := Compile(es)
	if err != nil {
		t.Fatal(err)
	}
	rev := make([]Entry, len(es))
	for i, e := range es {
		e.Verdict += 7 // other counter slots, same policy
		rev[len(es)-1-i] = e
	}
	b, err := Compile(rev)
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest {
		t.Fatal("digest depends on rule order or verdict words")
	}
	rev[3].Tag ^= 1
	c, _ := Compile(rev)
	if c.Digest == a.Digest {
		t.Fatal("digest ignores a rule's tag")
	}
}
