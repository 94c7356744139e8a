package bundle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Verify is the agent's whole intake check, a pure function of its
// arguments: Parse's checks (size, envelope, key, signature, body, target,
// time window), then the version against last, the version last applied (0
// when none). A bundle whose version is not above last is refused as a
// replay or a rollback. Recording what was applied is the caller's.
func Verify(data []byte, opt Options, last uint64) (*Bundle, error) {
	b, err := Parse(data, opt)
	if err != nil {
		return nil, err
	}
	switch {
	case last == 0:
	case b.Version == last:
		return nil, fmt.Errorf("%w: version %d", ErrReplay, b.Version)
	case b.Version < last:
		return nil, fmt.Errorf("%w: version %d, last applied %d", ErrRollback, b.Version, last)
	}
	return b, nil
}

// ReadStored reads the last applied bundle an agent recorded at path (nil
// when there is none) and verifies it as stored: the signature, target and
// body, but neither its expiry (a policy in force stays in force) nor
// intake checks added since it was accepted. A file that no longer verifies
// is an error: starting from version 0 would reopen the door to rollbacks.
func ReadStored(path string, opt Options) (*Bundle, error) {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("bundle state: %w", err)
	}
	defer f.Close()
	max := opt.MaxSize
	if max <= 0 {
		max = DefaultMaxSize
	}
	data, err := ReadLimited(f, max)
	if err != nil {
		return nil, fmt.Errorf("bundle state: %w", err)
	}
	opt.Stored, opt.SkipExpiry = true, true
	b, err := Parse(data, opt)
	if err != nil {
		return nil, fmt.Errorf("bundle state %s no longer verifies: %w", path, err)
	}
	return b, nil
}
