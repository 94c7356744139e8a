package lpm

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
)

// Generate returns n4 distinct IPv4 and n6 distinct IPv6 drop rules drawn
// from a seeded generator, for tests and benchmarks. IPv4 lengths are uniform
// in /8-/32 (the distribution of the published LPM_TRIE anchors); IPv6
// prefixes lie in 2000::/3 with lengths uniform in /16-/128. Every 16th rule
// is an allow rule so exceptions inside wider drops are exercised.
func Generate(seed uint64, n4, n6 int) []Rule {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	seen := make(map[netip.Prefix]struct{}, n4+n6)
	rules := make([]Rule, 0, n4+n6)
	add := func(p netip.Prefix) bool {
		p = p.Masked()
		if _, dup := seen[p]; dup {
			return false
		}
		seen[p] = struct{}{}
		r := Rule{Prefix: p}
		if len(rules)%16 == 15 {
			r.Action = Allow
		}
		rules = append(rules, r)
		return true
	}
	for n := 0; n < n4; {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], rng.Uint32())
		if add(netip.PrefixFrom(netip.AddrFrom4(b), 8+rng.IntN(25))) {
			n++
		}
	}
	for n := 0; n < n6; {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], rng.Uint64()&^(7<<61)|1<<61)
		binary.BigEndian.PutUint64(b[8:], rng.Uint64())
		if add(netip.PrefixFrom(netip.AddrFrom16(b), 16+rng.IntN(113))) {
			n++
		}
	}
	return rules
}

// GenerateFeed returns n4 distinct IPv4 and n6 distinct IPv6 rules shaped
// like real threat feeds: IPv4 mostly single addresses (96% /32), some
// networks (3.9% /16-/24) and a few large blocks (0.1% /8-/15); IPv6 in
// 2000::/3, 60% /128, 30% /64, 10% /32-/56. One rule in a thousand is an
// allow exception. Different seeds give sets that share almost no rule.
func GenerateFeed(seed uint64, n4, n6 int) []Rule {
	rng := rand.New(rand.NewPCG(seed, seed^0x6a09e667f3bcc909))
	seen := make(map[netip.Prefix]struct{}, n4+n6)
	rules := make([]Rule, 0, n4+n6)
	add := func(p netip.Prefix) bool {
		p = p.Masked()
		if _, dup := seen[p]; dup {
			return false
		}
		seen[p] = struct{}{}
		r := Rule{Prefix: p}
		if len(rules)%1000 == 999 {
			r.Action = Allow
		}
		rules = append(rules, r)
		return true
	}
	for n := 0; n < n4; {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], rng.Uint32())
		bits := 32
		switch x := rng.IntN(1000); {
		case x < 1:
			bits = 8 + rng.IntN(8)
		case x < 40:
			bits = 16 + rng.IntN(9)
		}
		if add(netip.PrefixFrom(netip.AddrFrom4(b), bits)) {
			n++
		}
	}
	for n := 0; n < n6; {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], rng.Uint64()&^(7<<61)|1<<61)
		binary.BigEndian.PutUint64(b[8:], rng.Uint64())
		bits := 128
		switch x := rng.IntN(10); {
		case x == 0:
			bits = 32 + rng.IntN(25)
		case x < 4:
			bits = 64
		}
		if add(netip.PrefixFrom(netip.AddrFrom16(b), bits)) {
			n++
		}
	}
	return rules
}

// RandomAddrs returns n addresses of the given family (4 or 6). Half of them
// are drawn inside rules (uniformly inside a random rule's prefix), half
// uniformly from the family's space (for IPv6: from 2000::/3).
func RandomAddrs(seed uint64, rules []Rule, family, n int) []netip.Addr {
	rng := rand.New(rand.NewPCG(seed, ^seed))
	var fam []netip.Prefix
	for _, r := range rules {
		if r.Prefix.Addr().Is4() == (family == 4) {
			fam = append(fam, r.Prefix)
		}
	}
	out := make([]netip.Addr, n)
	for i := range out {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], rng.Uint64())
		binary.BigEndian.PutUint64(b[8:], rng.Uint64())
		if family == 6 {
			b[0] = b[0]&0x1f | 0x20
		}
		if i%2 == 0 && len(fam) > 0 {
			p := fam[rng.IntN(len(fam))]
			base := p.Addr().As16()
			if p.Addr().Is4() {
				a4 := p.Addr().As4()
				copy(base[12:], a4[:])
			}
			off := 0
			if family == 4 {
				off = 96
			}
			for bit := 0; bit < off+p.Bits(); bit++ {
				mask := byte(0x80 >> (bit % 8))
				b[bit/8] = b[bit/8]&^mask | base[bit/8]&mask
			}
		}
		if family == 4 {
			out[i] = netip.AddrFrom4([4]byte(b[12:]))
		} else {
			out[i] = netip.AddrFrom16(b)
		}
	}
	return out
}

// Edges returns, for every rule, the first and last address of its prefix
// and the addresses just outside it: where off-by-one errors would show.
func Edges(rules []Rule) []netip.Addr {
	out := make([]netip.Addr, 0, 4*len(rules))
	for _, r := range rules {
		p := r.Prefix.Masked()
		first := p.Addr()
		last := lastAddr(p)
		out = append(out, first, last)
		if prev := first.Prev(); prev.IsValid() {
			out = append(out, prev)
		}
		if next := last.Next(); next.IsValid() {
			out = append(out, next)
		}
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for bit := p.Bits(); bit < len(b)*8; bit++ {
		b[bit/8] |= 0x80 >> (bit % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
