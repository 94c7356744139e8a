package sentinel

import (
	"crypto/ed25519"
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

// ApplyMaintenance verifies a token and opens an audit window that the
// kernel itself closes at the token's expiry. Without a valid token
// nothing changes.
func (s *Sentinel) ApplyMaintenance(raw string, trust ed25519.PublicKey, host string, now time.Time) (Token, error) {
	t, err := VerifyToken(raw, trust, host, now)
	if err != nil {
		s.record("maintenance", "sentinel", err, nil)
		return Token{}, err
	}
	if err := s.setMode(Audit, t.NotAfter); err != nil {
		return Token{}, err
	}
	s.record("maintenance", "sentinel", nil, map[string]any{"action": t.Action, "until": t.NotAfter, "nonce": t.Nonce})
	return t, nil
}

// SetEnforce ends any audit window.
func (s *Sentinel) SetEnforce() error { return s.setMode(Enforce, time.Time{}) }
