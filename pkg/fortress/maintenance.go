//go:build linux

package fortress

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/sentinel"
)

// Maintenance actions a token can carry.
const (
	// MaintenanceAudit opens an audit window: Sentinel reports instead of
	// refusing until the token expires. The kernel closes the window by
	// itself, whether or not the agent is alive then.
	MaintenanceAudit = sentinel.ActionAudit
	// MaintenanceRemove opens the same window, then removes Fortress from
	// the kernel: Shield is detached, every pin is removed and the Sentinel
	// programs are freed.
	MaintenanceRemove = sentinel.ActionRemove
)

// ErrTokenRefused wraps every reason a maintenance token is not honoured.
var ErrTokenRefused = errors.New("refused")

// ErrNoSentinel: there is no Sentinel enforcement to relax here.
var ErrNoSentinel = errors.New("sentinel is not running here: there is no enforcement to relax")

// ErrRemoved is returned for policy changes after a maintenance removal.
var ErrRemoved = errors.New("fortress was removed by a maintenance token; restart the agent to load it again")

// Maintenance verifies a signed maintenance token for this agent (its id is
// the token's host) against the trust keys and carries it out. Without a
// token that verifies completely nothing changes, and the error says why.
func (f *Fortress) Maintenance(raw string) (MaintenanceResult, error) {
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	now := time.Now()
	tok, key, err := f.verifyToken(raw, now)
	if err != nil {
		f.audit.Record("maintenance", "token", err, nil)
		f.log.Warn("maintenance token refused", "err", err)
		return MaintenanceResult{}, fmt.Errorf("%w: %w", ErrTokenRefused, err)
	}
	res := MaintenanceResult{Action: tok.Action, Nonce: tok.Nonce, Until: tok.NotAfter, KeyID: bundle.KeyID(key), PinRoot: f.cfg.PinRoot}
	if f.isRemoved() {
		return res, ErrRemoved
	}
	if f.sen == nil && tok.Action == MaintenanceAudit {
		return res, ErrNoSentinel
	}
	if err := f.spendToken(tok, now); err != nil {
		f.audit.Record("maintenance", "token", err, map[string]any{"nonce": tok.Nonce})
		f.log.Warn("maintenance token refused", "nonce", tok.Nonce, "err", err)
		return res, fmt.Errorf("%w: %w", ErrTokenRefused, err)
	}
	if f.sen != nil {
		if _, err := f.sen.ApplyMaintenance(raw, key, f.cfg.AgentID, now); err != nil {
			return res, fmt.Errorf("open audit window: %w", err)
		}
	}
	detail := fmt.Sprintf("maintenance token (%s, nonce %q, key %s) accepted: sentinel reports instead of refusing until %s",
		tok.Action, tok.Nonce, res.KeyID, tok.NotAfter.UTC().Format(time.RFC3339))
	f.log.Warn("maintenance window open", "action", tok.Action, "nonce", tok.Nonce, "until", tok.NotAfter, "key", res.KeyID)
	f.emit(Event{Kind: KindCritical, Severity: SeverityWarning, Layer: "sentinel", Detail: detail})
	if tok.Action == MaintenanceAudit {
		return res, nil
	}
	res.Removed, err = f.remove(tok)
	return res, err
}

// isRemoved reports whether a maintenance token removed Fortress.
func (f *Fortress) isRemoved() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.removed != ""
}

// EndMaintenance closes an audit window at once. Tightening needs no token.
func (f *Fortress) EndMaintenance() error {
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	if f.sen == nil {
		return ErrNoSentinel
	}
	if err := f.sen.SetEnforce(); err != nil {
		return err
	}
	f.log.Info("maintenance window closed")
	return nil
}

// verifyToken finds the trust key the token verifies against. A token
// that no key signed is a bad signature; one a key signed but that fails
// another check (host, expiry, action) says which.
func (f *Fortress) verifyToken(raw string, now time.Time) (sentinel.Token, ed25519.PublicKey, error) {
	var first error
	for _, k := range f.cfg.TrustKeys {
		t, err := sentinel.VerifyToken(raw, k, f.cfg.AgentID, now)
		if err == nil {
			return t, k, nil
		}
		if first == nil || !strings.Contains(err.Error(), "bad signature") {
			first = err
		}
	}
	return sentinel.Token{}, nil, first
}

// remove takes Fortress out of the kernel: background work stops, Shield's
// pins go (closing its links detaches the XDP programs), then Sentinel
// unpins and waits until the kernel has freed its programs. The caller
// holds applyMu and has opened the audit window that lets this process, or
// an operator, finish the job should anything fail half-way.
func (f *Fortress) remove(tok sentinel.Token) ([]string, error) {
	f.cancel()
	f.wg.Wait()
	var removed []string
	var errs []error
	f.shMu.Lock()
	if f.sh != nil {
		if err := f.sh.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin shield: %w", err))
		}
		f.sh.Close()
		f.sh = nil
		removed = append(removed, "shield")
	}
	f.shMu.Unlock()
	if f.sen != nil {
		if err := f.sen.Remove(); err != nil {
			errs = append(errs, fmt.Errorf("remove sentinel: %w", err))
		}
		removed = append(removed, "sentinel")
	}
	err := errors.Join(errs...)
	f.mu.Lock()
	f.sen = nil
	f.removed = fmt.Sprintf("removed by maintenance token (nonce %q) at %s", tok.Nonce, time.Now().UTC().Format(time.RFC3339))
	for _, is := range f.ifaces {
		is.Attached, is.Error = false, "removed"
	}
	f.mu.Unlock()
	f.audit.Record("remove", f.cfg.PinRoot, err, map[string]any{"nonce": tok.Nonce, "layers": removed})
	if err != nil {
		f.critical("agent", "removal incomplete: "+err.Error())
		return removed, err
	}
	f.log.Warn("fortress removed from the kernel", "layers", removed, "nonce", tok.Nonce)
	return removed, nil
}
