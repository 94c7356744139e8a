//go:build linux

package fortress

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/carverauto/fortress/internal/blocklist"
	"github.com/carverauto/fortress/internal/lpm"
	"github.com/carverauto/fortress/internal/sentinel"
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

// pollCounters reads rule and global counters every CounterInterval and
// hands deltas to OnCounters. When a read is slow (a
// very large rule set), the interval stretches so that reading never takes
// more than a quarter of the time.
func (f *Fortress) pollCounters() {
	wait := f.cfg.CounterInterval
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-time.After(wait):
		}
		start := time.Now()
		f.readCounters()
		took := time.Since(start)
		wait = max(f.cfg.CounterInterval, 4*took)
	}
}

func (f *Fortress) readCounters() {
	f.shMu.RLock()
	sh := f.sh
	if sh == nil {
		f.shMu.RUnlock()
		return
	}
	start := time.Now()
	// Only rules that matched: idle rules of a 1M-rule set cost nothing
	// beyond the kernel read.
	stats, err := sh.ActiveRuleStats()
	slices.SortFunc(stats, func(a, b shield.RuleStat) int { return cmp.Compare(b.Packets, a.Packets) })
	var totals shield.Stats
	var terr error
	if err == nil {
		totals, terr = sh.Stats()
	}
	mapBytes := sh.MapBytes()
	attached := sh.Interfaces()
	f.shMu.RUnlock()
	if err != nil || terr != nil {
		f.log.Warn("read shield counters", "err", err, "stats_err", terr)
		return
	}
	f.mu.Lock()
	dryRun := f.inForce != nil && f.inForce.dryRun
	for _, st := range f.ifaces {
		st.Attached = slices.Contains(attached, st.Name)
	}
	f.mu.Unlock()
	g := counterSnapshot{
		totals: ShieldTotals{Pass: totals.Pass, Drop: totals.Drop, WouldDrop: totals.WouldDrop, AllowHit: totals.AllowHit,
			Bypass: totals.Bypass, NonIP: totals.NonIP, Unparsed: totals.Unparsed, SampleSent: totals.SampleSent, SampleLost: totals.SampleLost},
		mapBytes: mapBytes, readTime: time.Since(start), readAt: time.Now(),
	}
	deltas := f.counters.deltas(stats, dryRun, f.cfg.TopRules, g)
	if len(deltas) > 0 {
		if err := f.counters.save(f.reportedPath()); err != nil {
			f.log.Warn("save reported counters", "err", err)
		}
	}
	if len(deltas) == 0 {
		return
	}
	if f.cfg.OnCounters != nil {
		f.cfg.OnCounters(deltas)
	}
}

// readSamples forwards Shield's dry-run samples (rate-limited in the
// kernel; those the ring could not take are counted in the totals).
func (f *Fortress) readSamples() {
	f.shMu.RLock()
	ch, err := f.sh.Samples(f.ctx)
	f.shMu.RUnlock()
	if err != nil {
		f.critical("shield", "dry-run samples unavailable: "+err.Error())
		return
	}
	for smp := range ch {
		rule := ""
		if smp.Rule.Prefix.IsValid() {
			rule = smp.Rule.Prefix.String()
		}
		f.emit(Event{Time: smp.Time, Kind: KindDryRun, Severity: SeverityInfo, Layer: "shield", Rule: rule,
			Source: smp.Source.String(), IfIndex: smp.IfIndex, Packets: 1, Bytes: uint64(smp.Length),
			Detail: "would have dropped"})
	}
}

// Counters reads every rule in force with its counters, busiest first.
func (f *Fortress) Counters() ([]RuleCounter, error) {
	f.shMu.RLock()
	defer f.shMu.RUnlock()
	if f.sh == nil {
		return nil, nil
	}
	stats, err := f.sh.RuleStats()
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	dryRun := f.inForce != nil && f.inForce.dryRun
	f.mu.Unlock()
	out := make([]RuleCounter, len(stats))
	for i, r := range stats {
		out[i] = ruleCounter(r, dryRun)
	}
	return out, nil
}

// TopCounters returns the busiest rules (at most Config.TopRules) and the
// packets and bytes of all rules summed by kind, as of the last periodic
// read. It is cheap at any rule count.
func (f *Fortress) TopCounters() (top []RuleCounter, sums map[string][2]uint64) {
	s := f.counters.snapshot()
	sums = make(map[string][2]uint64, len(s.sum))
	for k, v := range s.sum {
		sums[k] = [2]uint64{v.packets, v.bytes}
	}
	return slices.Clone(s.top), sums
}

// readSentinel forwards Sentinel's events until Stop.
func (f *Fortress) readSentinel() {
	err := f.sen.ReadEvents(f.ctx, func(e sentinel.Event) {
		ev := Event{Time: e.Time, Layer: "sentinel", Op: e.Op, Path: e.Path, Verdict: e.Verdict, PID: e.TGID, UID: e.UID,
			Comm: e.Comm, Exe: e.Exe, Detail: e.Detail}
		switch e.Verdict {
		case sentinel.VerdictCritical:
			ev.Kind, ev.Severity = KindCritical, SeverityCritical
			if e.Op == sentinel.OpEventsLost {
				ev.Count = e.Arg
				f.kernelLost.Add(e.Arg)
			}
		case sentinel.VerdictDenied, sentinel.VerdictAudited:
			ev.Kind, ev.Severity = KindViolation, SeverityWarning
		default:
			ev.Kind, ev.Severity = KindFIM, SeverityInfo
		}
		f.emit(ev)
	})
	if err != nil && f.ctx.Err() == nil {
		f.critical("sentinel", "event reader stopped: "+err.Error())
	}
}

// reportedPath keeps the counters handed to OnCounters, so that a restarted
// agent that adopts the pinned (still counting) Shield reports only what is
// new instead of the whole running totals again. What was handed over but
// not yet delivered when the agent died is lost to the gateway: under-counting
// by at most one read interval, never double counting.
func (f *Fortress) reportedPath() string {
	return filepath.Join(f.cfg.StateDir, statedir.ReportedCounters)
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
