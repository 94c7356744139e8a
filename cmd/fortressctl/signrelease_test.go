package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/carverauto/fortress/internal/bundle"
)

func TestSignRelease(t *testing.T) {
	dir := t.TempDir()
	pub, priv, _ := bundle.GenerateKey()
	privPEM, _ := bundle.MarshalPrivateKey(priv)
	key := filepath.Join(dir, "release.key")
	os.WriteFile(key, privPEM, 0o600)
	bin := filepath.Join(dir, "agent")
	os.WriteFile(bin, []byte("agent bytes"), 0o755)
	if code, err := runSignRelease(context.Background(), []string{"--key", key, bin}); code != 0 || err != nil {
		t.Fatalf("sign-release: %d %v", code, err)
	}
	raw, _ := os.ReadFile(bin + ".sig")
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || !ed25519.Verify(pub, []byte("agent bytes"), sig) {
		t.Fatalf("signature does not verify: %v", err)
	}
	if code, _ := runSignRelease(context.Background(), []string{bin}); code != 2 {
		t.Fatalf("no key: exit %d", code)
	}
}
