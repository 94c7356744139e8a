package shield

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/carverauto/fortress/internal/lpm"
	"github.com/carverauto/fortress/internal/pins"
)

// RuleStat is one rule with what it matched: drops, would-drops (log-only
// rules and dry run) or passes (allow rules).
type RuleStat struct {
	Rule    lpm.Rule
	Packets uint64
	Bytes   uint64
}

// Kind says how the rule's matches were handled under the given global mode.
func (r RuleStat) Kind(dryRun bool) string {
	switch {
	case r.Rule.Action == lpm.Allow:
		return "allow"
	case r.Rule.LogOnly || dryRun:
		return "would-drop"
	}
	return "drop"
}

// Stats are Shield's global counters, summed over CPUs. Untracked counts
// packets that matched a rule when the rule counters were full (see
// Config.TrackedRules): they are in Drop, WouldDrop or AllowHit, but in no
// rule's counters.
type Stats struct {
	Pass, Drop, WouldDrop, AllowHit, Bypass, NonIP, Unparsed, SampleSent, SampleLost, Untracked uint64
}

func readStats(m *ebpf.Map) (Stats, error) {
	var v [statMax]uint64
	for i := range v {
		var per []uint64
		if err := m.Lookup(uint32(i), &per); err != nil {
			return Stats{}, fmt.Errorf("read shield stats: %w", err)
		}
		for _, x := range per {
			v[i] += x
		}
	}
	return Stats{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]}, nil
}

// RuleStats returns every rule in force with its counters, most packets
// first. After adoption, when the rules were applied by an earlier process,
// it returns the rules that saw traffic.
func (s *Shield) RuleStats() ([]RuleStat, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hits, err := s.counters.readHits()
	if err != nil {
		return nil, err
	}
	var out []RuleStat
	if s.rules == nil {
		out = decodeHits(hits)
	} else {
		out = make([]RuleStat, 0, len(s.rules))
		for _, r := range s.rules {
			h := hits[keyOf(r)]
			out = append(out, RuleStat{Rule: r, Packets: h.Packets, Bytes: h.Bytes})
		}
	}
	sortStats(out)
	return out, nil
}

func sortStats(out []RuleStat) {
	slices.SortFunc(out, func(a, b RuleStat) int {
		if c := cmp.Compare(b.Packets, a.Packets); c != 0 {
			return c
		}
		if c := a.Rule.Prefix.Addr().Compare(b.Rule.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Rule.Prefix.Bits(), b.Rule.Prefix.Bits())
	})
}

// hit is a rule's counter as read, with a mark for pruneCounters.
type hit struct {
	counter
	keep bool
}

func decodeHits(hits map[ruleKey]hit) []RuleStat {
	out := make([]RuleStat, 0, len(hits))
	for k, h := range hits {
		r, ok := k.rule()
		if !ok || h.Packets == 0 {
			continue
		}
		out = append(out, RuleStat{Rule: r, Packets: h.Packets, Bytes: h.Bytes})
	}
	return out
}

// readHits reads the counters of every rule that saw traffic: in batches
// where the kernel can, else entry by entry.
func readHits(m *ebpf.Map) (map[ruleKey]hit, error) {
	out := map[ruleKey]hit{}
	const chunk = 4096
	keys := make([]ruleKey, chunk)
	vals := make([]counter, chunk)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			out[keys[i]] = hit{counter: vals[i]}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read rule counters: %w", err)
		}
	}
	clear(out)
	var k ruleKey
	var v counter
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[k] = hit{counter: v}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read rule counters: %w", err)
	}
	return out, nil
}

// ReadPinned reads the counters of a pinned Shield without changing
// anything: for `fortressctl shield stats`, with or without a running agent.
// It returns the rules that saw traffic, most packets first; the kernel's
// counters name their rules.
func ReadPinned(root pins.Root) ([]RuleStat, Stats, error) {
	ro := &ebpf.LoadPinOptions{ReadOnly: true}
	open := func(name string) (*ebpf.Map, error) {
		m, err := ebpf.LoadPinnedMap(root.Path(pins.Shield, name), ro)
		if err != nil {
			return nil, fmt.Errorf("open pinned shield map %s: %w", name, err)
		}
		return m, nil
	}
	stats, err := open("shield_stats")
	if err != nil {
		return nil, Stats{}, err
	}
	defer stats.Close()
	hitsMap, err := open("rule_hits")
	if err != nil {
		return nil, Stats{}, fmt.Errorf("%w (pins of an older release keep per-CPU counters by slot; the agent migrates them at start)", err)
	}
	defer hitsMap.Close()
	st, err := readStats(stats)
	if err != nil {
		return nil, Stats{}, err
	}
	hits, err := readHits(hitsMap)
	if err != nil {
		return nil, st, err
	}
	out := decodeHits(hits)
	sortStats(out)
	return out, st, nil
}
