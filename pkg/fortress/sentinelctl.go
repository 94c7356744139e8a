//go:build linux

package fortress

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/pins"
	"github.com/carverauto/fortress/internal/sentinel"
)

// sentinelCtl owns Sentinel: loading or adopting it where BPF LSM really
// works, the protected and watched paths, its events and its guard over
// Shield's pins.
//
// Its state is an immutable sentinelView published atomically: it changes
// only at start and under Fortress.changeMu, and readers take no lock.
type sentinelCtl struct {
	cfg    *Config
	audit  *auditRecorder
	events *eventSink
	view   atomic.Pointer[sentinelView]
}

// sentinelView is Sentinel as Status shows it.
type sentinelView struct {
	sen *sentinel.Sentinel // nil when unavailable or removed
	// reason says why Sentinel is unavailable.
	reason             string
	protected, watched []string
}

func newSentinelCtl(cfg *Config, audit *auditRecorder, events *eventSink) *sentinelCtl {
	c := &sentinelCtl{cfg: cfg, audit: audit, events: events}
	c.view.Store(&sentinelView{})
	return c
}

// running returns the Sentinel in force, nil if there is none.
func (c *sentinelCtl) running() *sentinel.Sentinel { return c.view.Load().sen }

func (c *sentinelCtl) unavailable(reason string, critical bool) {
	c.view.Store(&sentinelView{reason: reason})
	if critical {
		c.events.critical("sentinel", reason)
	}
}

// start loads or adopts Sentinel where BPF LSM really works, protecting
// the last policy's paths too.
func (c *sentinelCtl) start(last *policy, kernel KernelReport) {
	sc := c.cfg.Sentinel
	if sc.Disabled {
		c.unavailable("disabled by configuration: nothing is protected", false)
		return
	}
	if !kernel.Checks["lsm"] {
		why := kernel.Reasons["lsm"]
		if why == "" {
			why = "BPF LSM not usable on this kernel"
		}
		c.unavailable("BPF LSM unusable, nothing is protected: "+why, true)
		return
	}
	bin := sc.AgentBinary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			c.unavailable("cannot find the agent binary: "+err.Error(), true)
			return
		}
		bin = exe
	}
	protect := slices.Clone(sc.Protect)
	protect = append(protect, c.cfg.StateDir, filepath.Dir(c.cfg.AuditLog))
	watch := slices.Clone(sc.Watch)
	if last != nil && last.sentinel != nil {
		protect = append(protect, last.sentinel.Protect...)
		watch = append(watch, last.sentinel.Watch...)
	}
	protect, watch = c.existing("protect", protect), c.existing("watch", watch)
	mode := sentinel.Enforce
	if sc.Audit {
		mode = sentinel.Audit
	}
	sc = releaseDefaults(sc, bin)
	s, err := sentinel.Start(sentinel.Config{
		PinRoot: pins.Root(c.cfg.PinRoot), AgentBinary: bin, UpdaterBinary: sc.UpdaterBinary,
		Releases:  sentinel.Releases{Dir: sc.ReleaseDir, Binary: sc.ReleaseBinary, Seed: sc.SeedBinary},
		ConfigDir: sc.ConfigDir, StateDirs: protect, Watched: watch, Mode: mode,
		Recorder: c.audit, Log: c.events.log,
	})
	if err != nil {
		if errors.Is(err, sentinel.ErrUnavailable) {
			c.unavailable("BPF LSM unusable, nothing is protected: "+err.Error(), true)
		} else {
			// Whatever was pinned before stays attached; this process just
			// cannot drive it. Say so, never claim protection.
			c.unavailable("sentinel failed to start: "+err.Error(), true)
		}
		return
	}
	c.view.Store(&sentinelView{sen: s, protected: append([]string{sc.ConfigDir}, protect...), watched: watch})
}

// existing sorts and de-duplicates paths and drops those that do not
// exist (loudly): one missing path must not leave everything unprotected.
func (c *sentinelCtl) existing(what string, paths []string) []string {
	slices.Sort(paths)
	paths = slices.Compact(paths)
	out := paths[:0]
	for _, p := range paths {
		if _, err := os.Lstat(p); err != nil {
			c.events.critical("sentinel", fmt.Sprintf("cannot %s %s: %v", what, p, err))
			continue
		}
		out = append(out, p)
	}
	return out
}

// guardShield makes Shield's pinned maps and links writable only by the
// agent (Sentinel's map and link guard), where Sentinel runs.
func (c *sentinelCtl) guardShield() {
	s := c.running()
	if s == nil {
		return
	}
	if err := guardPinned(s, pins.Root(c.cfg.PinRoot)); err != nil {
		c.events.critical("sentinel", "cannot guard shield maps and links: "+err.Error())
	}
}

// readEvents forwards Sentinel's events until ctx ends.
func (c *sentinelCtl) readEvents(ctx context.Context) {
	err := c.running().ReadEvents(ctx, func(e sentinel.Event) {
		ev := Event{Time: e.Time, Layer: "sentinel", Op: e.Op, Path: e.Path, Verdict: e.Verdict, PID: e.TGID, UID: e.UID,
			Comm: e.Comm, Exe: e.Exe, Detail: e.Detail}
		switch e.Verdict {
		case sentinel.VerdictCritical:
			ev.Kind, ev.Severity = KindCritical, SeverityCritical
			if e.Op == sentinel.OpEventsLost {
				ev.Count = e.Arg
				c.events.kernelLost.Add(e.Arg)
			}
		case sentinel.VerdictDenied, sentinel.VerdictAudited:
			ev.Kind, ev.Severity = KindViolation, SeverityWarning
		default:
			ev.Kind, ev.Severity = KindFIM, SeverityInfo
		}
		c.events.emit(ev)
	})
	if err != nil && ctx.Err() == nil {
		c.events.critical("sentinel", "event reader stopped: "+err.Error())
	}
}

// check refuses a policy section whose paths do not exist, before
// anything changes.
func (c *sentinelCtl) check(s *bundle.Sentinel) error {
	if s == nil || c.running() == nil {
		return nil
	}
	for i, path := range s.Protect {
		if _, err := os.Lstat(path); err != nil {
			return fmt.Errorf("payload.sentinel.protect[%d]: %w", i, err)
		}
	}
	for i, path := range s.Watch {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("payload.sentinel.watch[%d]: %w", i, err)
		}
	}
	return nil
}

// enforce protects and watches a policy's paths. Paths protected before an
// error stay protected (fail closed).
func (c *sentinelCtl) enforce(s *bundle.Sentinel) (notes []string, err error) {
	if s == nil {
		return nil, nil
	}
	v := c.view.Load()
	if v.sen == nil {
		return []string{"sentinel unavailable: its section is recorded but nothing is protected"}, nil
	}
	for i, path := range s.Protect {
		if err := v.sen.Protect(path, sentinel.RoleAgent); err != nil {
			return nil, fmt.Errorf("payload.sentinel.protect[%d]: %w", i, err)
		}
	}
	if s.Mode == bundle.SentinelAudit {
		notes = append(notes, "sentinel stays in enforce mode: a bundle cannot switch it to audit (use a maintenance token)")
	}
	for i, w := range s.Watch {
		if err := v.sen.Watch(w); err != nil {
			return nil, fmt.Errorf("payload.sentinel.watch[%d]: %w", i, err)
		}
	}
	n := *v
	n.protected, n.watched = slices.Clone(v.protected), slices.Clone(v.watched)
	for _, w := range s.Watch {
		if !slices.Contains(n.watched, w) {
			n.watched = append(n.watched, w)
		}
	}
	for _, p := range s.Protect {
		if !slices.Contains(n.protected, p) {
			n.protected = append(n.protected, p)
		}
	}
	c.view.Store(&n)
	return notes, nil
}

// maintenance opens the audit window a verified token grants.
func (c *sentinelCtl) maintenance(raw string, key ed25519.PublicKey, now time.Time) error {
	s := c.running()
	if s == nil {
		return nil
	}
	if _, err := s.ApplyMaintenance(raw, key, c.cfg.AgentID, now); err != nil {
		return fmt.Errorf("open audit window: %w", err)
	}
	return nil
}

// status is Sentinel's part of Status; removed says why Fortress was
// removed ("" when it was not).
func (c *sentinelCtl) status(removed string) SentinelStatus {
	var sn SentinelStatus
	v := c.view.Load()
	if removed != "" {
		sn.State, sn.Reason = SentinelRemoved, removed
		return sn
	}
	if v.sen == nil {
		sn.State, sn.Reason = SentinelUnavailable, v.reason
		return sn
	}
	// Sentinel's Status takes its own lock, never one of ours.
	ks := v.sen.Status()
	if now := c.view.Load(); now.sen != v.sen {
		// Removed meanwhile.
		sn.State, sn.Reason = SentinelUnavailable, now.reason
		return sn
	}
	sn.Adopted, sn.Programs, sn.Notes, sn.Critical = ks.Adopted, ks.Programs, ks.Notes, ks.Critical
	sn.Denied, sn.Audited, sn.Lost = ks.Stats.Denied, ks.Stats.Audited, ks.Stats.Lost
	sn.RolesRefused = ks.Roles.Refused
	sn.AuditEnd = ks.AuditEnd
	sn.Protected, sn.Watched = slices.Clone(v.protected), slices.Clone(v.watched)
	switch {
	case ks.Enforcing:
		sn.State = SentinelEnforcing
	case ks.Mode == "audit" && len(ks.Programs) > 0:
		sn.State, sn.Reason = SentinelAudit, "violations are reported, not refused"
	default:
		sn.State, sn.Reason = SentinelUnavailable, "no sentinel program attached"
	}
	if len(ks.Critical) > 0 && sn.Reason == "" {
		sn.Reason = strings.Join(ks.Critical, "; ")
	}
	return sn
}

// remove unpins Sentinel and waits until the kernel has freed its
// programs. It reports whether a Sentinel was running.
func (c *sentinelCtl) remove() (bool, error) {
	s := c.running()
	if s == nil {
		return false, nil
	}
	err := s.Remove()
	c.view.Store(&sentinelView{reason: "removed"})
	if err != nil {
		return true, fmt.Errorf("remove sentinel: %w", err)
	}
	return true, nil
}

// close releases Sentinel's file descriptors; pinned programs stay.
func (c *sentinelCtl) close() {
	if s := c.running(); s != nil {
		s.Close()
	}
}
