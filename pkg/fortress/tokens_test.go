//go:build linux

package fortress

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/carverauto/fortress/internal/sentinel"
)

func TestSpendToken(t *testing.T) {
	dir := t.TempDir()
	f := newTokenLedger(dir, slog.New(slog.DiscardHandler))
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	a := sentinel.Token{Action: sentinel.ActionAudit, Host: "h", NotBefore: now, NotAfter: now.Add(time.Hour), Nonce: "a"}
	b := a
	b.Nonce = "b"
	if err := f.spend(a, now); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := f.spend(a, now.Add(time.Minute)); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("replay: %v, want ErrTokenUsed", err)
	}
	if err := f.spend(b, now); err != nil {
		t.Fatalf("another token: %v", err)
	}
	// Tokens that ended before the start of a newer honoured token leave
	// the record: no clock that accepts tokens can make them valid again.
	c := a
	c.Nonce, c.NotBefore, c.NotAfter = "c", now.Add(2*time.Hour), now.Add(3*time.Hour)
	if err := f.spend(c, now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(f.path)
	for _, gone := range []sentinel.Token{a, b} {
		if strings.Contains(string(raw), tokenDigest(gone)) {
			t.Errorf("expired token %s still recorded", gone.Nonce)
		}
	}
	if !strings.Contains(string(raw), tokenDigest(c)) {
		t.Errorf("token c not recorded: %s", raw)
	}
	// Root sets the clock back into a's window: a (used, record gone) and
	// an old token never used are both refused; the clock check comes
	// first, so neither is recorded.
	old := a
	old.Nonce, old.NotBefore = "old", now.Add(-time.Hour)
	for _, tok := range []sentinel.Token{a, old} {
		if err := f.spend(tok, now.Add(30*time.Minute)); !errors.Is(err, ErrClockBehind) {
			t.Errorf("token %s with the clock set back: %v, want ErrClockBehind", tok.Nonce, err)
		}
	}
	// Once the clock is right, a new token works.
	d := c
	d.Nonce = "d"
	if err := f.spend(d, now.Add(2*time.Hour+time.Minute)); err != nil {
		t.Fatalf("new token with the clock right: %v", err)
	}
	// A record in the first format (the list alone) is still honoured.
	os.WriteFile(f.path, []byte(`[{"sha256":"`+tokenDigest(b)+`","not_after":"`+b.NotAfter.Format(time.RFC3339)+`"}]`), 0o600)
	if err := f.spend(b, now); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("replay against a first-format record: %v, want ErrTokenUsed", err)
	}
	// An unreadable record never locks operators out.
	os.WriteFile(filepath.Join(dir, "maintenance-used.json"), []byte("{garbage"), 0o600)
	if err := f.spend(b, now); err != nil {
		t.Fatalf("after a corrupt record: %v", err)
	}
	if err := f.spend(b, now); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("replay after a corrupt record: %v", err)
	}
}
