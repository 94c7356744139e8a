package sentinel

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"
)

func TestMaintenanceToken(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	otherPub, otherPriv, _ := ed25519.GenerateKey(nil)
	_ = otherPub
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	good := Token{Action: ActionAudit, Host: "h1", NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), Nonce: "n"}
	raw, err := SignToken(priv, good)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := VerifyToken(raw, pub, "h1", now); err != nil || got.Action != ActionAudit {
		t.Fatalf("valid token refused: %v", err)
	}
	forged, _ := SignToken(otherPriv, good)
	expired := good
	expired.NotAfter = now.Add(-time.Second)
	rawExpired, _ := SignToken(priv, expired)
	long := good
	long.NotAfter = now.Add(48 * time.Hour)
	rawLong, _ := SignToken(priv, long)
	bad := good
	bad.Action = "disable"
	rawBad, _ := SignToken(priv, bad)
	parts := strings.Split(raw, ".")
	tampered := parts[0] + "." + parts[1] + "x." + parts[2]
	for name, c := range map[string]struct {
		raw, host string
		want      string
	}{
		"other key":    {forged, "h1", "bad signature"},
		"other host":   {raw, "h2", "for host"},
		"expired":      {rawExpired, "h1", "expired"},
		"too long":     {rawLong, "h1", "window longer"},
		"unknown":      {rawBad, "h1", "unknown action"},
		"tampered":     {tampered, "h1", "maintenance token"},
		"garbage":      {"hello", "h1", "malformed"},
		"no signature": {parts[0] + "." + parts[1], "h1", "malformed"},
	} {
		if _, err := VerifyToken(c.raw, pub, c.host, now); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", name, err, c.want)
		}
	}
	if _, err := VerifyToken(raw, pub, "h1", now.Add(-time.Hour)); err == nil {
		t.Error("token accepted before not_before")
	}
}
