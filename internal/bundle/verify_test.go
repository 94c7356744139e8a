package bundle

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestVerifyPure: Verify depends on its arguments only: the same bytes are
// accepted or refused by the last version passed in, and nothing is
// written anywhere.
func TestVerifyPure(t *testing.T) {
	pub, priv, _ := GenerateKey()
	opt := Options{Keys: []ed25519.PublicKey{pub}, AgentID: "agent-1", Now: t0.Add(time.Hour)}
	data := mustSign(t, testBody(5), priv)
	for _, c := range []struct {
		last uint64
		want error
	}{{0, nil}, {4, nil}, {5, ErrReplay}, {6, ErrRollback}, {0, nil}} {
		b, err := Verify(data, opt, c.last)
		if !errors.Is(err, c.want) || (err == nil && b.Version != 5) {
			t.Fatalf("last %d: %v, want %v", c.last, err, c.want)
		}
	}
	mine := mustSign(t, testBody(5, "agent-1"), priv)
	if _, err := Verify(mine, Options{Keys: opt.Keys, AgentID: "agent-2", Now: opt.Now}, 0); !errors.Is(err, ErrNotForAgent) {
		t.Fatalf("other agent: %v", err)
	}
}

// TestReadStored: no file is no bundle; a stored bundle verifies even
// when expired; a tampered one is an error, never version 0.
func TestReadStored(t *testing.T) {
	pub, priv, _ := GenerateKey()
	opt := Options{Keys: []ed25519.PublicKey{pub}, AgentID: "agent-1", Now: t0.Add(48 * time.Hour)}
	path := filepath.Join(t.TempDir(), StateFile)
	if b, err := ReadStored(path, opt); b != nil || err != nil {
		t.Fatalf("no file: %v %v", b, err)
	}
	body := testBody(7)
	exp := t0.Add(time.Hour)
	body.ExpiresAt = &exp
	data := mustSign(t, body, priv)
	os.WriteFile(path, data, 0o600)
	if b, err := ReadStored(path, opt); err != nil || b.Version != 7 {
		t.Fatalf("stored: %v %v", b, err)
	}
	data[len(data)-3] ^= 1
	os.WriteFile(path, data, 0o600)
	if b, err := ReadStored(path, opt); err == nil {
		t.Fatalf("tampered: %v", b)
	}
}
