package policy

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Maintenance actions a token can carry.
const (
	// MaintenanceAudit opens a Sentinel audit window until the token
	// expires.
	MaintenanceAudit = "audit"
	// MaintenanceRemove opens the window and removes Fortress from the
	// kernel.
	MaintenanceRemove = "remove"
)

// MaxMaintenanceWindow bounds how long one token may open a window.
const MaxMaintenanceWindow = 24 * time.Hour

// Token is a maintenance grant for one host (the agent's id).
type Token struct {
	Action    string    `json:"action"`
	Host      string    `json:"host"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// Nonce makes the token single-use: an agent honours a nonce once.
	Nonce string `json:"nonce"`
}

// tokenFormat versions the encoding "fmt1.<payload>.<signature>", both
// parts unpadded base64url; the signature covers "fmt1." and the payload.
const tokenFormat = "fmt1"

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
	payload, err := json.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	sig := ed25519.Sign(priv, append([]byte(tokenFormat+"."), payload...))
	enc := base64.RawURLEncoding
	return tokenFormat + "." + enc.EncodeToString(payload) + "." + enc.EncodeToString(sig), nil
}
