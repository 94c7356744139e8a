//go:build linux

package fortress

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/carverauto/fortress/internal/sentinel"
	"github.com/carverauto/fortress/internal/statedir"
)

// ErrTokenUsed: a maintenance token opens one window, once. Replaying it
// after "maintenance end" (or after a restart) changes nothing.
var ErrTokenUsed = errors.New("token already used: each maintenance token is honoured once; sign a new one")

// ErrClockBehind: the system clock is earlier than the start of a token
// already honoured here, so it was set back. Setting it back would make
// old, expired tokens (or used ones whose record has gone) valid again.
var ErrClockBehind = errors.New("the system clock is behind a maintenance token already honoured here: it was set back; tokens are refused until it is right")

// maxUsedTokens bounds the record; the tokens nearest expiry go first.
const maxUsedTokens = 1024

// tokenLedger keeps the maintenance tokens already honoured, in the
// protected state directory.
type tokenLedger struct {
	path string
	log  *slog.Logger
}

func newTokenLedger(stateDir string, log *slog.Logger) tokenLedger {
	return tokenLedger{path: filepath.Join(stateDir, statedir.UsedTokens), log: log}
}

type usedToken struct {
	Digest   string    `json:"sha256"`
	NotAfter time.Time `json:"not_after"`
}

// usedTokens is the record. HighWater is the latest not_before of any
// token honoured: the clock was past it then, so a clock behind it was set
// back. Records are pruned against HighWater, never against the clock,
// which root can set.
type usedTokens struct {
	HighWater time.Time   `json:"high_water"`
	Used      []usedToken `json:"used"`
}

// tokenDigest names a token by its signed content, so that another
// encoding of the same signed token is the same token.
func tokenDigest(t sentinel.Token) string {
	b, _ := json.Marshal(t)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// read reads the record; an unreadable one is replaced (with a
// warning): replay protection must never lock operators out.
func (l tokenLedger) read() (usedTokens, error) {
	var rec usedTokens
	path := l.path
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return rec, nil
	case err != nil:
		return rec, fmt.Errorf("read used tokens: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err == nil {
		return rec, nil
	}
	// The first format was the list alone.
	if err := json.Unmarshal(b, &rec.Used); err != nil {
		l.log.Warn("used maintenance tokens unreadable, starting afresh", "path", path, "err", err)
		return usedTokens{}, nil
	}
	return rec, nil
}

// spend records t as used, refusing it if it was used before or if
// the clock is behind a token already honoured. A token that cannot be
// recorded is not honoured.
func (l tokenLedger) spend(t sentinel.Token, now time.Time) error {
	rec, err := l.read()
	if err != nil {
		return err
	}
	if now.Before(rec.HighWater) {
		return fmt.Errorf("%w (clock %s, a token valid from %s was honoured)", ErrClockBehind,
			now.UTC().Format(time.RFC3339), rec.HighWater.UTC().Format(time.RFC3339))
	}
	d := tokenDigest(t)
	for _, u := range rec.Used {
		if u.Digest == d {
			return ErrTokenUsed
		}
	}
	if t.NotBefore.After(rec.HighWater) {
		rec.HighWater = t.NotBefore
	}
	// A token that ended by HighWater can never verify again: the clock
	// must be at or past HighWater for any token to be honoured.
	keep := rec.Used[:0]
	for _, u := range rec.Used {
		if u.NotAfter.After(rec.HighWater) {
			keep = append(keep, u)
		}
	}
	keep = append(keep, usedToken{Digest: d, NotAfter: t.NotAfter})
	if len(keep) > maxUsedTokens {
		slices.SortFunc(keep, func(a, b usedToken) int { return a.NotAfter.Compare(b.NotAfter) })
		keep = keep[len(keep)-maxUsedTokens:]
	}
	rec.Used = keep
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := statedir.WriteFile(l.path, b, 0o600); err != nil {
		return fmt.Errorf("record used token: %w", err)
	}
	return nil
}
