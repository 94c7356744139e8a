package fortress

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/carverauto/fortress/pkg/paths"
)

// Defaults for the paths an agent uses, from the table in package paths.
const (
	DefaultPinRoot   = paths.PinRoot
	DefaultStateDir  = paths.StateDir
	DefaultAuditLog  = paths.AuditLog
	DefaultConfigDir = paths.ConfigDir
)

// AttachMode is how Shield attaches to an interface.
type AttachMode string

const (
	// Native runs Shield in the driver (the default).
	Native AttachMode = "native"
	// Generic runs it in the stack after the driver: works on every
	// interface, slower.
	Generic AttachMode = "generic"
)

// Interface is a network interface Shield protects.
type Interface struct {
	Name string
	Mode AttachMode
	// Netns, when set, is the path of the network namespace the interface
	// lives in (for example /run/netns/NAME); empty is the agent's own.
	Netns string
}

// SentinelConfig says what Sentinel protects and watches.
type SentinelConfig struct {
	// Disabled leaves Sentinel unloaded; Status reports it unavailable.
	Disabled bool
	// AgentBinary is the executable whose inode is the agent identity;
	// empty means the running executable.
	AgentBinary string
	// UpdaterBinary (optional) is the update manager's executable.
	UpdaterBinary string
	// ReleaseDir (optional) is a versioned release layout the agent runs
	// from: ReleaseDir/versions/<version>/<ReleaseBinary>, with the symlink
	// ReleaseDir/current naming the version in use. The tree becomes the
	// updater's alone; an upgrade or rollback by symlink swap keeps the
	// agent its identity. An agent binary inside ServiceRadar's release
	// root (paths.ServiceRadarReleases) selects that layout by default,
	// with ServiceRadar's updater and seed where they exist.
	ReleaseDir string
	// ReleaseBinary is the agent binary's name in a version directory
	// (default: the agent binary's base name).
	ReleaseBinary string
	// SeedBinary (optional) is an agent binary outside the release tree
	// that runs before any version is installed.
	SeedBinary string
	// ConfigDir is protected with everything in it (DefaultConfigDir).
	ConfigDir string
	// Protect lists further protected paths (files or whole trees). The
	// state directory and the audit log's directory are always protected.
	Protect []string
	// Watch lists paths that raise file-integrity events.
	Watch []string
	// Audit starts a fresh Sentinel in audit mode (an adopted one keeps its
	// pinned mode).
	Audit bool
}

// Config configures Fortress.
type Config struct {
	// AgentID names this agent; bundles must target it (or "*").
	AgentID string
	// AgentVersion is reported in Status.
	AgentVersion string
	// Interfaces are where Shield attaches. Without any (and nothing pinned
	// from an earlier run) Shield is disabled.
	Interfaces []Interface
	// Gateways are the management addresses: those Shield never drops,
	// whatever the rules, in addition to those a bundle names (up to four
	// per family in all). The field keeps its name, as bundles and
	// configuration files keep their "gateways" key, for compatibility.
	Gateways []netip.Addr
	// PinRoot is the bpffs directory of Fortress's pins (DefaultPinRoot).
	PinRoot string
	// StateDir keeps the last applied bundle, referenced lists and Shield's
	// rule table (DefaultStateDir).
	StateDir string
	// AuditLog is the audit log file (DefaultAuditLog).
	AuditLog string
	// TrustKeys verify bundles. At least one is required.
	TrustKeys []ed25519.PublicKey
	// ShieldBudget caps Shield's map memory in bytes (0: Shield's default).
	ShieldBudget uint64
	Sentinel     SentinelConfig
	// Kernel is the kernel probe; nil runs ProbeKernel in Start.
	Kernel *KernelReport
	// FetchList fetches a CIDR list a bundle references by URL; nil reads
	// file:// URLs and absolute paths and fetches http(s) URLs.
	FetchList func(ctx context.Context, url string) ([]byte, error)
	// CounterInterval is how often rule counters are read (500ms).
	CounterInterval time.Duration
	// TopRules is how many rules TopCounters keeps (100).
	TopRules int
	// OnCounters, if set, receives per-rule counter deltas after each read.
	// It must not block.
	OnCounters func([]CounterDelta)
	// EventBuffer is the capacity of the Events channel (4096); events that
	// find it full are dropped and counted in Status.
	EventBuffer int
	Logger      *slog.Logger
}

func (c *Config) defaults() error {
	if c.AgentID == "" {
		return errors.New("fortress: no agent id")
	}
	if len(c.TrustKeys) == 0 {
		return errors.New("fortress: no trust keys")
	}
	for i, k := range c.TrustKeys {
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("fortress: trust key %d: not an Ed25519 public key", i)
		}
	}
	if c.PinRoot == "" {
		c.PinRoot = DefaultPinRoot
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.AuditLog == "" {
		c.AuditLog = DefaultAuditLog
	}
	if c.Sentinel.ConfigDir == "" {
		c.Sentinel.ConfigDir = DefaultConfigDir
	}
	for name, p := range map[string]string{"pin root": c.PinRoot, "state dir": c.StateDir, "audit log": c.AuditLog} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("fortress: %s %q is not an absolute path", name, p)
		}
	}
	seen := map[string]bool{}
	for i := range c.Interfaces {
		ifc := &c.Interfaces[i]
		if ifc.Name == "" {
			return fmt.Errorf("fortress: interfaces[%d]: no name", i)
		}
		if seen[ifc.Name] {
			return fmt.Errorf("fortress: interfaces[%d]: %s listed twice", i, ifc.Name)
		}
		seen[ifc.Name] = true
		switch ifc.Mode {
		case "":
			ifc.Mode = Native
		case Native, Generic:
		default:
			return fmt.Errorf("fortress: interfaces[%d] %s: mode %q is not native or generic", i, ifc.Name, ifc.Mode)
		}
	}
	for i, g := range c.Gateways {
		if !g.IsValid() {
			return fmt.Errorf("fortress: gateways[%d]: invalid address", i)
		}
		c.Gateways[i] = g.Unmap()
	}
	if c.CounterInterval <= 0 {
		c.CounterInterval = 500 * time.Millisecond
	}
	if c.TopRules <= 0 {
		c.TopRules = 100
	}
	if c.EventBuffer <= 0 {
		c.EventBuffer = 4096
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Inside resolves every symbolic link in path and in dir and reports the
// resolved path and whether it lies strictly inside dir: the test for an
// input that only the agent can change once Sentinel protects dir.
func Inside(path, dir string) (resolved string, inside bool, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", false, err
	}
	resolved, err = filepath.EvalSymlinks(abs)
	if err != nil {
		return "", false, err
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return resolved, false, fmt.Errorf("protected directory %s: %w", dir, err)
	}
	rel, err := filepath.Rel(realDir, resolved)
	inside = err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
	return resolved, inside, nil
}
