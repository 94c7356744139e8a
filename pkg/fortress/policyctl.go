//go:build linux

package fortress

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/carverauto/fortress/internal/auditlog"
	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/statedir"
)

// policyCtl is the one owner of policy state: it verifies bundles (a pure
// function of the bytes, the trust keys, the agent id and the last applied
// version), applies them through the layer controllers, and records the
// last applied bundle in the state directory, in one place. It keeps the
// policy in force and can undo it.
//
// Its state is published atomically (last, view) and changes only at start
// and under Fortress.changeMu; readers take no lock.
type policyCtl struct {
	cfg      *Config
	file     string // the last applied bundle, in the state directory
	lists    listCache
	audit    *auditRecorder
	events   *eventSink
	shield   *shieldCtl
	sentinel *sentinelCtl

	last atomic.Pointer[bundle.Bundle]
	view atomic.Pointer[policyView]
}

// policyView is the policy in force as Status shows it.
type policyView struct {
	inForce *policy
	// ok is false when the last applied bundle could not be re-applied.
	ok        bool
	notes     []string
	appliedAt time.Time
	lastErr   string
	lastErrAt time.Time
}

// newPolicyCtl reads the last applied bundle from the state directory. A
// record that no longer verifies is an error: starting from version 0
// would reopen the door to rollbacks, so the agent must not silently do so.
func newPolicyCtl(cfg *Config, audit *auditRecorder, events *eventSink, sh *shieldCtl, sen *sentinelCtl) (*policyCtl, error) {
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("bundle state dir: %w", err)
	}
	c := &policyCtl{cfg: cfg, file: filepath.Join(cfg.StateDir, statedir.LastBundle), audit: audit, events: events,
		shield: sh, sentinel: sen,
		lists: listCache{dir: filepath.Join(cfg.StateDir, statedir.Lists), fetch: cfg.FetchList}}
	last, err := bundle.ReadStored(c.file, c.options())
	if err != nil {
		return nil, err
	}
	if last != nil {
		c.last.Store(last)
	}
	c.view.Store(&policyView{})
	return c, nil
}

func (c *policyCtl) options() bundle.Options {
	return bundle.Options{Keys: c.cfg.TrustKeys, AgentID: c.cfg.AgentID, Now: time.Now()}
}

// version is the last applied bundle's version, 0 if none.
func (c *policyCtl) version() uint64 {
	if b := c.last.Load(); b != nil {
		return b.Version
	}
	return 0
}

// inForce is the policy in force, nil if none.
func (c *policyCtl) inForce() *policy { return c.view.Load().inForce }

// dryRun reports whether the policy in force only counts.
func (c *policyCtl) dryRun() bool {
	p := c.inForce()
	return p != nil && p.dryRun
}

func (c *policyCtl) update(fn func(v *policyView)) {
	v := *c.view.Load()
	fn(&v)
	c.view.Store(&v)
}

func (c *policyCtl) failed(err error) {
	c.update(func(v *policyView) { v.lastErr, v.lastErrAt = err.Error(), time.Now() })
}

// lastPolicy converts the last applied bundle with its list deferred (read
// only if Shield does not hold its set already).
func (c *policyCtl) lastPolicy(ctx context.Context) (*policy, error) {
	b := c.last.Load()
	if b == nil {
		return nil, nil
	}
	p, err := convert(ctx, b, deferList)
	if err != nil {
		c.events.log.Error("last applied bundle cannot be converted", "version", b.Version, "err", err)
	}
	return p, err
}

// reapply puts the last applied policy back in force at start (convErr:
// it could not be converted). An expired last bundle is still re-applied:
// expiry bounds when a bundle may be accepted, and dropping to no policy
// at all on restart would be the weaker choice.
func (c *policyCtl) reapply(ctx context.Context, p *policy, convErr error) {
	b := c.last.Load()
	if b == nil {
		return
	}
	err := convErr
	if err == nil {
		_, _, err = c.enforce(ctx, p)
	}
	if err != nil {
		err = fmt.Errorf("re-apply bundle version %d: %w", b.Version, err)
		c.failed(err)
		c.events.critical("agent", "last applied policy not re-applied: "+err.Error())
		return
	}
	c.events.log.Info("policy re-applied", "version", b.Version, "digest", b.Digest)
}

// apply verifies raw against the last applied version, converts it
// completely, puts it in force and records it. On any error the policy in
// force and the record are unchanged.
func (c *policyCtl) apply(ctx context.Context, raw []byte) (Ack, error) {
	log := c.events.log
	start := time.Now()
	ack, b, err := c.verifyAndEnforce(ctx, raw, start)
	if err != nil {
		c.failed(err)
		c.audit.Record(auditlog.ActionPolicySwap, "bundle", err, map[string]any{"reason": bundle.Reason(err)})
		log.Warn("bundle refused", "reason", bundle.Reason(err), "err", err)
		return Ack{}, err
	}
	c.audit.Record(auditlog.ActionPolicySwap, "bundle", nil, map[string]any{
		"version": b.Version, "digest": "sha256:" + b.Digest, "key_id": b.KeyID, "rules": ack.Rules,
		"shield_mode": ack.ShieldMode, "generation": ack.Generation,
	})
	if p := c.inForce(); p != nil && p.listRef != "" {
		c.lists.prune(p.listRef)
	}
	// A larger rule set may have moved Shield to new maps: guard them too.
	c.sentinel.guardShield()
	log.Info("bundle applied", "version", b.Version, "rules", ack.Rules, "mode", ack.ShieldMode, "took", time.Since(start),
		"notes", strings.Join(ack.Notes, "; "))
	return ack, nil
}

func (c *policyCtl) verifyAndEnforce(ctx context.Context, raw []byte, start time.Time) (Ack, *bundle.Bundle, error) {
	log := c.events.log
	b, err := bundle.Verify(raw, c.options(), c.version())
	if err != nil {
		return Ack{}, nil, err
	}
	// Progress for large policies: verified, converted, applied.
	log.Info("bundle verified, converting", "version", b.Version, "bytes", len(raw), "took", time.Since(start))
	p, err := convert(ctx, b, c.lists.get)
	if err != nil {
		return Ack{}, nil, fmt.Errorf("apply bundle version %d: %w", b.Version, err)
	}
	log.Info("bundle converted, applying", "version", b.Version, "rules", len(p.rules), "took", time.Since(start))
	ack, undo, err := c.enforce(ctx, p)
	if err != nil {
		return Ack{}, nil, fmt.Errorf("apply bundle version %d: %w", b.Version, err)
	}
	// Recorded on disk first, then published: versions only ever increase,
	// across restarts too.
	if err := statedir.WriteFile(c.file, b.Raw, 0o600); err != nil {
		// Applied but not recorded: put the previous policy back, so that
		// kernel and record agree.
		undo()
		return Ack{}, nil, fmt.Errorf("record bundle version %d: %w", b.Version, err)
	}
	c.last.Store(b)
	return ack, b, nil
}

// enforce puts p in force through the layers. On error everything it
// changed is put back. undo reverts a successful enforce.
func (c *policyCtl) enforce(ctx context.Context, p *policy) (Ack, func(), error) {
	ack := Ack{Version: p.version, Digest: p.digest, KeyID: p.keyID, Rules: len(p.rules), Duplicates: p.duplicates,
		ShieldMode: bundle.ShieldEnforce}
	if p.dryRun {
		ack.ShieldMode = bundle.ShieldDryRun
	}
	// Check everything that can be checked before touching the kernel.
	want, err := mergeManagement(c.cfg.Gateways, p.management)
	if err != nil {
		return ack, nil, fmt.Errorf("payload.%w", err)
	}
	if err := c.sentinel.check(p.sentinel); err != nil {
		return ack, nil, err
	}
	prev := c.inForce()

	var notes []string
	res, loaded, undoShield, err := c.shield.enforce(ctx, p, prev, want, c.lists.get)
	if err != nil {
		return ack, nil, err
	}
	if loaded {
		if p.list != nil {
			ack.Rules = res.Rules
		}
		if res.Reloaded {
			c.sentinel.guardShield()
		}
		ack.Generation = res.Generation
		ack.Compile, ack.Swap = res.Compile.String(), res.Swap.String()
	} else {
		notes = append(notes, "shield degraded: the rule set is recorded and applies once shield loads")
	}
	senNotes, err := c.sentinel.enforce(p.sentinel)
	if err != nil {
		// Paths protected so far stay protected (fail closed); Shield goes
		// back to its previous set.
		undoShield()
		return ack, nil, err
	}
	notes = append(notes, senNotes...)

	ack.Notes = notes
	c.update(func(v *policyView) {
		v.inForce, v.ok, v.notes, v.appliedAt = p, true, notes, time.Now()
	})
	return ack, func() {
		undoShield()
		c.update(func(v *policyView) { v.inForce = prev })
	}, nil
}

// status is the policy's part of Status.
func (c *policyCtl) status() PolicyStatus {
	v := c.view.Load()
	pl := PolicyStatus{Version: c.version(), InForce: v.ok, AppliedAt: v.appliedAt, Notes: slices.Clone(v.notes),
		LastError: v.lastErr, LastErrorAt: v.lastErrAt}
	if v.inForce != nil {
		pl.Digest, pl.KeyID = v.inForce.digest, v.inForce.keyID
	}
	return pl
}
