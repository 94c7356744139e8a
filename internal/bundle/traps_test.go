package bundle

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// signUnchecked signs body as an older signer that did not validate would.
func signUnchecked(t *testing.T, body Body, priv ed25519.PrivateKey) []byte {
	t.Helper()
	canon, err := body.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(Envelope{Format: Format, KeyID: KeyID(priv.Public().(ed25519.PublicKey)),
		Signature: ed25519.Sign(priv, signedMessage(canon)), Body: canon})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestIntakeTraps: what an agent refuses, Sign refuses as well, and a
// bundle signed without these checks is refused by Parse (the path of the
// agent, of fortressctl verify and of the gateway), naming the entry.
func TestIntakeTraps(t *testing.T) {
	pub, priv, _ := GenerateKey()
	shield := func(rules ...Rule) Payload { return Payload{Shield: &Shield{Mode: ShieldEnforce, Rules: rules}} }
	cases := []struct {
		name    string
		payload Payload
		want    string
	}{
		{"empty rule set", shield(), "payload.shield: no rules"},
		{"host bits", shield(Rule{CIDR: "192.0.2.0/24", Action: ActionDrop}, Rule{CIDR: "10.1.2.3/24", Action: ActionDrop}),
			`payload.shield.rules[1].cidr "10.1.2.3/24": host bits set: 10.1.2.3/24 is not a network address (the network is 10.1.2.0/24)`},
		{"IPv4-mapped", shield(Rule{CIDR: "::ffff:10.1.2.3/128", Action: ActionDrop}),
			`payload.shield.rules[0].cidr "::ffff:10.1.2.3/128": IPv4-mapped IPv6 address never matches IPv4 traffic: write 10.1.2.3/32 instead`},
		{"conflicting duplicates", shield(Rule{CIDR: "10.0.0.0/8", Action: ActionDrop}, Rule{CIDR: "10.0.0.0/8", Action: ActionAllow}),
			"payload.shield.rules[1] (10.0.0.0/8 allow): conflicts with rules[0] (10.0.0.0/8 drop)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := Body{Version: 1, IssuedAt: time.Now(), Targets: []string{AllAgents}, Payload: c.payload}
			if _, err := Sign(body, priv); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Sign: %v, want %q", err, c.want)
			}
			_, err := Parse(signUnchecked(t, body, priv), Options{Keys: []ed25519.PublicKey{pub}})
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse: %v, want %q", err, c.want)
			}
		})
	}
	// An exact repeat is no conflict, and allow_empty says an empty set
	// is meant.
	ok := Body{Version: 1, IssuedAt: time.Now(), Targets: []string{AllAgents},
		Payload: shield(Rule{CIDR: "10.0.0.0/8", Action: ActionDrop}, Rule{CIDR: "10.0.0.0/8", Action: ActionDrop})}
	if _, err := Sign(ok, priv); err != nil {
		t.Fatalf("exact repeat: %v", err)
	}
	ok.Payload = Payload{Shield: &Shield{Mode: ShieldEnforce, AllowEmpty: true}}
	if _, err := Sign(ok, priv); err != nil {
		t.Fatalf("allow_empty: %v", err)
	}
}

// TestStoredStateSparedNewChecks: the agent's own last-applied bundle,
// accepted before these checks existed, still loads at start (the agent
// must not be locked out by its own state), while the same bytes pushed
// anew are refused.
func TestStoredStateSparedNewChecks(t *testing.T) {
	pub, priv, _ := GenerateKey()
	dir := t.TempDir()
	old := signUnchecked(t, Body{Version: 3, IssuedAt: time.Now(), Targets: []string{AllAgents},
		Payload: Payload{Shield: &Shield{Mode: ShieldEnforce}}}, priv)
	if err := os.WriteFile(filepath.Join(dir, StateFile), old, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(Config{Keys: []ed25519.PublicKey{pub}, AgentID: "a", StateDir: dir})
	if err != nil {
		t.Fatalf("stored state refused: %v", err)
	}
	if v.LastVersion() != 3 {
		t.Fatalf("last version %d", v.LastVersion())
	}
	newer := signUnchecked(t, Body{Version: 4, IssuedAt: time.Now(), Targets: []string{AllAgents},
		Payload: Payload{Shield: &Shield{Mode: ShieldEnforce}}}, priv)
	if _, err := v.Check(newer); !errors.Is(err, ErrEmptyRules) {
		t.Fatalf("new empty bundle: %v, want ErrEmptyRules", err)
	}
}

// TestJunkNotEchoed: junk in a bundle's fields comes back quoted and cut.
func TestJunkNotEchoed(t *testing.T) {
	_, priv, _ := GenerateKey()
	junk := strings.Repeat("\x01\x9b[2J\xff", 300)
	body := Body{Version: 1, IssuedAt: time.Now(), Targets: []string{AllAgents},
		Payload: Payload{Shield: &Shield{Mode: ShieldEnforce, Rules: []Rule{{CIDR: junk, Action: ActionDrop}}}}}
	_, err := Sign(body, priv)
	if err == nil {
		t.Fatal("accepted")
	}
	if msg := err.Error(); len(msg) > 300 || strings.ContainsAny(msg, "\x01\x1b\xff") || !strings.Contains(msg, "(1800 bytes)") {
		t.Fatalf("error echoes the junk: %d bytes: %.400q", len(msg), msg)
	}
	body.Payload.Shield.Rules[0].CIDR = "10.0.0.0/8"
	body.Payload.Shield.Mode = junk
	if _, err := Sign(body, priv); err == nil || len(err.Error()) > 300 {
		t.Fatalf("mode junk: %.400v", err)
	}
}
