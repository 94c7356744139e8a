//go:build linux

package fortress

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/carverauto/fortress/internal/blocklist"
	"github.com/carverauto/fortress/internal/lpm"
	"github.com/carverauto/fortress/internal/shield"
	"github.com/carverauto/fortress/internal/statedir"
)

type count struct{ packets, bytes uint64 }

// counterState keeps the previous read (only rules that matched anything,
// so a million idle rules cost nothing) and a snapshot for Status, metrics
// and TopCounters.
type counterState struct {
	mu   sync.Mutex
	prev map[lpm.Rule]count
	top  []RuleCounter
	// sum over every rule, by kind
	sum      map[string]count
	totals   ShieldTotals
	mapBytes uint64
	readTime time.Duration
	readAt   time.Time
}

type counterSnapshot struct {
	top      []RuleCounter
	sum      map[string]count
	totals   ShieldTotals
	mapBytes uint64
	readTime time.Duration
	readAt   time.Time
}

func (c *counterState) init() { c.prev = map[lpm.Rule]count{}; c.sum = map[string]count{} }

func (c *counterState) snapshot() counterSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum := make(map[string]count, len(c.sum))
	for k, v := range c.sum {
		sum[k] = v
	}
	return counterSnapshot{top: c.top, sum: sum, totals: c.totals, mapBytes: c.mapBytes, readTime: c.readTime, readAt: c.readAt}
}

func ruleCounter(r shield.RuleStat, dryRun bool) RuleCounter {
	return RuleCounter{Rule: r.Rule.Prefix.String(), Action: r.Rule.Action.String(), LogOnly: r.Rule.LogOnly,
		Kind: r.Kind(dryRun), Packets: r.Packets, Bytes: r.Bytes}
}

// deltas compares a read with the previous one. A counter below its
// previous value was reset (the rule left the policy and came back): all of
// it is new. The read's top rules, sums and the global figures in g are
// published together, so a reader never sees a rule counter from one read
// next to totals from another.
func (c *counterState) deltas(stats []shield.RuleStat, dryRun bool, top int, g counterSnapshot) []CounterDelta {
	next := make(map[lpm.Rule]count, len(c.prev))
	var out []CounterDelta
	sum := map[string]count{}
	for _, r := range stats {
		if r.Packets == 0 && r.Bytes == 0 {
			continue
		}
		kind := r.Kind(dryRun)
		s := sum[kind]
		s.packets += r.Packets
		s.bytes += r.Bytes
		sum[kind] = s
		cur := count{r.Packets, r.Bytes}
		next[r.Rule] = cur
		p := c.prev[r.Rule]
		d := count{cur.packets - p.packets, cur.bytes - p.bytes}
		if cur.packets < p.packets || cur.bytes < p.bytes {
			d = cur
		}
		if d.packets == 0 && d.bytes == 0 {
			continue
		}
		out = append(out, CounterDelta{Rule: r.Rule.Prefix.String(), Action: r.Rule.Action.String(), LogOnly: r.Rule.LogOnly,
			Kind: kind, DryRun: kind == CounterWouldDrop, Packets: d.packets, Bytes: d.bytes})
	}
	// RuleStats is sorted by packets, most first.
	n := min(top, len(stats))
	tops := make([]RuleCounter, 0, n)
	for _, r := range stats[:n] {
		if r.Packets == 0 {
			break
		}
		tops = append(tops, ruleCounter(r, dryRun))
	}
	c.mu.Lock()
	c.prev, c.top, c.sum = next, tops, sum
	c.totals, c.mapBytes, c.readTime, c.readAt = g.totals, g.mapBytes, g.readTime, g.readAt
	c.mu.Unlock()
	return out
}

// busiest returns the busiest rules and the sums by kind of the last read.
func (c *counterState) busiest() ([]RuleCounter, map[string][2]uint64) {
	s := c.snapshot()
	sums := make(map[string][2]uint64, len(s.sum))
	for k, v := range s.sum {
		sums[k] = [2]uint64{v.packets, v.bytes}
	}
	return slices.Clone(s.top), sums
}

type reportedRule struct {
	CIDR    string `json:"cidr"`
	Action  string `json:"action"`
	LogOnly bool   `json:"log_only,omitempty"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

func (c *counterState) save(path string) error {
	c.mu.Lock()
	rows := make([]reportedRule, 0, len(c.prev))
	for r, n := range c.prev {
		rows = append(rows, reportedRule{r.Prefix.String(), r.Action.String(), r.LogOnly, n.packets, n.bytes})
	}
	c.mu.Unlock()
	b, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	return statedir.WriteFile(path, b, 0o600)
}

func (c *counterState) load(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rows []reportedRule
	if err := json.Unmarshal(b, &rows); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	prev := make(map[lpm.Rule]count, len(rows))
	for _, row := range rows {
		r, err := blocklist.ParseRule(row.CIDR, row.Action, row.LogOnly)
		if err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		prev[r] = count{row.Packets, row.Bytes}
	}
	c.mu.Lock()
	c.prev = prev
	c.mu.Unlock()
	return nil
}
