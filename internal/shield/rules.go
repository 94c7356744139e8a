package shield

import (
	"fmt"
	"net/netip"

	"github.com/carverauto/fortress/internal/lpm"
)

// ruleKey identifies a rule for counter continuity: a rule keeps its slot,
// and so its counters, while its prefix, action and log-only flag stay. It
// is a plain byte array so that hashing it is cheap: the address (IPv4 in
// the last four bytes), the prefix length (plus v4Bits for IPv4, so that no
// IPv6 length, up to 128, collides), the flags.
type ruleKey [19]byte

const (
	v4Bits     = 129
	keyAllow   = 1
	keyLogOnly = 2
)

func keyOf(r lpm.Rule) ruleKey {
	var k ruleKey
	p := r.Prefix.Masked()
	a := p.Addr().As16()
	copy(k[:16], a[:])
	k[16] = byte(p.Bits())
	if p.Addr().Is4() {
		k[16] += v4Bits
	}
	if r.Action == lpm.Allow {
		k[17] |= keyAllow
	}
	if r.LogOnly {
		k[17] |= keyLogOnly
	}
	return k
}

// prefixKey is the part of a ruleKey that must be unique in a rule set.
func (k ruleKey) prefixKey() [17]byte { return [17]byte(k[:17]) }

func (k ruleKey) rule() lpm.Rule {
	bits := int(k[16])
	var addr netip.Addr
	if bits >= v4Bits {
		bits -= v4Bits
		addr = netip.AddrFrom4([4]byte(k[12:16]))
	} else {
		addr = netip.AddrFrom16([16]byte(k[:16]))
	}
	r := lpm.Rule{Prefix: netip.PrefixFrom(addr, bits), LogOnly: k[17]&keyLogOnly != 0}
	if k[17]&keyAllow != 0 {
		r.Action = lpm.Allow
	}
	return r
}

// slotEntry is a rule's counter slot and the flags it was assigned under.
type slotEntry struct {
	slot  uint32
	flags byte
}

// ruleTable maps rules, by prefix, to counter slots.
type ruleTable struct {
	slots  map[[17]byte]slotEntry
	bySlot []ruleKey // reverse index; zero key for free slots
	free   []uint32
	next   uint32 // lowest never-used slot
}

// ruleOf returns the rule holding slot.
func (t *ruleTable) ruleOf(slot uint32) (lpm.Rule, bool) {
	if int(slot) >= len(t.bySlot) || t.bySlot[slot] == (ruleKey{}) {
		return lpm.Rule{}, false
	}
	return t.bySlot[slot].rule(), true
}

func (t *ruleTable) init() {
	t.slots = map[[17]byte]slotEntry{}
	t.next = 1
}

// each calls f for every rule in force with its slot.
func (t *ruleTable) each(f func(r lpm.Rule, slot uint32)) {
	for pk, e := range t.slots {
		var k ruleKey
		copy(k[:], pk[:])
		k[17] = e.flags
		f(k.rule(), e.slot)
	}
}

// pending is a rule set with slots assigned but not yet in force. Rules
// already in force with the same flags keep their slot (marked in kept);
// the others get a fresh slot that no rule in force uses.
type pending struct {
	kept  []bool // by slot
	fresh map[[17]byte]slotEntry
}

// slotsInUse is the number of slots live while old and new sets overlap.
func (p *pending) slotsInUse(t *ruleTable) int { return len(t.slots) + len(p.fresh) }

// assign gives each rule a slot (its old one if its prefix and flags are
// unchanged) and returns the table entries. Duplicate prefixes are refused.
// A steady-state update costs one map lookup per rule.
func (t *ruleTable) assign(rules []lpm.Rule) (*pending, []lpm.Entry, error) {
	p := &pending{kept: make([]bool, t.next), fresh: map[[17]byte]slotEntry{}}
	entries := make([]lpm.Entry, 0, len(rules))
	free := t.free
	next := t.next
	dup := func(i int, r lpm.Rule) error {
		return fmt.Errorf("rule %d (%s) repeats a prefix listed before it", i+1, r)
	}
	for i, r := range rules {
		if !r.Prefix.IsValid() {
			return nil, nil, fmt.Errorf("rule %d: invalid prefix", i+1)
		}
		k := keyOf(r)
		pk := k.prefixKey()
		e, ok := t.slots[pk]
		if ok && e.flags == k[17] {
			if p.kept[e.slot] {
				return nil, nil, dup(i, r)
			}
			if len(p.fresh) > 0 {
				if _, twice := p.fresh[pk]; twice {
					return nil, nil, dup(i, r)
				}
			}
			p.kept[e.slot] = true
		} else {
			if _, twice := p.fresh[pk]; twice || (ok && p.kept[e.slot]) {
				return nil, nil, dup(i, r)
			}
			if n := len(free); n > 0 {
				e.slot, free = free[n-1], free[:n-1]
			} else {
				e.slot = next
				next++
			}
			if e.slot > verdictSlot {
				return nil, nil, fmt.Errorf("more than %d rules", verdictSlot)
			}
			e.flags = k[17]
			p.fresh[pk] = e
		}
		v := e.slot
		if r.Action == lpm.Allow {
			v |= verdictAllow
		} else if r.LogOnly {
			v |= verdictLogOnly
		}
		entries = append(entries, lpm.Entry{Prefix: r.Prefix.Masked(), Verdict: v, Tag: k[17]})
	}
	return p, entries, nil
}

// commit makes p the current set and returns the slots it no longer uses.
func (t *ruleTable) commit(p *pending) []uint32 {
	var retired []uint32
	for slot := 1; slot < len(t.bySlot); slot++ {
		k := t.bySlot[slot]
		if k == (ruleKey{}) || (slot < len(p.kept) && p.kept[slot]) {
			continue
		}
		retired = append(retired, uint32(slot))
		pk := k.prefixKey()
		if e, ok := t.slots[pk]; ok && e.slot == uint32(slot) {
			delete(t.slots, pk)
		}
		t.bySlot[slot] = ruleKey{}
	}
	for pk, e := range p.fresh {
		t.slots[pk] = e
		t.setSlot(pk, e)
	}
	t.rebuildFree()
	return retired
}

func (t *ruleTable) setSlot(pk [17]byte, e slotEntry) {
	for uint32(len(t.bySlot)) <= e.slot {
		t.bySlot = append(t.bySlot, ruleKey{})
	}
	var k ruleKey
	copy(k[:], pk[:])
	k[17] = e.flags
	k[18] = 1 // never the zero key
	t.bySlot[e.slot] = k
	t.next = max(t.next, e.slot+1)
}

// rebuildFree lists the unused slots below next, lowest last so that they
// are reused first.
func (t *ruleTable) rebuildFree() {
	free := t.free[:0]
	for id := t.next - 1; id >= 1; id-- {
		if int(id) >= len(t.bySlot) || t.bySlot[id] == (ruleKey{}) {
			free = append(free, id)
		}
	}
	t.free = free
}

// restore replaces the table with saved entries.
func (t *ruleTable) restore(entries map[[17]byte]slotEntry, next uint32) {
	t.init()
	t.next = next
	for pk, e := range entries {
		t.slots[pk] = e
		t.setSlot(pk, e)
	}
	t.rebuildFree()
}
