//go:build linux

package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/carverauto/fortress/internal/sentinel"
)

// The agent verifies tokens with internal/sentinel; one signed here must
// verify there, and a tampered one must not.
func TestTokenVerifiesInSentinel(t *testing.T) {
	pub, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok := Token{Action: MaintenanceAudit, Host: "agent-1", NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), Nonce: "n1"}
	raw, err := SignToken(priv, tok)
	if err != nil {
		t.Fatal(err)
	}
	got, err := sentinel.VerifyToken(raw, pub, "agent-1", now)
	if err != nil {
		t.Fatal(err)
	}
	if got.Nonce != "n1" || got.Action != MaintenanceAudit || !got.NotAfter.Equal(tok.NotAfter) {
		t.Errorf("verified token %+v", got)
	}
	if _, err := sentinel.VerifyToken(raw, pub, "agent-2", now); err == nil {
		t.Error("token for agent-1 verified for agent-2")
	}
	other, err := SignToken(priv, Token{Action: MaintenanceRemove, Host: "agent-1", NotBefore: tok.NotBefore, NotAfter: tok.NotAfter, Nonce: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	parts, otherParts := strings.Split(raw, "."), strings.Split(other, ".")
	// The remove payload under the audit token's signature.
	if _, err := sentinel.VerifyToken(parts[0]+"."+otherParts[1]+"."+parts[2], pub, "agent-1", now); err == nil {
		t.Error("tampered token verified")
	}
}
