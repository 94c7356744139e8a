//go:build linux

package fortress

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/rlimit"

	"github.com/carverauto/fortress/internal/bundle"
)

// Fortress is a running instance. It is a coordinator over one controller
// per layer, each the only owner of its state:
//
//   - shield (shieldCtl): loading or adopting Shield, attachment, the
//     management addresses, rule sets, counters and dry-run samples;
//   - sentinel (sentinelCtl): protected and watched paths, events, the
//     guard over Shield's pins;
//   - policy (policyCtl): verification, the policy in force, its undo, and
//     the record of the last applied bundle.
//
// Locking: changeMu serialises every change of what is enforced (bundles,
// maintenance, removal); a controller changes its state only under it, or
// before Start returns. The only other locks are shieldCtl.mu (held shared
// while Shield is used, exclusively to close it; taken after changeMu) and
// leaves that are never held while calling out (counterState.mu,
// auditRecorder.mu, Shield's and Sentinel's own). Status reads the
// controllers' atomically published snapshots and takes none of them, so
// it never waits for an apply.
type Fortress struct {
	cfg     Config
	log     *slog.Logger
	kernel  KernelReport
	started time.Time

	audit    *auditRecorder
	events   *eventSink
	shield   *shieldCtl
	sentinel *sentinelCtl
	policy   *policyCtl
	tokens   tokenLedger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	changeMu sync.Mutex
	// removed says when and by which token Fortress was removed ("" while
	// it runs).
	removed atomic.Pointer[string]
}

// Start brings Fortress up: audit log, policy state, Sentinel, Shield
// (adopting pinned state), the last applied policy, interfaces. Shield
// failures do not fail Start (Status reports them); configuration errors,
// an unusable trust setup or a last-applied bundle that no longer verifies
// do.
func Start(ctx context.Context, cfg Config) (*Fortress, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	f := &Fortress{cfg: cfg, log: cfg.Logger, started: time.Now(), tokens: newTokenLedger(cfg.StateDir, cfg.Logger)}
	f.ctx, f.cancel = context.WithCancel(context.WithoutCancel(ctx))
	f.events = newEventSink(cfg.EventBuffer, f.log)
	// Audit first: everything after it changes kernel state.
	f.audit = openAudit(cfg.AuditLog, f.log, f.events)

	f.shield = newShieldCtl(&f.cfg, f.audit, f.events)
	f.sentinel = newSentinelCtl(&f.cfg, f.audit, f.events)
	p, err := newPolicyCtl(&f.cfg, f.audit, f.events, f.shield, f.sentinel)
	if err != nil {
		f.audit.close()
		return nil, fmt.Errorf("fortress: %w", err)
	}
	f.policy = p
	if cfg.Kernel != nil {
		f.kernel = *cfg.Kernel
	} else {
		f.kernel = ProbeKernel()
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		f.log.Warn("remove memlock limit", "err", err)
	}

	// The last applied policy decides the management addresses and extra
	// Sentinel paths, so convert it before either layer loads.
	last, lastErr := p.lastPolicy(f.ctx)
	f.sentinel.start(last, f.kernel)
	f.shield.start(last)
	// The last policy's list is read only when Shield does not hold its
	// set already (pinned tables adopted): a restart then neither reads
	// nor compiles a large list.
	if last != nil && last.list != nil && !f.shield.holds(last.shieldSetID()) {
		if lastErr = last.loadList(f.ctx, p.lists.get); lastErr != nil {
			f.log.Error("last applied bundle cannot be converted", "version", last.version, "err", lastErr)
		}
	}
	p.reapply(f.ctx, last, lastErr)
	f.shield.attachAll()
	f.sentinel.guardShield()

	f.background(func(ctx context.Context) { f.shield.pollCounters(ctx, f.policy.dryRun) })
	if f.sentinel.running() != nil {
		f.background(f.sentinel.readEvents)
	}
	if f.shield.loaded() {
		f.background(f.shield.readSamples)
	}
	st := f.Status()
	f.log.Info("fortress started", "agent", cfg.AgentID, "shield", st.Shield.State, "shield_reason", st.Shield.Reason,
		"sentinel", st.Sentinel.State, "sentinel_reason", st.Sentinel.Reason, "policy_version", st.Policy.Version)
	return f, nil
}

// background runs fn until Stop (or a removal).
func (f *Fortress) background(fn func(ctx context.Context)) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		fn(f.ctx)
	}()
}

// Stop stops the background work and releases file descriptors. Pinned
// programs stay attached and keep enforcing.
func (f *Fortress) Stop() {
	f.once.Do(func() {
		f.cancel()
		f.wg.Wait()
		// A change in flight finishes first; the next one finds the
		// layers closed and fails.
		f.changeMu.Lock()
		defer f.changeMu.Unlock()
		f.shield.close()
		f.sentinel.close()
		f.audit.close()
		f.log.Info("fortress stopped; pinned programs keep enforcing")
	})
}

// Events delivers FIM and violation events from Sentinel, dry-run samples
// from Shield and critical events. When the channel is full, events are
// dropped and counted in Status.
func (f *Fortress) Events() <-chan Event { return f.events.ch }

// ApplyBundle verifies a signed bundle (signature, target, version above the
// last applied), converts it completely and applies it: Shield's rule set in
// one atomic swap, then Sentinel's paths. On any error the policy in force
// is unchanged and the error names the problem; bundle.Reason-style codes
// are available through RefusalReason.
func (f *Fortress) ApplyBundle(raw []byte) (Ack, error) {
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	if f.removedReason() != "" {
		return Ack{}, ErrRemoved
	}
	return f.policy.apply(f.ctx, raw)
}

// RefusalReason is a short stable code for an ApplyBundle error
// ("bad_signature", "rollback", ...; "error" for other failures).
func RefusalReason(err error) string { return bundle.Reason(err) }

// removedReason says when and by which token Fortress was removed, "" if
// it was not.
func (f *Fortress) removedReason() string {
	if r := f.removed.Load(); r != nil {
		return *r
	}
	return ""
}

// Kernel returns the kernel report Start used.
func (f *Fortress) Kernel() KernelReport { return f.kernel }

// Counters reads every rule in force with its counters, busiest first.
func (f *Fortress) Counters() ([]RuleCounter, error) { return f.shield.ruleCounters(f.policy.dryRun()) }

// TopCounters returns the busiest rules (at most Config.TopRules) and the
// packets and bytes of all rules summed by kind, as of the last periodic
// read. It is cheap at any rule count.
func (f *Fortress) TopCounters() (top []RuleCounter, sums map[string][2]uint64) {
	return f.shield.counters.busiest()
}

// Status reports the state of every layer, never claiming protection that
// is not in force. It is assembled from the controllers' snapshots and
// waits for no change in progress.
func (f *Fortress) Status() Status {
	removed := f.removedReason()
	st := Status{AgentID: f.cfg.AgentID, AgentVersion: f.cfg.AgentVersion, Started: f.started, Kernel: f.kernel.Release}
	st.Policy = f.policy.status()
	st.Shield = f.shield.status(f.policy.inForce(), removed)
	st.Sentinel = f.sentinel.status(removed)
	st.Audit = f.audit.status()
	st.Events = f.events.stats()

	if ss := st.Shield; ss.State == ShieldDegraded || ss.State == ShieldRemoved {
		st.Degraded = append(st.Degraded, "shield: "+ss.Reason)
	}
	if sn := st.Sentinel; sn.State != SentinelEnforcing {
		st.Degraded = append(st.Degraded, "sentinel: "+sn.State+": "+sn.Reason)
	}
	if !st.Audit.OK {
		st.Degraded = append(st.Degraded, "audit log: "+st.Audit.Reason)
	}
	if pl := st.Policy; pl.Version > 0 && !pl.InForce {
		st.Degraded = append(st.Degraded, "policy: version "+fmt.Sprint(pl.Version)+" not in force: "+pl.LastError)
	}
	return st
}
