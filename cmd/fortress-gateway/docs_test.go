package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/carverauto/fortress/internal/bundle"
)

func readRepo(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile("../../" + path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestExampleConfigGatewayPort: the example agent configuration dials the
// port the gateway listens on by default.
func TestExampleConfigGatewayPort(t *testing.T) {
	var cfg struct {
		Gateway struct {
			Address string `json:"address"`
		} `json:"gateway"`
	}
	if err := json.Unmarshal([]byte(readRepo(t, "deploy/fortress-agent.example.json")), &cfg); err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(cfg.Gateway.Address)
	if err != nil {
		t.Fatal(err)
	}
	_, def, _ := net.SplitHostPort(defaultGRPCListen)
	if port != def {
		t.Fatalf("example config dials port %s; the gateway listens on %s by default", port, def)
	}
}

// TestDocs: the README links the install guide and does not claim the
// gateway signs policy; the guide's payload example is a valid payload
// (strictly decoded, signed into a bundle and verified as an agent would).
func TestDocs(t *testing.T) {
	readme := readRepo(t, "README.md")
	if !strings.Contains(readme, "(docs/INSTALL.md)") {
		t.Fatal("README does not link docs/INSTALL.md")
	}
	for _, claim := range regexp.MustCompile(`(?i)gateway[^.]{0,40}\bsigns\b`).FindAllString(readme, -1) {
		t.Errorf("README claims the gateway signs: %q", claim)
	}
	guide := readRepo(t, "docs/INSTALL.md")
	for _, want := range []string{"fortress-agent", "fortress-gateway", "fortressctl pki init", "fortressctl keygen", "useradd", "systemctl enable",
		"fortressctl sign", "fortressctl push", "list_ref", "log_only"} {
		if !strings.Contains(guide, want) {
			t.Errorf("INSTALL.md lacks %q", want)
		}
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(guide, -1)
	if len(blocks) != 1 {
		t.Fatalf("INSTALL.md has %d JSON examples, want the one payload", len(blocks))
	}
	var p bundle.Payload
	dec := json.NewDecoder(bytes.NewReader([]byte(blocks[0][1])))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("payload example: %v", err)
	}
	if p.Shield == nil || len(p.Shield.Rules) < 3 || p.Sentinel == nil || p.Gateways == nil {
		t.Fatalf("payload example lacks a section: %+v", p)
	}
	pub, priv, err := bundle.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := bundle.Sign(bundle.Body{Version: 1, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{"edge-01"}, Payload: p}, priv)
	if err != nil {
		t.Fatalf("sign payload example: %v", err)
	}
	v, err := bundle.NewVerifier(bundle.Config{Keys: []ed25519.PublicKey{pub}, AgentID: "edge-01", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Accept(raw, nil); err != nil {
		t.Fatalf("verify payload example: %v", err)
	}
}
