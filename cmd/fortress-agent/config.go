package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/paths"
)

// protectedConfigDir is the directory Sentinel protects; the agent reads its
// configuration only from inside it, so that running the binary by hand
// with a configuration written elsewhere gains nothing. Builds for other
// layouts set it with -ldflags "-X main.protectedConfigDir=...".
var protectedConfigDir = paths.ConfigDir

// Defaults of the agent's own settings.
const (
	defaultMetricsListen = "127.0.0.1:9464"
	maxConfigBytes       = 1 << 20
)

// config is the agent's JSON configuration file. Unknown fields are errors.
type config struct {
	// AgentID defaults to the host name.
	AgentID    string        `json:"agent_id"`
	Interfaces []ifaceConfig `json:"interfaces"`
	// Gateways are further management addresses Shield never drops; the
	// control-stream gateway's addresses are added automatically.
	Gateways     []string       `json:"gateways"`
	PinRoot      string         `json:"pin_root"`
	StateDir     string         `json:"state_dir"`
	AuditLog     string         `json:"audit_log"`
	TrustKey     string         `json:"trust_key"`
	ShieldBudget uint64         `json:"shield_budget_bytes"`
	Gateway      *gatewayConfig `json:"gateway"`
	// ServiceRadar, when set, connects to a ServiceRadar agent-gateway as
	// well (or instead of a Fortress gateway).
	ServiceRadar *serviceRadarConfig `json:"serviceradar"`
	Metrics      metricsConfig       `json:"metrics"`
	StatusSocket string              `json:"status_socket"`
	Sentinel     sentinelConfig      `json:"sentinel"`
	Log          logConfig           `json:"log"`

	// source and digest name the file this configuration came from and
	// its SHA-256, for verifyInputs.
	source string
	digest [sha256.Size]byte
}

type ifaceConfig struct {
	Name string `json:"name"`
	// Mode is native (default) or generic.
	Mode  string `json:"mode"`
	Netns string `json:"netns"`
}

// gatewayConfig is the ControlStream connection (mutual TLS).
type gatewayConfig struct {
	Address    string `json:"address"`
	CA         string `json:"ca"`
	Cert       string `json:"cert"`
	Key        string `json:"key"`
	ServerName string `json:"server_name"`
}

// serviceRadarConfig is the ServiceRadar mode: a ControlStream to
// ServiceRadar's agent-gateway (monitoring.AgentGatewayService) over
// mutual TLS, answering fortress.* commands.
type serviceRadarConfig struct {
	// Address is the agent-gateway's host:port.
	Address string `json:"address"`
	// CertDir holds ServiceRadar's component.pem, component-key.pem and
	// ca-chain.pem (/etc/serviceradar/certs); CA, Cert and Key override
	// single files.
	CertDir    string            `json:"cert_dir"`
	CA         string            `json:"ca"`
	Cert       string            `json:"cert"`
	Key        string            `json:"key"`
	ServerName string            `json:"server_name"`
	Partition  string            `json:"partition"`
	Labels     map[string]string `json:"labels"`
}

type metricsConfig struct {
	// Listen is host:port for /metrics; "off" disables it.
	Listen string `json:"listen"`
	// TopRules bounds the per-rule series (100).
	TopRules int `json:"top_rules"`
}

type sentinelConfig struct {
	// Enabled defaults to true.
	Enabled       *bool    `json:"enabled"`
	Mode          string   `json:"mode"` // enforce (default) or audit
	AgentBinary   string   `json:"agent_binary"`
	UpdaterBinary string   `json:"updater_binary"`
	Protect       []string `json:"protect"`
	Watch         []string `json:"watch"`
}

type logConfig struct {
	Level  string `json:"level"`  // debug, info (default), warn, error
	Format string `json:"format"` // json (default) or text
}

// parseConfig decodes and checks a configuration, filling defaults. Errors
// name the offending field.
func parseConfig(data []byte) (*config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c config
	if err := dec.Decode(&c); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return nil, fmt.Errorf("field %s: want %s, got JSON %s", te.Field, te.Type, te.Value)
		case errors.As(err, &se):
			return nil, fmt.Errorf("offset %d: %v", se.Offset, err)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return nil, fmt.Errorf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *config) check() error {
	if c.AgentID == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("agent_id: not set and no host name: %w", err)
		}
		c.AgentID = h
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.PinRoot, paths.PinRoot)
	def(&c.StateDir, paths.StateDir)
	def(&c.AuditLog, paths.AuditLog)
	def(&c.StatusSocket, paths.StatusSocket)
	def(&c.Metrics.Listen, defaultMetricsListen)
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "json")
	def(&c.Sentinel.Mode, "enforce")
	if c.Metrics.TopRules == 0 {
		c.Metrics.TopRules = 100
	}
	for name, p := range map[string]string{"pin_root": c.PinRoot, "state_dir": c.StateDir, "audit_log": c.AuditLog,
		"status_socket": c.StatusSocket, "trust_key": c.TrustKey, "sentinel.agent_binary": c.Sentinel.AgentBinary,
		"sentinel.updater_binary": c.Sentinel.UpdaterBinary} {
		if p != "" && (!filepath.IsAbs(p) || filepath.Clean(p) != p) {
			return fmt.Errorf("%s: %q is not a clean absolute path", name, p)
		}
	}
	seen := map[string]bool{}
	for i, ifc := range c.Interfaces {
		if ifc.Name == "" || len(ifc.Name) > 15 || strings.ContainsAny(ifc.Name, "/ \x00") {
			return fmt.Errorf("interfaces[%d].name: %q is not an interface name", i, ifc.Name)
		}
		if seen[ifc.Name] {
			return fmt.Errorf("interfaces[%d].name: %s listed twice", i, ifc.Name)
		}
		seen[ifc.Name] = true
		switch ifc.Mode {
		case "", "native", "generic":
		default:
			return fmt.Errorf("interfaces[%d].mode: %q is not native or generic", i, ifc.Mode)
		}
		if ifc.Netns != "" && !filepath.IsAbs(ifc.Netns) {
			return fmt.Errorf("interfaces[%d].netns: %q is not an absolute path", i, ifc.Netns)
		}
	}
	for i, g := range c.Gateways {
		if _, err := netip.ParseAddr(g); err != nil {
			return fmt.Errorf("gateways[%d]: %q is not an IP address", i, g)
		}
	}
	if g := c.Gateway; g != nil {
		if _, _, err := net.SplitHostPort(g.Address); err != nil {
			return fmt.Errorf("gateway.address: %q is not host:port", g.Address)
		}
		for name, p := range map[string]string{"gateway.ca": g.CA, "gateway.cert": g.Cert, "gateway.key": g.Key} {
			if p == "" {
				return fmt.Errorf("%s: required for the gateway's mutual TLS", name)
			}
			if !filepath.IsAbs(p) {
				return fmt.Errorf("%s: %q is not an absolute path", name, p)
			}
		}
	}
	if sr := c.ServiceRadar; sr != nil {
		if _, _, err := net.SplitHostPort(sr.Address); err != nil {
			return fmt.Errorf("serviceradar.address: %q is not host:port", sr.Address)
		}
		def(&sr.CertDir, paths.ServiceRadarCerts)
		def(&sr.CA, filepath.Join(sr.CertDir, "ca-chain.pem"))
		def(&sr.Cert, filepath.Join(sr.CertDir, "component.pem"))
		def(&sr.Key, filepath.Join(sr.CertDir, "component-key.pem"))
		for _, f := range []struct{ name, path string }{{"serviceradar.cert_dir", sr.CertDir}, {"serviceradar.ca", sr.CA},
			{"serviceradar.cert", sr.Cert}, {"serviceradar.key", sr.Key}} {
			if !filepath.IsAbs(f.path) || filepath.Clean(f.path) != f.path {
				return fmt.Errorf("%s: %q is not a clean absolute path", f.name, f.path)
			}
		}
	}
	if c.Metrics.Listen != "off" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			return fmt.Errorf("metrics.listen: %q is not host:port (or \"off\")", c.Metrics.Listen)
		}
	}
	if c.Metrics.TopRules < 0 || c.Metrics.TopRules > 10000 {
		return fmt.Errorf("metrics.top_rules: %d is not in 1..10000", c.Metrics.TopRules)
	}
	if c.Sentinel.Mode != "enforce" && c.Sentinel.Mode != "audit" {
		return fmt.Errorf("sentinel.mode: %q is not enforce or audit", c.Sentinel.Mode)
	}
	for name, list := range map[string][]string{"sentinel.protect": c.Sentinel.Protect, "sentinel.watch": c.Sentinel.Watch} {
		for i, p := range list {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p {
				return fmt.Errorf("%s[%d]: %q is not a clean absolute path", name, i, p)
			}
		}
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.Log.Level)); err != nil {
		return fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		return fmt.Errorf("log.format: %q is not json or text", c.Log.Format)
	}
	return nil
}

// loadConfig reads the configuration, which must live inside the protected
// configuration directory.
func loadConfig(path, protectedDir string) (*config, error) {
	if err := checkConfigLocation(path, protectedDir); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("config %s: larger than %d bytes", path, maxConfigBytes)
	}
	c, err := parseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.source, c.digest = path, sha256.Sum256(data)
	return c, nil
}

// checkConfigLocation refuses a configuration outside dir (after resolving
// symbolic links): only there does Sentinel stop anyone but the agent from
// writing it.
func checkConfigLocation(path, dir string) error {
	_, inside, err := fortress.Inside(path, dir)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if !inside {
		return fmt.Errorf("config: %s is outside the protected directory %s; the agent reads no configuration from elsewhere", path, dir)
	}
	return nil
}

// inputsOutsideConfigDir lists the trust key and the gateway's TLS files
// that live outside the protected configuration directory, with symbolic
// links resolved: Sentinel protects them too, since whoever can change
// them can sign policy or stand in for the gateway. A file that cannot be
// resolved is judged by its path as written (Sentinel reports it missing).
func (c *config) inputsOutsideConfigDir() []string {
	files := []string{c.TrustKey}
	if c.Gateway != nil {
		files = append(files, c.Gateway.CA, c.Gateway.Cert, c.Gateway.Key)
	}
	if c.ServiceRadar != nil {
		files = append(files, c.ServiceRadar.CA, c.ServiceRadar.Cert, c.ServiceRadar.Key)
	}
	var out []string
	for _, f := range files {
		if f == "" {
			continue
		}
		resolved, inside, err := fortress.Inside(f, protectedConfigDir)
		if err != nil {
			// Not there (yet): judge the path as written.
			resolved = f
			rel, err := filepath.Rel(protectedConfigDir, f)
			inside = err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
		}
		if !inside {
			out = append(out, resolved)
		}
	}
	return out
}

// fortressConfig maps the file onto the package's configuration.
func (c *config) fortressConfig() fortress.Config {
	fc := fortress.Config{
		AgentID: c.AgentID, PinRoot: c.PinRoot, StateDir: c.StateDir, AuditLog: c.AuditLog,
		ShieldBudget: c.ShieldBudget, TopRules: c.Metrics.TopRules,
		Sentinel: fortress.SentinelConfig{
			Disabled: c.Sentinel.Enabled != nil && !*c.Sentinel.Enabled, AgentBinary: c.Sentinel.AgentBinary,
			UpdaterBinary: c.Sentinel.UpdaterBinary, ConfigDir: protectedConfigDir,
			Protect: append(slices.Clone(c.Sentinel.Protect), c.inputsOutsideConfigDir()...),
			Watch:   c.Sentinel.Watch, Audit: c.Sentinel.Mode == "audit",
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
