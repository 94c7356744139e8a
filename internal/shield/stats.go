package shield

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/carverauto/fortress/internal/lpm"
	"github.com/carverauto/fortress/internal/pins"
)

// RuleStat is one rule with what it matched: drops, would-drops (log-only
// rules and dry run) or passes (allow rules).
type RuleStat struct {
	Rule    lpm.Rule
	Slot    uint32
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

// Stats are Shield's global counters, summed over CPUs.
type Stats struct {
	Pass, Drop, WouldDrop, AllowHit, Bypass, NonIP, Unparsed, SampleSent, SampleLost uint64
}

// Stats reads the global counters.
func (s *Shield) Stats() (Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var v [9]uint64
	for i := range v {
		var per []uint64
		if err := s.objs.ShieldStats.Lookup(uint32(i), &per); err != nil {
			return Stats{}, fmt.Errorf("read shield stats: %w", err)
		}
		for _, x := range per {
			v[i] += x
		}
	}
	return Stats{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]}, nil
}

// RuleStats returns every rule in force with its counters, summed over CPUs,
// most packets first.
func (s *Shield) RuleStats() ([]RuleStat, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	counts, err := readCounters(s.objs.RuleStats, s.cap.Slots, s.ncpu)
	if err != nil {
		return nil, err
	}
	out := make([]RuleStat, 0, len(s.rules.slots))
	s.rules.each(func(r lpm.Rule, slot uint32) {
		c := counts[slot]
		c.Packets += s.offsets[slot].Packets
		c.Bytes += s.offsets[slot].Bytes
		out = append(out, RuleStat{Rule: r, Slot: slot, Packets: c.Packets, Bytes: c.Bytes})
	})
	slices.SortFunc(out, func(a, b RuleStat) int {
		if a.Packets != b.Packets {
			if a.Packets > b.Packets {
				return -1
			}
			return 1
		}
		return a.Rule.Prefix.Addr().Compare(b.Rule.Prefix.Addr())
	})
	return out, nil
}

// readCounters reads all n slots of a per-CPU counter map, summed over CPUs.
// Kernels without batch lookups on arrays (5.10) are read slot by slot.
func readCounters(m *ebpf.Map, n uint32, ncpu int) ([]counter, error) {
	out := make([]counter, n)
	if !batchLookupWorks(m) {
		per := make([]counter, ncpu)
		for k := uint32(0); k < n; k++ {
			if err := m.Lookup(k, &per); err != nil {
				return nil, fmt.Errorf("read rule counters: %w", err)
			}
			for _, c := range per {
				out[k].Packets += c.Packets
				out[k].Bytes += c.Bytes
			}
		}
		return out, nil
	}
	const chunk = 4096
	keys := make([]uint32, chunk)
	vals := make([]counter, chunk*ncpu)
	var cursor ebpf.MapBatchCursor
	for got := uint32(0); got < n; {
		c, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < c; i++ {
			k := keys[i]
			if k >= n {
				continue
			}
			for cpu := 0; cpu < ncpu; cpu++ {
				out[k].Packets += vals[i*ncpu+cpu].Packets
				out[k].Bytes += vals[i*ncpu+cpu].Bytes
			}
		}
		got += uint32(c)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read rule counters: %w", err)
		}
	}
	return out, nil
}

// ReadPinned reads the counters of a pinned Shield without changing
// anything: for `fortressctl shield stats`, with or without a running agent.
// Rules are named from the agent's saved rule table in stateDir; if that is
// missing or stale, counters are returned by slot with an empty rule.
func ReadPinned(root pins.Root, stateDir string) ([]RuleStat, Stats, error) {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, Stats{}, err
	}
	s := &Shield{cfg: Config{PinRoot: root, StateDir: stateDir}, ncpu: ncpu, objs: &shieldObjects{}, offsets: map[uint32]counter{}}
	s.rules.init()
	ro := &ebpf.LoadPinOptions{ReadOnly: true}
	for name, dst := range map[string]**ebpf.Map{
		"rule_stats": &s.objs.RuleStats, "shield_stats": &s.objs.ShieldStats, "shield_state": &s.objs.ShieldState,
	} {
		m, err := ebpf.LoadPinnedMap(root.Path(pins.Shield, name), ro)
		if err != nil {
			return nil, Stats{}, fmt.Errorf("open pinned shield map %s: %w", name, err)
		}
		defer m.Close()
		*dst = m
	}
	s.cap.Slots = s.objs.RuleStats.MaxEntries()
	if err := s.objs.ShieldState.Lookup(uint32(0), &s.ctl); err != nil {
		return nil, Stats{}, fmt.Errorf("read shield state: %w", err)
	}
	st, err := s.Stats()
	if err != nil {
		return nil, Stats{}, err
	}
	if err := s.loadRuleState(); err != nil {
		// Unnamed: report non-zero slots only.
		counts, err := readCounters(s.objs.RuleStats, s.cap.Slots, ncpu)
		if err != nil {
			return nil, st, err
		}
		var out []RuleStat
		for slot, c := range counts {
			if c.Packets > 0 {
				out = append(out, RuleStat{Slot: uint32(slot), Packets: c.Packets, Bytes: c.Bytes})
			}
		}
		return out, st, nil
	}
	rs, err := s.RuleStats()
	return rs, st, err
}

// ActiveRuleStats returns the rules that have matched at least one packet,
// in slot order, without sorting or touching idle rules: the cheap read for
// periodic counter deltas over very large rule sets.
func (s *Shield) ActiveRuleStats() ([]RuleStat, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	counts, err := readCounters(s.objs.RuleStats, s.cap.Slots, s.ncpu)
	if err != nil {
		return nil, err
	}
	var out []RuleStat
	for slot := range counts {
		c := counts[slot]
		o := s.offsets[uint32(slot)]
		c.Packets += o.Packets
		c.Bytes += o.Bytes
		if c.Packets == 0 {
			continue
		}
		r, ok := s.rules.ruleOf(uint32(slot))
		if !ok {
			continue // retired, or not yet in force
		}
		out = append(out, RuleStat{Rule: r, Slot: uint32(slot), Packets: c.Packets, Bytes: c.Bytes})
	}
	return out, nil
}

// batchLookupWorks probes once whether the kernel supports batch lookups
// on per-CPU arrays.
func batchLookupWorks(m *ebpf.Map) bool {
	batchOnce.Do(func() {
		keys := make([]uint32, 1)
		vals := make([]counter, ebpfPossibleCPUs())
		var cursor ebpf.MapBatchCursor
		_, err := m.BatchLookup(&cursor, keys, vals, nil)
		batchOK = !errors.Is(err, ebpf.ErrNotSupported)
	})
	return batchOK
}

var (
	batchOnce sync.Once
	batchOK   bool
)

func ebpfPossibleCPUs() int {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return 1
	}
	return n
}
