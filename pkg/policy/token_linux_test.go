//go:build linux

package policy

import (
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
	if _, err := sentinel.VerifyToken(raw[:len(raw)-2]+"AA", pub, "agent-1", now); err == nil {
		t.Error("tampered token verified")
	}
}
