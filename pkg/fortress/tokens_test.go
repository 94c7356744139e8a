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
	f := &Fortress{cfg: Config{StateDir: dir}, log: slog.New(slog.DiscardHandler)}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	a := sentinel.Token{Action: sentinel.ActionAudit, Host: "h", NotBefore: now, NotAfter: now.Add(time.Hour), Nonce: "a"}
	b := a
	b.Nonce = "b"
	if err := f.spendToken(a, now); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := f.spendToken(a, now.Add(time.Minute)); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("replay: %v, want ErrTokenUsed", err)
	}
	if err := f.spendToken(b, now); err != nil {
		t.Fatalf("another token: %v", err)
	}
	// Expired tokens leave the record (the signature check refuses them).
	c := a
	c.Nonce, c.NotAfter = "c", now.Add(3*time.Hour)
	if err := f.spendToken(c, now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(f.usedTokensPath())
	for _, gone := range []sentinel.Token{a, b} {
		if strings.Contains(string(raw), tokenDigest(gone)) {
			t.Errorf("expired token %s still recorded", gone.Nonce)
		}
	}
	if !strings.Contains(string(raw), tokenDigest(c)) {
		t.Errorf("token c not recorded: %s", raw)
	}
	// An unreadable record never locks operators out.
	os.WriteFile(filepath.Join(dir, "maintenance-used.json"), []byte("{garbage"), 0o600)
	if err := f.spendToken(b, now); err != nil {
		t.Fatalf("after a corrupt record: %v", err)
	}
	if err := f.spendToken(b, now); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("replay after a corrupt record: %v", err)
	}
}
