//go:build linux

package fortress

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/carverauto/fortress/internal/lpm"
	"github.com/carverauto/fortress/internal/pins"
	"github.com/carverauto/fortress/internal/shield"
	"github.com/carverauto/fortress/internal/statedir"
)

// openShield adopts pinned Shield state or loads a fresh Shield.
var openShield = shield.Open

// shieldCtl owns Shield: loading or adopting it, attaching it to the
// interfaces, the management addresses (which no rule can drop), rule
// sets, counters and dry-run samples.
//
// mu guards the use of sh: it is held shared while sh is used and
// exclusively only to close or remove it. Everything Status shows is an
// immutable shieldView published atomically (replaced whole, never changed
// in place), so readers take no lock.
type shieldCtl struct {
	cfg    *Config
	audit  *auditRecorder
	events *eventSink
	// reported keeps the counters handed to OnCounters, so that a
	// restarted agent that adopts the pinned (still counting) Shield
	// reports only what is new instead of the whole running totals again.
	// What was handed over but not yet delivered when the agent died is
	// lost to the gateway: under-counting by at most one read interval,
	// never double counting.
	reported string

	mu sync.RWMutex
	sh *shield.Shield

	view     atomic.Pointer[shieldView]
	counters counterState
}

// shieldView is what Status shows of Shield.
type shieldView struct {
	loadErr    string
	adopted    bool
	ifaces     map[string]InterfaceStatus
	management []netip.Addr
	applied    shield.ApplyResult
}

func newShieldCtl(cfg *Config, audit *auditRecorder, events *eventSink) *shieldCtl {
	c := &shieldCtl{cfg: cfg, audit: audit, events: events, reported: filepath.Join(cfg.StateDir, statedir.ReportedCounters)}
	c.counters.init()
	v := &shieldView{ifaces: map[string]InterfaceStatus{}}
	for _, ifc := range cfg.Interfaces {
		v.ifaces[ifc.Name] = InterfaceStatus{Name: ifc.Name, Mode: string(ifc.Mode), Netns: ifc.Netns, Configured: true}
	}
	c.view.Store(v)
	return c
}

// update publishes a changed copy of the view. fn may run more than once
// (when another writer got in first), so it only sets fields.
func (c *shieldCtl) update(fn func(v *shieldView)) {
	for {
		old := c.view.Load()
		v := *old
		v.ifaces, v.management = maps.Clone(old.ifaces), slices.Clone(old.management)
		fn(&v)
		if c.view.CompareAndSwap(old, &v) {
			return
		}
	}
}

// start adopts or loads Shield. Failure leaves Shield degraded.
func (c *shieldCtl) start(last *policy) {
	root := pins.Root(c.cfg.PinRoot)
	if len(c.cfg.Interfaces) == 0 && !shield.Pinned(root) {
		return // disabled
	}
	var fromBundle []netip.Addr
	if last != nil {
		fromBundle = last.management
	}
	mgmt, err := mergeManagement(c.cfg.Gateways, fromBundle)
	if err != nil {
		c.events.log.Error("management addresses of the last bundle ignored", "err", err)
		mgmt = c.cfg.Gateways
	}
	sh, err := openShield(shield.Config{Management: mgmt, Budget: c.cfg.ShieldBudget, PinRoot: root,
		Audit: c.audit, Logger: c.events.log})
	if err != nil {
		c.update(func(v *shieldView) { v.loadErr = err.Error() })
		c.events.critical("shield", "shield degraded, traffic is not filtered: "+err.Error())
		return
	}
	c.mu.Lock()
	c.sh = sh
	c.mu.Unlock()
	info := sh.Info()
	if info.Adopted {
		// The pinned counters kept counting; only what was not yet
		// reported before the restart is new.
		if err := c.counters.load(c.reported); err != nil {
			c.events.log.Warn("shield: counters reported before the restart are unknown; the first read is reported whole", "err", err)
		}
	}
	attached := info.Interfaces
	c.update(func(v *shieldView) {
		v.management, v.adopted = slices.Clone(mgmt), info.Adopted
		for _, name := range attached {
			st, ok := v.ifaces[name]
			if !ok {
				st = InterfaceStatus{Name: name}
			}
			st.Attached = true
			v.ifaces[name] = st
		}
	})
	for _, name := range attached {
		if !slices.ContainsFunc(c.cfg.Interfaces, func(i Interface) bool { return i.Name == name }) {
			c.events.log.Warn("shield: adopted interface is not configured; it stays attached", "iface", name)
		}
	}
}

// loaded reports whether Shield is loaded.
func (c *shieldCtl) loaded() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.sh != nil
}

// holds reports whether the loaded Shield holds the set named id.
func (c *shieldCtl) holds(id shield.SetID) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.sh != nil && c.sh.Holds(id)
}

// attachAll attaches Shield to every configured interface not yet attached
// (an adopted link is kept as it is).
func (c *shieldCtl) attachAll() {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.sh == nil {
		return
	}
	if err := pins.Root(c.cfg.PinRoot).Ensure(pins.Shield); err != nil {
		c.events.log.Warn("shield pin dir", "err", err)
	}
	for _, ifc := range c.cfg.Interfaces {
		if c.view.Load().ifaces[ifc.Name].Attached {
			continue
		}
		mode := shield.Native
		if ifc.Mode == Generic {
			mode = shield.Generic
		}
		err := inNetns(ifc.Netns, func() error { return c.sh.Attach(ifc.Name, mode) })
		c.update(func(v *shieldView) {
			st := v.ifaces[ifc.Name]
			if err != nil {
				st.Error = err.Error()
			} else {
				st.Attached, st.Error = true, ""
			}
			v.ifaces[ifc.Name] = st
		})
		if err != nil {
			c.events.critical("shield", fmt.Sprintf("shield degraded on %s, its traffic is not filtered: %v", ifc.Name, err))
		}
	}
}

// setManagement changes the addresses Shield never drops. They are
// load-time constants, so Shield loads a new program over the same maps and
// swaps it in through every link: filtering never pauses, and the rule set
// and counters stay.
func (c *shieldCtl) setManagement(addrs []netip.Addr) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.sh == nil {
		return errors.New("shield not loaded")
	}
	if err := c.sh.SetManagement(addrs); err != nil {
		return fmt.Errorf("switch shield management addresses: %w", err)
	}
	c.update(func(v *shieldView) { v.management = slices.Clone(addrs) })
	c.events.log.Info("shield management addresses switched", "management", addrs)
	return nil
}

// enforce puts p's management addresses (want) and rule set in force, prev
// being the policy in force. Without a loaded Shield it only records want
// (loaded false). undo puts back what enforce changed.
func (c *shieldCtl) enforce(ctx context.Context, p, prev *policy, want []netip.Addr, lists listSource) (res shield.ApplyResult, loaded bool, undo func(), err error) {
	if !c.loaded() {
		c.update(func(v *shieldView) { v.management = slices.Clone(want) })
		return res, false, func() {}, nil
	}
	var undos []func()
	undo = func() {
		for i := len(undos) - 1; i >= 0; i-- {
			undos[i]()
		}
	}
	if old := c.view.Load().management; !sameAddrs(want, old) {
		if err := c.setManagement(want); err != nil {
			return res, true, nil, fmt.Errorf("payload.gateways: %w", err)
		}
		undos = append(undos, func() {
			if err := c.setManagement(old); err != nil {
				c.events.critical("shield", "management addresses not restored after a failed policy: "+err.Error())
			}
		})
	}
	canUndo := true
	if prev != nil && prev.list != nil {
		// Adopted at start without reading its list: read it now, so
		// that it can be put back if this policy is undone.
		if err := prev.loadList(ctx, lists); err != nil {
			canUndo = false
			c.events.log.Warn("shield: the set in force cannot be restored if this policy is undone", "err", err)
		}
	}
	c.mu.RLock()
	var prevRules []lpm.Rule
	prevDry := false
	var prevID shield.SetID
	if prev != nil {
		prevRules, prevDry, prevID = prev.rules, prev.dryRun, prev.shieldSetID()
	} else if st, err := c.sh.RuleStats(); err == nil {
		for _, r := range st {
			prevRules = append(prevRules, r.Rule)
		}
	}
	// A list policy already in force (pinned tables adopted after a
	// restart) is not compiled or swapped again; with its list unread
	// (deferred at start) the set in force is it.
	if p.list != nil {
		res = c.sh.Applied()
	} else {
		res, err = c.sh.ApplyAs(p.rules, p.dryRun, p.shieldSetID())
	}
	c.mu.RUnlock()
	if err != nil {
		undo()
		return res, true, nil, fmt.Errorf("shield: %w", err)
	}
	undos = append(undos, func() {
		if !canUndo {
			c.events.critical("shield", "previous rule set not restored: its list could not be read")
			return
		}
		c.mu.RLock()
		defer c.mu.RUnlock()
		if c.sh == nil {
			return
		}
		if _, err := c.sh.ApplyAs(prevRules, prevDry, prevID); err != nil {
			c.events.critical("shield", "previous rule set not restored: "+err.Error())
		}
	})
	c.update(func(v *shieldView) { v.applied = res })
	return res, true, undo, nil
}

// status is Shield's part of Status; inForce is the policy in force (nil
// when none), removed why Fortress was removed ("" when it was not).
func (c *shieldCtl) status(inForce *policy, removed string) ShieldStatus {
	snap := c.counters.snapshot()
	v := c.view.Load()
	ss := ShieldStatus{Adopted: v.adopted, Rules: v.applied.Rules, Generation: v.applied.Generation, Digest: v.applied.Digest,
		MapBytes: snap.mapBytes, Totals: snap.totals}
	for _, a := range v.management {
		ss.Gateways = append(ss.Gateways, a.String())
	}
	var failed []string
	for _, n := range slices.Sorted(maps.Keys(v.ifaces)) {
		is := v.ifaces[n]
		if !is.Attached && is.Configured {
			failed = append(failed, fmt.Sprintf("%s: %s", n, is.Error))
		}
		ss.Interfaces = append(ss.Interfaces, is)
	}
	switch {
	case removed != "":
		ss.State, ss.Reason = ShieldRemoved, removed
	case v.loadErr != "":
		ss.State, ss.Reason = ShieldDegraded, "shield not loaded, traffic is not filtered: "+v.loadErr
	case len(v.ifaces) == 0:
		ss.State, ss.Reason = ShieldDisabled, "no interfaces configured"
	case len(failed) > 0:
		ss.State, ss.Reason = ShieldDegraded, "not attached, traffic there is not filtered: "+strings.Join(failed, "; ")
	case inForce != nil && inForce.dryRun:
		ss.State, ss.Reason = ShieldDryRun, "rules count and sample but drop nothing"
	default:
		ss.State = ShieldEnforcing
		if inForce == nil && !v.adopted {
			ss.Reason = "attached; no policy applied yet"
		}
	}
	return ss
}

// ruleCounters reads every rule in force with its counters, busiest first.
func (c *shieldCtl) ruleCounters(dryRun bool) ([]RuleCounter, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.sh == nil {
		return nil, nil
	}
	stats, err := c.sh.RuleStats()
	if err != nil {
		return nil, err
	}
	out := make([]RuleCounter, len(stats))
	for i, r := range stats {
		out[i] = ruleCounter(r, dryRun)
	}
	return out, nil
}

// pollCounters reads rule and global counters every CounterInterval and
// hands deltas to OnCounters. When a read is slow (a very large rule set),
// the interval stretches so that reading never takes more than a quarter
// of the time.
func (c *shieldCtl) pollCounters(ctx context.Context, dryRun func() bool) {
	wait := c.cfg.CounterInterval
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		start := time.Now()
		c.readCounters(dryRun())
		wait = max(c.cfg.CounterInterval, 4*time.Since(start))
	}
}

func (c *shieldCtl) readCounters(dryRun bool) {
	c.mu.RLock()
	sh := c.sh
	if sh == nil {
		c.mu.RUnlock()
		return
	}
	start := time.Now()
	// Only rules that matched: idle rules of a 1M-rule set cost nothing
	// beyond the kernel read.
	stats, err := sh.Counters().ActiveRuleStats()
	slices.SortFunc(stats, func(a, b shield.RuleStat) int { return cmp.Compare(b.Packets, a.Packets) })
	var totals shield.Stats
	var terr error
	if err == nil {
		totals, terr = sh.Counters().Stats()
	}
	info := sh.Info()
	mapBytes, attached := info.MapBytes, info.Interfaces
	c.mu.RUnlock()
	if err != nil || terr != nil {
		c.events.log.Warn("read shield counters", "err", err, "stats_err", terr)
		return
	}
	c.update(func(v *shieldView) {
		for name, st := range v.ifaces {
			st.Attached = slices.Contains(attached, name)
			v.ifaces[name] = st
		}
	})
	g := counterSnapshot{
		totals: ShieldTotals{Pass: totals.Pass, Drop: totals.Drop, WouldDrop: totals.WouldDrop, AllowHit: totals.AllowHit,
			Bypass: totals.Bypass, NonIP: totals.NonIP, Unparsed: totals.Unparsed, SampleSent: totals.SampleSent, SampleLost: totals.SampleLost},
		mapBytes: mapBytes, readTime: time.Since(start), readAt: time.Now(),
	}
	deltas := c.counters.deltas(stats, dryRun, c.cfg.TopRules, g)
	if len(deltas) == 0 {
		return
	}
	if err := c.counters.save(c.reported); err != nil {
		c.events.log.Warn("save reported counters", "err", err)
	}
	if c.cfg.OnCounters != nil {
		c.cfg.OnCounters(deltas)
	}
}

// readSamples forwards Shield's dry-run samples (rate-limited in the
// kernel; those the ring could not take are counted in the totals).
func (c *shieldCtl) readSamples(ctx context.Context) {
	c.mu.RLock()
	ch, err := c.sh.Counters().Samples(ctx)
	c.mu.RUnlock()
	if err != nil {
		c.events.critical("shield", "dry-run samples unavailable: "+err.Error())
		return
	}
	for smp := range ch {
		rule := ""
		if smp.Rule.Prefix.IsValid() {
			rule = smp.Rule.Prefix.String()
		}
		c.events.emit(Event{Time: smp.Time, Kind: KindDryRun, Severity: SeverityInfo, Layer: "shield", Rule: rule,
			Source: smp.Source.String(), IfIndex: smp.IfIndex, Packets: 1, Bytes: uint64(smp.Length),
			Detail: "would have dropped"})
	}
}

// remove unpins Shield (closing its links detaches the XDP programs). It
// reports whether a Shield was loaded.
func (c *shieldCtl) remove() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.update(func(v *shieldView) {
		for name, is := range v.ifaces {
			is.Attached, is.Error = false, "removed"
			v.ifaces[name] = is
		}
	})
	if c.sh == nil {
		return false, nil
	}
	var err error
	if uerr := c.sh.Unpin(); uerr != nil {
		err = fmt.Errorf("unpin shield: %w", uerr)
	}
	c.sh.Close()
	c.sh = nil
	return true, err
}

// close releases Shield's file descriptors; pinned programs stay attached.
func (c *shieldCtl) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sh != nil {
		c.sh.Close()
	}
}
