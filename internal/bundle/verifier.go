package bundle

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/carverauto/fortress/internal/statedir"
)

// StateFile is the name of the last-applied bundle inside the state directory.
const StateFile = statedir.LastBundle

// Config configures a Verifier.
type Config struct {
	// Keys are the trusted signing keys (from LoadTrustKeys and BuiltinKeys).
	Keys []ed25519.PublicKey
	// AgentID is this agent's id; bundles not targeting it are refused.
	AgentID string
	// StateDir holds the last applied bundle. It should be a protected path.
	StateDir string
	// MaxSize caps bundle size (DefaultMaxSize when 0).
	MaxSize int64
	// Now returns the current time (time.Now when nil).
	Now func() time.Time
}

// Verifier is Verify with a memory, for programs that stand in for an agent
// (tools, tests, examples): it verifies bundles, hands accepted ones to an
// apply function and records the last applied bundle on disk, so that
// versions only ever increase, across restarts too. The agent itself
// (pkg/fortress) calls Verify and ReadStored and records what it applied in
// one place, beside the policy in force.
type Verifier struct {
	cfg Config
	// mu serialises Accept and Reapply (it is held while the apply
	// function runs). Readers of the last applied bundle never take it:
	// last is published atomically, so Last answers at once even while a
	// large bundle is being applied.
	mu   sync.Mutex
	last atomic.Pointer[Bundle]
}

// NewVerifier loads the last applied bundle from cfg.StateDir, if any. A
// state file that no longer verifies is an error: starting from version 0
// would reopen the door to rollbacks, so the agent must not silently do so.
func NewVerifier(cfg Config) (*Verifier, error) {
	if len(cfg.Keys) == 0 {
		return nil, errors.New("bundle verifier: no trust keys")
	}
	if cfg.AgentID == "" {
		return nil, errors.New("bundle verifier: no agent id")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("bundle verifier: no state directory")
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("bundle state dir: %w", err)
	}
	v := &Verifier{cfg: cfg}
	b, err := ReadStored(filepath.Join(cfg.StateDir, StateFile), v.options(true))
	if err != nil {
		return nil, err
	}
	if b != nil {
		v.last.Store(b)
	}
	return v, nil
}

func (v *Verifier) options(skipExpiry bool) Options {
	return Options{Keys: v.cfg.Keys, MaxSize: v.cfg.MaxSize, AgentID: v.cfg.AgentID, Now: v.cfg.Now(), SkipExpiry: skipExpiry}
}

// Last returns the last applied bundle, or nil. It never waits for an
// Accept in progress.
func (v *Verifier) Last() *Bundle { return v.last.Load() }

// LastVersion returns the version of the last applied bundle, 0 if none.
func (v *Verifier) LastVersion() uint64 {
	if b := v.Last(); b != nil {
		return b.Version
	}
	return 0
}

// Check runs every check, including the version against the last applied
// bundle, without changing anything.
func (v *Verifier) Check(data []byte) (*Bundle, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.check(data)
}

func (v *Verifier) check(data []byte) (*Bundle, error) {
	return Verify(data, v.options(false), v.LastVersion())
}

// Accept verifies data, calls apply with the bundle and, when apply
// succeeds, records the bundle as last applied (atomically, on disk first).
// On any refusal or apply error the last-applied state is unchanged.
func (v *Verifier) Accept(data []byte, apply func(*Bundle) error) (*Bundle, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	b, err := v.check(data)
	if err != nil {
		return nil, err
	}
	if apply != nil {
		if err := apply(b); err != nil {
			return nil, fmt.Errorf("apply bundle version %d: %w", b.Version, err)
		}
	}
	if err := statedir.WriteFile(filepath.Join(v.cfg.StateDir, StateFile), b.Raw, 0o600); err != nil {
		return nil, fmt.Errorf("record bundle version %d: %w", b.Version, err)
	}
	v.last.Store(b)
	return b, nil
}

// AcceptReader is Accept for a stream, refusing more than the size cap before
// reading it all.
func (v *Verifier) AcceptReader(r io.Reader, apply func(*Bundle) error) (*Bundle, error) {
	data, err := ReadLimited(r, v.cfg.MaxSize)
	if err != nil {
		return nil, err
	}
	return v.Accept(data, apply)
}

// Reapply calls apply with the last applied bundle (at agent start). It
// reports whether there was one. An expired last bundle is still re-applied:
// expiry bounds when a bundle may be accepted, and dropping to no policy at
// all on restart would be the weaker choice.
func (v *Verifier) Reapply(apply func(*Bundle) error) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	last := v.last.Load()
	if last == nil {
		return false, nil
	}
	if err := apply(last); err != nil {
		return true, fmt.Errorf("re-apply bundle version %d: %w", last.Version, err)
	}
	return true, nil
}

// checkProtected refuses a trust file that anyone but root or the current
// user owns or can write, or that sits in such a directory.
func checkProtected(file string) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return fmt.Errorf("trust key %s: %w", file, err)
	}
	for _, p := range []string{abs, filepath.Dir(abs)} {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("trust key: %w", err)
		}
		uid, ok := fileOwner(fi)
		if !ok {
			continue
		}
		if uid != 0 && int(uid) != os.Geteuid() {
			return fmt.Errorf("trust key: %s is owned by uid %d, not root", p, uid)
		}
		if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0 {
			return fmt.Errorf("trust key: %s is writable by group or others (mode %v)", p, fi.Mode().Perm())
		}
	}
	return nil
}
