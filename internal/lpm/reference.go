package lpm

import (
	"net/netip"
	"sort"
)

// Reference is a deliberately plain longest-prefix match: one hash map per
// prefix length, probed from the longest length present down. It is the
// oracle Shield's tables are checked against.
type Reference struct {
	v4     map[int]map[netip.Prefix]int
	v6     map[int]map[netip.Prefix]int
	v4lens []int
	v6lens []int
}

// NewReference indexes rules; the value returned by Lookup is an index into
// rules. Later duplicates of the same prefix replace earlier ones.
func NewReference(rules []Rule) *Reference {
	r := &Reference{v4: map[int]map[netip.Prefix]int{}, v6: map[int]map[netip.Prefix]int{}}
	for i, rule := range rules {
		p := rule.Prefix.Masked()
		m := r.v6
		if p.Addr().Is4() {
			m = r.v4
		}
		byLen := m[p.Bits()]
		if byLen == nil {
			byLen = map[netip.Prefix]int{}
			m[p.Bits()] = byLen
		}
		byLen[p] = i
	}
	r.v4lens = sortedLens(r.v4)
	r.v6lens = sortedLens(r.v6)
	return r
}

func sortedLens(m map[int]map[netip.Prefix]int) []int {
	lens := make([]int, 0, len(m))
	for l := range m {
		lens = append(lens, l)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(lens)))
	return lens
}

// Lookup returns the index of the most specific rule containing addr.
func (r *Reference) Lookup(addr netip.Addr) (int, bool) {
	m, lens := r.v6, r.v6lens
	if addr.Is4() {
		m, lens = r.v4, r.v4lens
	}
	for _, l := range lens {
		p, err := addr.Prefix(l)
		if err != nil {
			continue
		}
		if i, ok := m[l][p]; ok {
			return i, true
		}
	}
	return 0, false
}
