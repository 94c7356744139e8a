//go:build linux

package fortress

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/carverauto/fortress/internal/bundle"
)

// TestEmptyListNeedsAllowEmpty: a referenced list without rules would wipe
// the blocklist; it is refused unless the bundle says allow_empty, and the
// policy in force stays.
func TestEmptyListNeedsAllowEmpty(t *testing.T) {
	pub, priv, _ := bundle.GenerateKey()
	dir := t.TempDir()
	var mu sync.Mutex
	lists := map[string][]byte{}
	f, err := Start(context.Background(), Config{
		AgentID: "a1", StateDir: filepath.Join(dir, "state"), AuditLog: filepath.Join(dir, "audit.log"),
		PinRoot: filepath.Join(dir, "pins"), TrustKeys: []ed25519.PublicKey{pub},
		Kernel: &KernelReport{Release: "test", Checks: map[string]bool{"lsm": false}},
		FetchList: func(_ context.Context, url string) ([]byte, error) {
			mu.Lock()
			defer mu.Unlock()
			return lists[url], nil
		},
		CounterInterval: time.Hour, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	lists["https://l/full"] = []byte("10.0.0.0/8\n192.0.2.0/24 allow\n")
	lists["https://l/empty"] = []byte("# nothing left\n\n")
	if ack, err := f.ApplyBundle(listBundle(t, priv, 1, "https://l/full", lists["https://l/full"])); err != nil || ack.Rules != 2 {
		t.Fatalf("v1: %+v %v", ack, err)
	}
	_, err = f.ApplyBundle(listBundle(t, priv, 2, "https://l/empty", lists["https://l/empty"]))
	if !errors.Is(err, bundle.ErrEmptyRules) {
		t.Fatalf("empty list: %v, want ErrEmptyRules", err)
	}
	inForce := len(f.policy.inForce().rules)
	if st := f.Status(); st.Policy.Version != 1 || inForce != 2 {
		t.Fatalf("policy after the refusal: version %d, %d rules in force", st.Policy.Version, inForce)
	}
	b := parsed(t, pub, listBundle(t, priv, 3, "https://l/empty", lists["https://l/empty"]))
	b.Payload.Shield.AllowEmpty = true
	raw, err := bundle.Sign(b.Body, priv)
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := f.ApplyBundle(raw); err != nil || ack.Rules != 0 {
		t.Fatalf("allow_empty: %+v %v", ack, err)
	}
}
