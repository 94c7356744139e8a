package policy

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/carverauto/fortress/internal/token"
)

// Maintenance actions a token can carry.
const (
	// MaintenanceAudit opens a Sentinel audit window until the token
	// expires.
	MaintenanceAudit = token.ActionAudit
	// MaintenanceRemove opens the window and removes Fortress from the
	// kernel.
	MaintenanceRemove = token.ActionRemove
)

// MaxMaintenanceWindow bounds how long one token may open a window.
const MaxMaintenanceWindow = token.MaxMaintenanceWindow

// Token is a maintenance grant for one host (the agent's id); its Nonce
// makes it single-use: an agent honours a nonce once.
type Token = token.Token

// SignToken encodes and signs t with a trust key's private half.
func SignToken(priv ed25519.PrivateKey, t Token) (string, error) {
	if t.Action != MaintenanceAudit && t.Action != MaintenanceRemove {
		return "", fmt.Errorf("sign token: action %q is not audit or remove", t.Action)
	}
	if t.Host == "" || t.Nonce == "" {
		return "", errors.New("sign token: host and nonce are required")
	}
	if !t.NotAfter.After(t.NotBefore) || t.NotAfter.Sub(t.NotBefore) > MaxMaintenanceWindow {
		return "", fmt.Errorf("sign token: window must be positive and at most %s", MaxMaintenanceWindow)
	}
	raw, err := token.Sign(priv, t)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return raw, nil
}
