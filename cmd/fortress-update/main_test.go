package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/carverauto/fortress/internal/bundle"
)

// TestUpdate: only a binary signed by a key inside the protected directory
// is installed; every refusal leaves the agent binary as it was.
func TestUpdate(t *testing.T) {
	root := t.TempDir()
	protectedConfigDir = filepath.Join(root, "etc")
	os.MkdirAll(protectedConfigDir, 0o755)
	pub, priv, _ := bundle.GenerateKey()
	pubPEM, _ := bundle.MarshalPublicKey(pub)
	key := filepath.Join(protectedConfigDir, "release.pem")
	os.WriteFile(key, pubPEM, 0o644)
	rootPub, rootPriv, _ := bundle.GenerateKey()
	rootPEM, _ := bundle.MarshalPublicKey(rootPub)
	rootKey := filepath.Join(root, "mine.pem")
	os.WriteFile(rootKey, rootPEM, 0o644)
	link := filepath.Join(protectedConfigDir, "link.pem")
	os.Symlink(rootKey, link)

	bin := filepath.Join(root, "bin")
	os.MkdirAll(filepath.Join(bin, ".fortress-staging"), 0o700)
	agent := filepath.Join(bin, "fortress-agent")
	os.WriteFile(agent, []byte("old agent"), 0o755)
	newBin := filepath.Join(root, "new")
	os.WriteFile(newBin, []byte("new agent"), 0o755)
	sign := func(k ed25519.PrivateKey, name string) string {
		p := filepath.Join(root, name)
		os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(k, []byte("new agent")))+"\n"), 0o644)
		return p
	}
	good, byRoot := sign(priv, "good.sig"), sign(rootPriv, "root.sig")
	os.WriteFile(filepath.Join(root, "bad.sig"), []byte("!!"), 0o644)

	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"root's key":          {[]string{"--trust-key", rootKey, "--sig", byRoot}, "must be inside the protected directory"},
		"symlink out":         {[]string{"--trust-key", link, "--sig", byRoot}, "must be inside the protected directory"},
		"root's signature":    {[]string{"--trust-key", key, "--sig", byRoot}, "does not verify"},
		"garbage signature":   {[]string{"--trust-key", key, "--sig", filepath.Join(root, "bad.sig")}, "signature"},
		"default key missing": {[]string{"--sig", good}, "release key"},
		"no signature":        {[]string{"--trust-key", key}, "usage"},
	} {
		args := append([]string{"--agent", agent}, c.args...)
		err := run(append(args, newBin), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", name, err, c.want)
		}
		if b, _ := os.ReadFile(agent); string(b) != "old agent" {
			t.Fatalf("%s: agent binary changed to %q", name, b)
		}
	}
	var out bytes.Buffer
	if err := run([]string{"--agent", agent, "--trust-key", key, "--sig", good, newBin}, &out); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(agent); string(b) != "new agent" || !strings.Contains(out.String(), bundle.KeyID(pub)) {
		t.Fatalf("installed %q, printed %q", b, out.String())
	}
}
