package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"slices"

	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/policy"
)

// readInput reads a file the agent trusts because Sentinel protects it
// (see fortress.ReadInput).
func (c *config) readInput(path string) ([]byte, error) {
	data, _, err := fortress.ReadInput(c.PinRoot, path)
	return data, err
}

// verifyInputs runs once Fortress has started: the configuration and the
// trust key, read before Sentinel could vouch for them, are read again
// through fortress.ReadInput. Each must be the object Sentinel protects
// and hold what the agent loaded; otherwise the agent stops rather than
// run on input someone substituted.
func verifyInputs(cfg *config, keys []ed25519.PublicKey, log *slog.Logger) error {
	if cfg.source != "" {
		data, checked, err := fortress.ReadInput(cfg.PinRoot, cfg.source)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		if sha256.Sum256(data) != cfg.digest {
			return fmt.Errorf("config: %s changed between loading and verifying it: %w", cfg.source, fortress.ErrNotProtected)
		}
		log.Debug("input verified", "input", cfg.source, "sentinel", checked)
	}
	if cfg.TrustKey != "" {
		data, checked, err := fortress.ReadInput(cfg.PinRoot, cfg.TrustKey)
		if err != nil {
			return fmt.Errorf("trust_key: %w", err)
		}
		file, err := policy.ParsePublicKeys(data)
		if err != nil {
			return fmt.Errorf("trust_key: %w", err)
		}
		for _, k := range file {
			if !slices.ContainsFunc(keys, func(u ed25519.PublicKey) bool { return bytes.Equal(u, k) }) {
				return fmt.Errorf("trust_key: %s holds a key the agent did not load: %w", cfg.TrustKey, fortress.ErrNotProtected)
			}
		}
		log.Debug("input verified", "input", cfg.TrustKey, "sentinel", checked)
	}
	return nil
}
