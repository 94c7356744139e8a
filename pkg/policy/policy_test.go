package policy

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/carverauto/fortress/internal/bundle"
)

func TestSignedBundleVerifies(t *testing.T) {
	pub, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := Sign(Body{Version: 3, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{"a1"},
		Payload: Payload{Shield: &Shield{Mode: ShieldEnforce, Rules: []Rule{{CIDR: "192.0.2.0/24", Action: ActionDrop}}}}}, priv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Parse(raw, bundle.Options{Keys: []ed25519.PublicKey{pub}, AgentID: "a1", Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if b.Version != 3 || b.KeyID != KeyID(pub) {
		t.Errorf("parsed %d %s", b.Version, b.KeyID)
	}
	_, err = bundle.Parse(raw, bundle.Options{Keys: []ed25519.PublicKey{pub}, AgentID: "a2", Now: time.Now()})
	if !errors.Is(err, ErrNotForAgent) || Reason(err) != "not_for_agent" {
		t.Errorf("other agent: %v (%s)", err, Reason(err))
	}
	pem, err := MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ParsePublicKeys(pem)
	if err != nil || len(keys) != 1 || !keys[0].Equal(pub) {
		t.Errorf("public key round trip: %v %v", keys, err)
	}
}

func TestSignTokenRefusesBadWindow(t *testing.T) {
	_, priv, _ := GenerateKey()
	now := time.Now()
	for _, tok := range []Token{
		{Action: "open", Host: "h", NotBefore: now, NotAfter: now.Add(time.Hour), Nonce: "n"},
		{Action: MaintenanceAudit, Host: "", NotBefore: now, NotAfter: now.Add(time.Hour), Nonce: "n"},
		{Action: MaintenanceAudit, Host: "h", NotBefore: now, NotAfter: now.Add(25 * time.Hour), Nonce: "n"},
		{Action: MaintenanceAudit, Host: "h", NotBefore: now, NotAfter: now, Nonce: "n"},
	} {
		if _, err := SignToken(priv, tok); err == nil {
			t.Errorf("signed %+v", tok)
		}
	}
}
