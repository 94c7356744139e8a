package shield

import (
	"net/netip"

	"github.com/carverauto/fortress/internal/lpm"
)

// ruleKey is a rule as the kernel counts it (struct shield_rule_key).
type ruleKey = shieldShieldRuleKey

// verdictOf is the verdict word the tables hold for r: the prefix length
// and the rule's kind. The program derives the rule from the packet's
// source address and this word, so no per-rule index is kept anywhere.
func verdictOf(r lpm.Rule) uint32 {
	v := verdictMatch | uint32(r.Prefix.Bits())
	if r.Action == lpm.Allow {
		v |= verdictAllow
	} else if r.LogOnly {
		v |= verdictLogOnly
	}
	return v
}

// keyOf is r's counter key, as the program builds it from a packet.
func keyOf(r lpm.Rule) ruleKey {
	p := r.Prefix.Masked()
	k := ruleKey{Bits: uint8(p.Bits()), Flags: r.Flags()}
	if p.Addr().Is4() {
		a := p.Addr().As4()
		k.Family = 4
		k.Lo = uint64(a[0])<<24 | uint64(a[1])<<16 | uint64(a[2])<<8 | uint64(a[3])
		return k
	}
	a := p.Addr().As16()
	k.Family = 6
	for i := 0; i < 8; i++ {
		k.Hi = k.Hi<<8 | uint64(a[i])
		k.Lo = k.Lo<<8 | uint64(a[8+i])
	}
	return k
}

// rule decodes a counter key; ok is false for a key no program writes.
func (k ruleKey) rule() (lpm.Rule, bool) {
	var addr netip.Addr
	switch {
	case k.Family == 4 && k.Bits <= 32 && k.Hi == 0 && k.Lo <= 0xffffffff:
		addr = netip.AddrFrom4([4]byte{byte(k.Lo >> 24), byte(k.Lo >> 16), byte(k.Lo >> 8), byte(k.Lo)})
	case k.Family == 6 && k.Bits <= 128:
		var b [16]byte
		for i := 0; i < 8; i++ {
			b[i] = byte(k.Hi >> (56 - 8*i))
			b[8+i] = byte(k.Lo >> (56 - 8*i))
		}
		addr = netip.AddrFrom16(b)
	default:
		return lpm.Rule{}, false
	}
	if k.Flags&^(lpm.FlagAllow|lpm.FlagLogOnly) != 0 || k.Flags == lpm.FlagAllow|lpm.FlagLogOnly {
		return lpm.Rule{}, false
	}
	r := lpm.Rule{Prefix: netip.PrefixFrom(addr, int(k.Bits)), LogOnly: k.Flags&lpm.FlagLogOnly != 0}
	if k.Flags&lpm.FlagAllow != 0 {
		r.Action = lpm.Allow
	}
	if r.Prefix.Masked() != r.Prefix {
		return lpm.Rule{}, false
	}
	return r, true
}

// ruleFor is the rule a verdict word names for a packet from src.
func ruleFor(verdict uint32, src netip.Addr) (lpm.Rule, bool) {
	if verdict&verdictMatch == 0 {
		return lpm.Rule{}, false
	}
	p, err := src.Prefix(int(verdict & verdictBits))
	if err != nil {
		return lpm.Rule{}, false
	}
	r := lpm.Rule{Prefix: p, LogOnly: verdict&verdictLogOnly != 0}
	if verdict&verdictAllow != 0 {
		r.Action = lpm.Allow
	}
	return r, true
}
