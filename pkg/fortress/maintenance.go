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
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	now := time.Now()
	tok, key, err := verifyToken(f.cfg.TrustKeys, f.cfg.AgentID, raw, now)
	if err != nil {
		f.audit.Record("maintenance", "token", err, nil)
		f.log.Warn("maintenance token refused", "err", err)
		return MaintenanceResult{}, fmt.Errorf("%w: %w", ErrTokenRefused, err)
	}
	res := MaintenanceResult{Action: tok.Action, Nonce: tok.Nonce, Until: tok.NotAfter, KeyID: bundle.KeyID(key), PinRoot: f.cfg.PinRoot}
	if f.removedReason() != "" {
		return res, ErrRemoved
	}
	if f.sentinel.running() == nil && tok.Action == MaintenanceAudit {
		return res, ErrNoSentinel
	}
	if err := f.tokens.spend(tok, now); err != nil {
		f.audit.Record("maintenance", "token", err, map[string]any{"nonce": tok.Nonce})
		f.log.Warn("maintenance token refused", "nonce", tok.Nonce, "err", err)
		return res, fmt.Errorf("%w: %w", ErrTokenRefused, err)
	}
	if err := f.sentinel.maintenance(raw, key, now); err != nil {
		return res, err
	}
	detail := fmt.Sprintf("maintenance token (%s, nonce %q, key %s) accepted: sentinel reports instead of refusing until %s",
		tok.Action, tok.Nonce, res.KeyID, tok.NotAfter.UTC().Format(time.RFC3339))
	f.log.Warn("maintenance window open", "action", tok.Action, "nonce", tok.Nonce, "until", tok.NotAfter, "key", res.KeyID)
	f.events.emit(Event{Kind: KindCritical, Severity: SeverityWarning, Layer: "sentinel", Detail: detail})
	if tok.Action == MaintenanceAudit {
		return res, nil
	}
	res.Removed, err = f.remove(tok)
	return res, err
}

// EndMaintenance closes an audit window at once. Tightening needs no token.
func (f *Fortress) EndMaintenance() error {
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	s := f.sentinel.running()
	if s == nil {
		return ErrNoSentinel
	}
	if err := s.SetEnforce(); err != nil {
		return err
	}
	f.log.Info("maintenance window closed")
	return nil
}

// verifyToken finds the trust key the token verifies against. A token
// that no key signed is a bad signature; one a key signed but that fails
// another check (host, expiry, action) says which.
func verifyToken(keys []ed25519.PublicKey, agentID, raw string, now time.Time) (sentinel.Token, ed25519.PublicKey, error) {
	var first error
	for _, k := range keys {
		t, err := sentinel.VerifyToken(raw, k, agentID, now)
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
// holds changeMu and has opened the audit window that lets this process,
// or an operator, finish the job should anything fail half-way.
func (f *Fortress) remove(tok sentinel.Token) ([]string, error) {
	f.cancel()
	f.wg.Wait()
	var removed []string
	var errs []error
	if ok, err := f.shield.remove(); ok {
		removed = append(removed, "shield")
		errs = append(errs, err)
	}
	if ok, err := f.sentinel.remove(); ok {
		removed = append(removed, "sentinel")
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	why := fmt.Sprintf("removed by maintenance token (nonce %q) at %s", tok.Nonce, time.Now().UTC().Format(time.RFC3339))
	f.removed.Store(&why)
	f.audit.Record("remove", f.cfg.PinRoot, err, map[string]any{"nonce": tok.Nonce, "layers": removed})
	if err != nil {
		f.events.critical("agent", "removal incomplete: "+err.Error())
		return removed, err
	}
	f.log.Warn("fortress removed from the kernel", "layers", removed, "nonce", tok.Nonce)
	return removed, nil
}
