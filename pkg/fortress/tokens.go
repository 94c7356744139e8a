package fortress

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/carverauto/fortress/internal/sentinel"
)

// ErrTokenUsed: a maintenance token opens one window, once. Replaying it
// after "maintenance end" (or after a restart) changes nothing.
var ErrTokenUsed = errors.New("token already used: each maintenance token is honoured once; sign a new one")

// usedTokensPath keeps the tokens already honoured until they expire, in
// the protected state directory.
func (f *Fortress) usedTokensPath() string {
	return filepath.Join(f.cfg.StateDir, "maintenance-used.json")
}

type usedToken struct {
	Digest   string    `json:"sha256"`
	NotAfter time.Time `json:"not_after"`
}

// tokenDigest names a token by its signed content, so that another
// encoding of the same signed token is the same token.
func tokenDigest(t sentinel.Token) string {
	b, _ := json.Marshal(t)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// spendToken records t as used, refusing it if it was used before. A token
// that cannot be recorded is not honoured. An unreadable record is replaced
// (with a warning): replay protection must never lock operators out.
func (f *Fortress) spendToken(t sentinel.Token, now time.Time) error {
	path := f.usedTokensPath()
	var used []usedToken
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read used tokens: %w", err)
	default:
		if err := json.Unmarshal(b, &used); err != nil {
			f.log.Warn("used maintenance tokens unreadable, starting afresh", "path", path, "err", err)
			used = nil
		}
	}
	d := tokenDigest(t)
	keep := used[:0]
	for _, u := range used {
		if u.Digest == d {
			return ErrTokenUsed
		}
		if u.NotAfter.After(now) {
			keep = append(keep, u)
		}
	}
	keep = append(keep, usedToken{Digest: d, NotAfter: t.NotAfter})
	if b, err = json.Marshal(keep); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("record used token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("record used token: %w", err)
	}
	return nil
}
