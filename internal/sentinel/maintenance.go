package sentinel

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/carverauto/fortress/internal/token"
)

// The token itself lives in internal/token (portable); these names keep
// Sentinel's callers as they were.
const (
	ActionAudit          = token.ActionAudit
	ActionRemove         = token.ActionRemove
	MaxMaintenanceWindow = token.MaxMaintenanceWindow
)

// Token is a signed, expiring grant for maintenance on one host.
type Token = token.Token

// SignToken, PeekToken and VerifyToken are token.Sign, token.Peek and
// token.Verify.
var (
	SignToken   = token.Sign
	PeekToken   = token.Peek
	VerifyToken = token.Verify
)

// modes owns sentinel_config: enforce or audit, and the end of an audit
// window, which the kernel itself enforces.
type modes struct {
	k   *kernelSet
	rec record
}

// ApplyMaintenance verifies a token and opens an audit window that the
// kernel itself closes at the token's expiry. Without a valid token
// nothing changes.
func (ms *modes) ApplyMaintenance(raw string, trust ed25519.PublicKey, host string, now time.Time) (Token, error) {
	t, err := VerifyToken(raw, trust, host, now)
	if err != nil {
		ms.rec("maintenance", "sentinel", err, nil)
		return Token{}, err
	}
	if err := ms.setMode(Audit, t.NotAfter); err != nil {
		return Token{}, err
	}
	ms.rec("maintenance", "sentinel", nil, map[string]any{"action": t.Action, "until": t.NotAfter, "nonce": t.Nonce})
	return t, nil
}

// SetEnforce ends any audit window.
func (ms *modes) SetEnforce() error { return ms.setMode(Enforce, time.Time{}) }

// setMode switches enforce/audit. until (if non-zero) ends an audit window
// in the kernel itself, whether or not the agent is alive then.
func (ms *modes) setMode(m Mode, until time.Time) error {
	v := sentinelSentinelSettings{Mode: uint32(m)}
	if m == Audit && !until.IsZero() {
		v.AuditUntilNs = uint64(bootNow() + time.Until(until).Nanoseconds())
	}
	m2, err := ms.k.live()
	if err == nil {
		err = m2.SentinelConfig.Put(uint32(0), v)
	}
	ms.rec("map_update", mapConfig, err, map[string]any{"mode": m.String(), "until": until})
	if err != nil {
		return fmt.Errorf("set mode %s: %w", m, err)
	}
	return nil
}

// Mode returns the mode in force and the end of an audit window.
func (ms *modes) Mode() (Mode, time.Time, error) {
	m, err := ms.k.live()
	if err != nil {
		return Enforce, time.Time{}, fmt.Errorf("read mode: %w", err)
	}
	var v sentinelSentinelSettings
	if err := m.SentinelConfig.Lookup(uint32(0), &v); err != nil {
		return Enforce, time.Time{}, fmt.Errorf("read mode: %w", err)
	}
	if Mode(v.Mode) != Audit {
		return Enforce, time.Time{}, nil
	}
	if v.AuditUntilNs == 0 {
		return Audit, time.Time{}, nil
	}
	left := int64(v.AuditUntilNs) - bootNow()
	if left <= 0 {
		return Enforce, time.Time{}, nil
	}
	return Audit, time.Now().Add(time.Duration(left)), nil
}
