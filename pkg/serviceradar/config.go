package serviceradar

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/carverauto/fortress/pkg/fortress"

	"github.com/carverauto/fortress/pkg/paths"
)

// DefaultTrustKey is where the trust key file is looked for when the block
// names none: inside /etc/serviceradar, which Sentinel protects.
const DefaultTrustKey = paths.TrustKey

// Config is the "fortress" block of ServiceRadar's agent.json. The zero
// value (an empty block) is valid: Shield loads with no interfaces and
// takes policy from bundles, Sentinel stays off, and the paths are
// Fortress's defaults.
type Config struct {
	// Enabled defaults to true once the block is present.
	Enabled *bool `json:"enabled,omitempty"`
	// AgentID is the id bundles and maintenance tokens must name; empty
	// means the host's agent id (set AgentID before Open) or the host name.
	AgentID string `json:"agent_id,omitempty"`
	// Interfaces are where Shield attaches.
	Interfaces []Interface `json:"interfaces,omitempty"`
	// Gateways are management addresses Shield never drops (the
	// agent-gateway's belong here).
	Gateways []string `json:"gateways,omitempty"`
	// TrustKey is a PEM file of Ed25519 public keys that verify bundles
	// and maintenance tokens; it must be owned by root and writable by no
	// one else. Empty means DefaultTrustKey if that file exists. Keys
	// built into the binary and TrustKeys are trusted too; Open fails
	// without any key.
	TrustKey string `json:"trust_key,omitempty"`
	// PinRoot, StateDir and AuditLog default to Fortress's paths under
	// /sys/fs/bpf/serviceradar, /var/lib/serviceradar and
	// /var/log/serviceradar.
	PinRoot  string `json:"pin_root,omitempty"`
	StateDir string `json:"state_dir,omitempty"`
	AuditLog string `json:"audit_log,omitempty"`
	// ShieldBudgetBytes caps Shield's map memory (0: 64 MiB).
	ShieldBudgetBytes uint64 `json:"shield_budget_bytes,omitempty"`
	// TopRules is how many rules fortress.counters reports at most (100).
	TopRules int            `json:"top_rules,omitempty"`
	Sentinel SentinelConfig `json:"sentinel"`

	// TrustKeys are further trust keys the host passes in code (for
	// example keys built into its own binary).
	TrustKeys []ed25519.PublicKey `json:"-"`
	// Kernel, when set, is used instead of probing the kernel at Open.
	Kernel *fortress.KernelReport `json:"-"`
}

// Interface is one interface Shield protects.
type Interface struct {
	Name string `json:"name"`
	// Mode is native (the default) or generic.
	Mode string `json:"mode,omitempty"`
	// Netns is the path of the interface's network namespace (empty: the
	// agent's own).
	Netns string `json:"netns,omitempty"`
}

// SentinelConfig configures Sentinel. It is off unless enabled: turning
// it on makes the agent's binary, /etc/serviceradar and Fortress's state
// immutable to everyone but the agent, root included.
type SentinelConfig struct {
	Enabled bool `json:"enabled,omitempty"`
	// Mode is enforce (the default) or audit.
	Mode string `json:"mode,omitempty"`
	// AgentBinary is the agent's executable (default: the running one).
	AgentBinary string `json:"agent_binary,omitempty"`
	// UpdaterBinary is the agent's update manager.
	UpdaterBinary string `json:"updater_binary,omitempty"`
	// ReleaseDir is the release layout the agent runs from (versions/<v>/
	// behind the current symlink), ReleaseBinary the agent's name in a
	// version, SeedBinary the binary that runs before any version is
	// installed. An agent binary under /var/lib/serviceradar/agent selects
	// ServiceRadar's layout, updater and seed without these.
	ReleaseDir    string `json:"release_dir,omitempty"`
	ReleaseBinary string `json:"release_binary,omitempty"`
	SeedBinary    string `json:"seed_binary,omitempty"`
	// Protect and Watch list further protected paths and paths that raise
	// file-integrity events.
	Protect []string `json:"protect,omitempty"`
	Watch   []string `json:"watch,omitempty"`
}

// UnmarshalJSON decodes the block strictly: an unknown field is an error
// even when the host's own decoder does not refuse them.
func (c *Config) UnmarshalJSON(data []byte) error {
	type plain Config
	var p plain
	if err := decodeStrict(data, &p); err != nil {
		return fmt.Errorf("fortress: %w", err)
	}
	*c = Config(p)
	return nil
}

// ParseConfig decodes a "fortress" block and validates it.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return fmt.Errorf("%s: want %s, got JSON %s", te.Field, te.Type, te.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return fmt.Errorf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// IsEnabled reports whether the block asks for Fortress to run.
func (c *Config) IsEnabled() bool { return c.Enabled == nil || *c.Enabled }

// Validate fills defaults and checks every field, naming the first bad one
// as it is spelled in agent.json ("fortress.interfaces[0].mode: ...").
func (c *Config) Validate() error {
	if c.AgentID == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("fortress.agent_id: not set and no host name: %w", err)
		}
		c.AgentID = h
	}
	if len(c.AgentID) > 256 || strings.ContainsAny(c.AgentID, "\x00\n") {
		return fmt.Errorf("fortress.agent_id: %q is not an agent id", c.AgentID)
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.PinRoot, fortress.DefaultPinRoot)
	def(&c.StateDir, fortress.DefaultStateDir)
	def(&c.AuditLog, fortress.DefaultAuditLog)
	def(&c.Sentinel.Mode, "enforce")
	if c.TopRules == 0 {
		c.TopRules = 100
	}
	for _, p := range []struct{ name, path string }{{"pin_root", c.PinRoot}, {"state_dir", c.StateDir},
		{"audit_log", c.AuditLog}, {"trust_key", c.TrustKey}, {"sentinel.agent_binary", c.Sentinel.AgentBinary},
		{"sentinel.updater_binary", c.Sentinel.UpdaterBinary}, {"sentinel.release_dir", c.Sentinel.ReleaseDir},
		{"sentinel.seed_binary", c.Sentinel.SeedBinary}} {
		if p.path != "" && !cleanAbs(p.path) {
			return fmt.Errorf("fortress.%s: %q is not a clean absolute path", p.name, p.path)
		}
	}
	seen := map[string]bool{}
	for i, ifc := range c.Interfaces {
		if ifc.Name == "" || len(ifc.Name) > 15 || strings.ContainsAny(ifc.Name, "/ \x00") {
			return fmt.Errorf("fortress.interfaces[%d].name: %q is not an interface name", i, ifc.Name)
		}
		if seen[ifc.Name] {
			return fmt.Errorf("fortress.interfaces[%d].name: %s listed twice", i, ifc.Name)
		}
		seen[ifc.Name] = true
		if ifc.Mode != "" && ifc.Mode != string(fortress.Native) && ifc.Mode != string(fortress.Generic) {
			return fmt.Errorf("fortress.interfaces[%d].mode: %q is not native or generic", i, ifc.Mode)
		}
		if ifc.Netns != "" && !cleanAbs(ifc.Netns) {
			return fmt.Errorf("fortress.interfaces[%d].netns: %q is not a clean absolute path", i, ifc.Netns)
		}
	}
	for i, g := range c.Gateways {
		if _, err := netip.ParseAddr(g); err != nil {
			return fmt.Errorf("fortress.gateways[%d]: %q is not an IP address", i, g)
		}
	}
	if c.TopRules < 0 || c.TopRules > 10000 {
		return fmt.Errorf("fortress.top_rules: %d is not in 1..10000", c.TopRules)
	}
	if b := c.Sentinel.ReleaseBinary; b != "" && (strings.ContainsAny(b, "/\x00") || b == "." || b == ".." || len(b) > 63) {
		return fmt.Errorf("fortress.sentinel.release_binary: %q is not a file name of at most 63 bytes", b)
	}
	if c.Sentinel.Mode != "enforce" && c.Sentinel.Mode != "audit" {
		return fmt.Errorf("fortress.sentinel.mode: %q is not enforce or audit", c.Sentinel.Mode)
	}
	for _, l := range []struct {
		name  string
		paths []string
	}{{"protect", c.Sentinel.Protect}, {"watch", c.Sentinel.Watch}} {
		for i, p := range l.paths {
			if !cleanAbs(p) {
				return fmt.Errorf("fortress.sentinel.%s[%d]: %q is not a clean absolute path", l.name, i, p)
			}
		}
	}
	return nil
}

func cleanAbs(p string) bool { return filepath.IsAbs(p) && filepath.Clean(p) == p }

// fortressConfig maps the block onto pkg/fortress's configuration.
func (c *Config) fortressConfig() fortress.Config {
	fc := fortress.Config{
		AgentID: c.AgentID, PinRoot: c.PinRoot, StateDir: c.StateDir, AuditLog: c.AuditLog,
		ShieldBudget: c.ShieldBudgetBytes, TopRules: c.TopRules, Kernel: c.Kernel,
		Sentinel: fortress.SentinelConfig{
			Disabled: !c.Sentinel.Enabled, Audit: c.Sentinel.Mode == "audit",
			AgentBinary: c.Sentinel.AgentBinary, UpdaterBinary: c.Sentinel.UpdaterBinary,
			ReleaseDir: c.Sentinel.ReleaseDir, ReleaseBinary: c.Sentinel.ReleaseBinary, SeedBinary: c.Sentinel.SeedBinary,
			Protect: c.Sentinel.Protect, Watch: c.Sentinel.Watch,
		},
	}
	for _, ifc := range c.Interfaces {
		fc.Interfaces = append(fc.Interfaces, fortress.Interface{Name: ifc.Name, Mode: fortress.AttachMode(ifc.Mode), Netns: ifc.Netns})
	}
	for _, g := range c.Gateways {
		fc.Gateways = append(fc.Gateways, netip.MustParseAddr(g))
	}
	return fc
}
