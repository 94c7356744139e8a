package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func testBody(version uint64, targets ...string) Body {
	if len(targets) == 0 {
		targets = []string{AllAgents}
	}
	return Body{
		Version:  version,
		IssuedAt: t0,
		Targets:  targets,
		Payload: Payload{
			Shield: &Shield{Mode: ShieldEnforce, Rules: []Rule{
				{CIDR: "198.51.100.0/24", Action: ActionDrop},
				{CIDR: "2001:db8::/32", Action: ActionDrop, LogOnly: true},
			}},
			Gateways: &Gateways{V4: []string{"192.0.2.1"}, V6: []string{"2001:db8::1"}},
			Sentinel: &Sentinel{Mode: SentinelEnforce, Protect: []string{"/usr/local/bin/serviceradar-agent"}, Watch: []string{"/etc/serviceradar"}},
		},
	}
}

func mustSign(t *testing.T, b Body, priv ed25519.PrivateKey) []byte {
	t.Helper()
	data, err := Sign(b, priv)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func newVerifier(t *testing.T, dir string, pub ed25519.PublicKey, now time.Time) *Verifier {
	t.Helper()
	v, err := NewVerifier(Config{Keys: []ed25519.PublicKey{pub}, AgentID: "agent-1", StateDir: dir, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRefusals feeds bad bundles to a verifier that has version 5 applied and
// checks each refusal's reason and that state in memory and on disk is
// unchanged and the apply function never ran.
func TestRefusals(t *testing.T) {
	pub, priv, _ := GenerateKey()
	_, otherPriv, _ := GenerateKey()
	now := t0.Add(time.Hour)
	dir := t.TempDir()
	v := newVerifier(t, dir, pub, now)
	good := mustSign(t, testBody(5), priv)
	if _, err := v.Accept(good, nil); err != nil {
		t.Fatal(err)
	}
	stateFile := filepath.Join(dir, StateFile)
	before, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}

	tamper := func(data []byte, from, to string) []byte {
		if !bytes.Contains(data, []byte(from)) {
			t.Fatalf("tamper: %q not in bundle", from)
		}
		return bytes.Replace(data, []byte(from), []byte(to), 1)
	}
	expired := testBody(6)
	exp := t0.Add(30 * time.Minute)
	expired.ExpiresAt = &exp
	future := testBody(6)
	future.IssuedAt = now.Add(time.Hour)
	junk := make([]byte, 100<<20)
	rand.Read(junk)
	withUnknown := func() []byte {
		// A body with an extra field, validly signed: the signature holds,
		// the decoder must still refuse and name the field.
		canon, _ := func() ([]byte, error) { b := testBody(6); return b.Canonical() }()
		body := append([]byte(`{"bogus":1,`), canon[1:]...)
		env, _ := json.Marshal(Envelope{Format: Format, KeyID: KeyID(pub), Signature: ed25519.Sign(priv, signedMessage(body)), Body: body})
		return env
	}()
	wrongKeyID := func() []byte {
		// Signed by another key but claiming the trusted key's id.
		d := mustSign(t, testBody(6), otherPriv)
		var env Envelope
		json.Unmarshal(d, &env)
		env.KeyID = KeyID(pub)
		out, _ := json.Marshal(env)
		return out
	}()

	cases := []struct {
		name string
		data []byte
		want error
		msg  string
	}{
		{"tampered payload", tamper(mustSign(t, testBody(6), priv), "198.51.100.0/24", "198.51.100.0/25"), ErrBadSignature, ""},
		{"tampered version", tamper(mustSign(t, testBody(6), priv), `"version":6`, `"version":7`), ErrBadSignature, ""},
		{"wrong key", mustSign(t, testBody(6), otherPriv), ErrUnknownKey, "key_id"},
		{"wrong key claiming trusted id", wrongKeyID, ErrBadSignature, ""},
		{"replayed", good, ErrReplay, "version 5"},
		{"rolled back", mustSign(t, testBody(4), priv), ErrRollback, "last applied 5"},
		{"expired", mustSign(t, expired, priv), ErrExpired, ""},
		{"issued in the future", mustSign(t, future, priv), ErrNotYetValid, ""},
		{"other agent's", mustSign(t, testBody(6, "agent-2", "agent-3"), priv), ErrNotForAgent, "agent-1"},
		{"truncated", good[:len(good)/2], ErrMalformed, ""},
		{"empty", nil, ErrMalformed, ""},
		{"100 MiB junk", junk, ErrTooLarge, ""},
		{"junk under the cap", junk[:4096], ErrMalformed, ""},
		{"unknown body field", withUnknown, ErrMalformed, `"bogus"`},
		{"unknown envelope field", tamper(mustSign(t, testBody(6), priv), `{"format"`, `{"extra":true,"format"`), ErrMalformed, `"extra"`},
		{"trailing data", append(mustSign(t, testBody(6), priv), []byte("{}")...), ErrMalformed, "trailing"},
		{"bad cidr", signedRaw(t, priv, func(b *Body) { b.Payload.Shield.Rules[1].CIDR = "2001:db8::/129" }), ErrMalformed, "rules[1].cidr"},
		{"bad mode", signedRaw(t, priv, func(b *Body) { b.Payload.Sentinel.Mode = "off" }), ErrMalformed, "sentinel.mode"},
		{"wrong format tag", tamper(mustSign(t, testBody(6), priv), Format, "fortress-bundle/9"), ErrMalformed, "format"},
	}
	applied := 0
	apply := func(*Bundle) error { applied++; return nil }
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := v.Accept(c.data, apply)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			for _, r := range reasons {
				if r.err != c.want && errors.Is(err, r.err) {
					t.Errorf("error %v also matches %v", err, r.err)
				}
			}
			if c.msg != "" && !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not mention %q", err, c.msg)
			}
			if Reason(err) == "error" || Reason(err) == "" {
				t.Errorf("no reason code for %v", err)
			}
			if v.LastVersion() != 5 {
				t.Errorf("last version changed to %d", v.LastVersion())
			}
			after, _ := os.ReadFile(stateFile)
			if !bytes.Equal(before, after) {
				t.Error("state file changed")
			}
		})
	}
	if applied != 0 {
		t.Fatalf("apply ran %d times for refused bundles", applied)
	}

	// The size cap is checked before parsing even through a reader.
	if _, err := v.AcceptReader(bytes.NewReader(junk), apply); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("reader junk: %v", err)
	}
	// A good successor is accepted; then a fresh verifier on the same state
	// directory still refuses the older versions.
	if _, err := v.Accept(mustSign(t, testBody(6), priv), apply); err != nil || applied != 1 {
		t.Fatalf("version 6: %v (applied %d)", err, applied)
	}
	v2 := newVerifier(t, dir, pub, now)
	if v2.LastVersion() != 6 {
		t.Fatalf("restart: last version %d", v2.LastVersion())
	}
	if _, err := v2.Accept(good, apply); !errors.Is(err, ErrRollback) {
		t.Fatalf("restart rollback: %v", err)
	}
	var got *Bundle
	if ok, err := v2.Reapply(func(b *Bundle) error { got = b; return nil }); !ok || err != nil || got.Version != 6 {
		t.Fatalf("reapply: %v %v %+v", ok, err, got)
	}
}

func signedRaw(t *testing.T, priv ed25519.PrivateKey, edit func(*Body)) []byte {
	t.Helper()
	b := testBody(6)
	edit(&b)
	canon, err := b.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	env, _ := json.Marshal(Envelope{Format: Format, KeyID: KeyID(priv.Public().(ed25519.PublicKey)), Signature: ed25519.Sign(priv, signedMessage(canon)), Body: canon})
	return env
}

func TestApplyFailureKeepsState(t *testing.T) {
	pub, priv, _ := GenerateKey()
	dir := t.TempDir()
	v := newVerifier(t, dir, pub, t0)
	if _, err := v.Accept(mustSign(t, testBody(1), priv), func(*Bundle) error { return errors.New("map full") }); err == nil {
		t.Fatal("want apply error")
	}
	if v.LastVersion() != 0 {
		t.Fatal("state changed after failed apply")
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); !os.IsNotExist(err) {
		t.Fatal("state file written after failed apply")
	}
}

func TestCanonicalStable(t *testing.T) {
	_, priv, _ := GenerateKey()
	b1 := testBody(3, "b", "a", "b")
	b1.IssuedAt = t0.In(time.FixedZone("x", 3600))
	b2 := testBody(3, "a", "b")
	c1, _ := b1.Canonical()
	c2, _ := b2.Canonical()
	if !bytes.Equal(c1, c2) {
		t.Fatalf("canonical differs:\n%s\n%s", c1, c2)
	}
	want := `{"version":3,"issued_at":"2026-11-01T12:00:00Z","targets":["a","b"],"payload":{"shield":{"mode":"enforce","rules":[{"cidr":"198.51.100.0/24","action":"drop"},{"cidr":"2001:db8::/32","action":"drop","log_only":true}]},"gateways":{"v4":["192.0.2.1"],"v6":["2001:db8::1"]},"sentinel":{"mode":"enforce","protect":["/usr/local/bin/serviceradar-agent"],"watch":["/etc/serviceradar"]}}}`
	if string(c1) != want {
		t.Fatalf("canonical:\n got %s\nwant %s", c1, want)
	}
	if a, b := mustSign(t, b1, priv), mustSign(t, b2, priv); !bytes.Equal(a, b) {
		t.Fatal("signing is not deterministic")
	}
}

func TestTrustKeyProtected(t *testing.T) {
	pub, _, _ := GenerateKey()
	pemData, _ := MarshalPublicKey(pub)
	dir := t.TempDir()
	f := filepath.Join(dir, "trust.pem")
	os.WriteFile(f, pemData, 0o644)
	keys, err := LoadTrustKeys(f)
	if err != nil || len(keys) != 1 || !keys[0].Equal(pub) {
		t.Fatalf("load: %v", err)
	}
	os.Chmod(f, 0o666)
	if _, err := LoadTrustKeys(f); err == nil {
		t.Fatal("world-writable trust key accepted")
	}
}

func TestCheckList(t *testing.T) {
	data := []byte("198.51.100.0/24\n")
	ref := ListRef{URL: "file:///x", SHA256: "0000000000000000000000000000000000000000000000000000000000000000"}
	if err := CheckList(data, ref); !errors.Is(err, ErrListDigest) {
		t.Fatal(err)
	}
}
