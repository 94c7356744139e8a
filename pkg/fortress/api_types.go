package fortress

// Types of the exported API that every platform shares: the Linux files and
// fortress_other.go both use these.

import (
	"context"
	"crypto/ed25519"
	"time"

	"github.com/carverauto/fortress/internal/bundle"
)

// MaintenanceResult is what a maintenance token did.
type MaintenanceResult struct {
	Action string    `json:"action"`
	Nonce  string    `json:"nonce,omitempty"`
	Until  time.Time `json:"until"`
	// KeyID names the trust key that verified the token.
	KeyID string `json:"key_id"`
	// Removed lists the layers taken out of the kernel (remove only).
	Removed []string `json:"removed,omitempty"`
	// PinRoot is where the pins were; after a removal it holds none.
	PinRoot string `json:"pin_root"`
}

// CheckOptions configures CheckBundle.
type CheckOptions struct {
	// Keys are the trust keys, as the agent has them.
	Keys []ed25519.PublicKey
	// AgentID, when set, must be among the bundle's targets.
	AgentID string
	// StateDir, when set, is an agent's state directory: the version is
	// also checked against its last applied bundle.
	StateDir string
	// MaxSize caps the bundle (bundle.DefaultMaxSize when 0).
	MaxSize int64
	// FetchList fetches a referenced list (nil: an absolute path, file://,
	// http:// or https://, as the agent fetches it).
	FetchList func(ctx context.Context, url string) ([]byte, error)
}

// CheckResult is what a bundle would apply.
type CheckResult struct {
	Bundle     *bundle.Bundle
	Rules      int
	Duplicates int
	// Gateways counts the bundle's management addresses (its "gateways"
	// section).
	Gateways int
	DryRun   bool
}
