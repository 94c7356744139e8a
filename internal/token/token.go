package token

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Maintenance actions a token can grant.
const (
	// ActionAudit switches Sentinel to audit mode until the token expires.
	ActionAudit = "audit"
	// ActionRemove does the same, so that the CLI can unpin and remove
	// Fortress before the window closes.
	ActionRemove = "remove"
)

// MaxMaintenanceWindow bounds how long one token may open audit mode.
const MaxMaintenanceWindow = 24 * time.Hour

// Token is a signed, expiring grant for maintenance on one host.
type Token struct {
	Action    string    `json:"action"`
	Host      string    `json:"host"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Nonce     string    `json:"nonce"`
}

// tokenPrefix versions the encoding: "fmt1.<payload b64>.<signature b64>".
const tokenPrefix = "fmt1"

// Sign encodes and signs t with the trust key's private half.
func Sign(priv ed25519.PrivateKey, t Token) (string, error) {
	payload, err := json.Marshal(t)
	if err != nil {
		return "", err
	}
	sig := ed25519.Sign(priv, append([]byte(tokenPrefix+"."), payload...))
	enc := base64.RawURLEncoding
	return tokenPrefix + "." + enc.EncodeToString(payload) + "." + enc.EncodeToString(sig), nil
}

// Peek decodes a token without verifying it, for tools that show what
// a token asks for. Nothing may be granted on its word.
func Peek(raw string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(raw), ".")
	if len(parts) != 3 || parts[0] != tokenPrefix {
		return Token{}, errors.New("maintenance token: malformed")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return Token{}, fmt.Errorf("maintenance token: payload: %w", err)
	}
	var t Token
	if err := json.Unmarshal(payload, &t); err != nil {
		return Token{}, fmt.Errorf("maintenance token: %w", err)
	}
	return t, nil
}

// Verify checks the signature against the trust key, the host, the
// validity window and the action. Anything short of all of it is refused.
func Verify(raw string, trust ed25519.PublicKey, host string, now time.Time) (Token, error) {
	parts := strings.Split(strings.TrimSpace(raw), ".")
	if len(parts) != 3 || parts[0] != tokenPrefix {
		return Token{}, errors.New("maintenance token: malformed")
	}
	enc := base64.RawURLEncoding
	payload, err := enc.DecodeString(parts[1])
	if err != nil {
		return Token{}, fmt.Errorf("maintenance token: payload: %w", err)
	}
	sig, err := enc.DecodeString(parts[2])
	if err != nil {
		return Token{}, fmt.Errorf("maintenance token: signature: %w", err)
	}
	if len(trust) != ed25519.PublicKeySize {
		return Token{}, errors.New("maintenance token: no trust key")
	}
	if !ed25519.Verify(trust, append([]byte(tokenPrefix+"."), payload...), sig) {
		return Token{}, errors.New("maintenance token: bad signature")
	}
	var t Token
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return Token{}, fmt.Errorf("maintenance token: %w", err)
	}
	switch {
	case t.Action != ActionAudit && t.Action != ActionRemove:
		return Token{}, fmt.Errorf("maintenance token: unknown action %q", t.Action)
	case t.Host != host:
		return Token{}, fmt.Errorf("maintenance token: for host %q, not %q", t.Host, host)
	case now.Before(t.NotBefore):
		return Token{}, errors.New("maintenance token: not valid yet")
	case !now.Before(t.NotAfter):
		return Token{}, errors.New("maintenance token: expired")
	case t.NotAfter.Sub(t.NotBefore) > MaxMaintenanceWindow:
		return Token{}, errors.New("maintenance token: window longer than allowed")
	}
	return t, nil
}
