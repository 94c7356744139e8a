package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/carverauto/fortress/pkg/fortress"
)

const fullConfig = `{
  "agent_id": "edge-01",
  "interfaces": [{"name": "eth0"}, {"name": "eth1", "mode": "generic", "netns": "/run/netns/lab"}],
  "gateways": ["198.51.100.7", "2001:db8::7"],
  "pin_root": "/sys/fs/bpf/test",
  "state_dir": "/var/lib/test",
  "audit_log": "/var/log/test/audit.log",
  "trust_key": "/etc/serviceradar/trust.pem",
  "gateway": {"address": "gw.example:50051", "ca": "/etc/serviceradar/ca.pem", "cert": "/etc/serviceradar/a.pem", "key": "/etc/serviceradar/a.key"},
  "metrics": {"listen": "127.0.0.1:9999", "top_rules": 20},
  "status_socket": "/run/test.sock",
  "sentinel": {"mode": "audit", "protect": ["/opt/x"], "watch": ["/etc/passwd"]},
  "log": {"level": "debug", "format": "text"}
}`

func TestParseConfigFull(t *testing.T) {
	c, err := parseConfig([]byte(fullConfig))
	if err != nil {
		t.Fatal(err)
	}
	fc := c.fortressConfig()
	if fc.AgentID != "edge-01" || fc.PinRoot != "/sys/fs/bpf/test" || fc.StateDir != "/var/lib/test" || fc.AuditLog != "/var/log/test/audit.log" {
		t.Errorf("paths: %+v", fc)
	}
	if len(fc.Interfaces) != 2 || fc.Interfaces[1].Mode != fortress.Generic || fc.Interfaces[1].Netns != "/run/netns/lab" {
		t.Errorf("interfaces: %+v", fc.Interfaces)
	}
	if len(fc.Gateways) != 2 || fc.Gateways[1].String() != "2001:db8::7" {
		t.Errorf("gateways: %v", fc.Gateways)
	}
	if !fc.Sentinel.Audit || fc.Sentinel.Disabled || fc.Sentinel.Watch[0] != "/etc/passwd" || fc.TopRules != 20 {
		t.Errorf("sentinel: %+v", fc.Sentinel)
	}
	if len(fc.Sentinel.Protect) != 1 || fc.Sentinel.Protect[0] != "/opt/x" {
		t.Errorf("inputs inside the config dir need no extra protection: %v", fc.Sentinel.Protect)
	}
	c.TrustKey, c.Gateway.Key = "/opt/keys/trust.pem", "/var/lib/agent.key"
	if p := c.fortressConfig().Sentinel.Protect; strings.Join(p, " ") != "/opt/x /opt/keys/trust.pem /var/lib/agent.key" {
		t.Errorf("trust key and TLS key outside the config dir not protected: %v", p)
	}
	// A link inside the config dir to a key outside: the real file is
	// what needs protecting.
	dir := t.TempDir()
	saved := protectedConfigDir
	protectedConfigDir = filepath.Join(dir, "etc")
	defer func() { protectedConfigDir = saved }()
	os.MkdirAll(protectedConfigDir, 0o755)
	real := filepath.Join(dir, "keys", "trust.pem")
	os.MkdirAll(filepath.Dir(real), 0o755)
	os.WriteFile(real, nil, 0o644)
	os.Symlink(real, filepath.Join(protectedConfigDir, "trust.pem"))
	c.TrustKey, c.Gateway.CA, c.Gateway.Cert, c.Gateway.Key = filepath.Join(protectedConfigDir, "trust.pem"), "", "", ""
	if p := c.fortressConfig().Sentinel.Protect; strings.Join(p, " ") != "/opt/x "+real {
		t.Errorf("a trust key linked out of the config dir is not protected where it lives: %v", p)
	}
	if c.Gateway.Address != "gw.example:50051" || c.StatusSocket != "/run/test.sock" || c.Log.Format != "text" {
		t.Errorf("agent settings: %+v", c)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := parseConfig([]byte(`{"agent_id": "a"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.PinRoot != "/sys/fs/bpf/serviceradar" || c.StateDir != "/var/lib/serviceradar/fortress" ||
		c.StatusSocket != "/run/serviceradar/fortress.sock" || c.Metrics.Listen != defaultMetricsListen ||
		c.Metrics.TopRules != 100 || c.Gateway != nil || c.Sentinel.Mode != "enforce" {
		t.Errorf("defaults: %+v", c)
	}
	c, err = parseConfig([]byte(`{}`))
	if err != nil || c.AgentID == "" {
		t.Errorf("agent id from host name: %q, %v", c.AgentID, err)
	}
	c, _ = parseConfig([]byte(`{"sentinel": {"enabled": false}}`))
	if !c.fortressConfig().Sentinel.Disabled {
		t.Error("sentinel.enabled=false not honoured")
	}
}

func TestParseConfigErrors(t *testing.T) {
	cases := []struct{ json, want string }{
		{`{"agent_id": "a", "colour": "red"}`, `unknown field "colour"`},
		{`{"sentinel": {"protekt": []}}`, `unknown field "protekt"`},
		{`{"interfaces": [{"name": "eth0", "mtu": 1500}]}`, `unknown field "mtu"`},
		{`{"agent_id": 7}`, "field agent_id: want string"},
		{`{"interfaces": [{"name": "eth0", "mode": "turbo"}]}`, "interfaces[0].mode"},
		{`{"interfaces": [{"name": "eth0"}, {"name": "eth0"}]}`, "interfaces[1].name: eth0 listed twice"},
		{`{"interfaces": [{"name": "an-interface-name-too-long"}]}`, "interfaces[0].name"},
		{`{"gateways": ["10.0.0.300"]}`, "gateways[0]"},
		{`{"pin_root": "relative/pins"}`, "pin_root"},
		{`{"state_dir": "/var/lib/../tmp"}`, "state_dir"},
		{`{"gateway": {"address": "gw:1", "ca": "/c", "cert": "/c"}}`, "gateway.key: required"},
		{`{"gateway": {"address": "gw", "ca": "/c", "cert": "/c", "key": "/k"}}`, "gateway.address"},
		{`{"metrics": {"listen": "nowhere"}}`, "metrics.listen"},
		{`{"sentinel": {"mode": "off"}}`, "sentinel.mode"},
		{`{"sentinel": {"watch": ["etc/passwd"]}}`, "sentinel.watch[0]"},
		{`{"log": {"level": "chatty"}}`, "log.level"},
		{`{"agent_id": "a"} {"agent_id": "b"}`, "trailing data"},
		{`{"agent_id": "a",}`, "offset"},
	}
	for _, c := range cases {
		_, err := parseConfig([]byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.json, err, c.want)
		}
	}
}

func TestConfigLocation(t *testing.T) {
	dir := t.TempDir()
	protected := filepath.Join(dir, "etc")
	os.MkdirAll(protected, 0o755)
	good := filepath.Join(protected, "fortress-agent.json")
	os.WriteFile(good, []byte(`{"agent_id": "a"}`), 0o600)
	evil := filepath.Join(dir, "evil.json")
	os.WriteFile(evil, []byte(`{"agent_id": "a"}`), 0o600)
	link := filepath.Join(protected, "link.json")
	os.Symlink(evil, link)

	if _, err := loadConfig(good, protected); err != nil {
		t.Fatalf("protected config refused: %v", err)
	}
	for _, p := range []string{evil, link, filepath.Join(protected, "..", "evil.json")} {
		if _, err := loadConfig(p, protected); err == nil || !strings.Contains(err.Error(), "outside the protected directory") {
			t.Errorf("%s: err = %v", p, err)
		}
	}
}

func TestRunFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, &out, &errb); err != nil || !strings.Contains(out.String(), "fortress-agent") {
		t.Errorf("--version: %q, %v", out.String(), err)
	}
	if err := run(context.Background(), []string{"apply", "x"}, &out, &errb); err == nil {
		t.Error("a sub-command was accepted")
	}
	if err := run(context.Background(), []string{"--rules", "x"}, &out, &errb); err == nil {
		t.Error("an unknown flag was accepted")
	}
	if err := run(context.Background(), []string{"--config", "/tmp/evil.json"}, &out, &errb); err == nil ||
		!strings.Contains(err.Error(), "outside the protected directory") && !strings.Contains(err.Error(), "no such file") {
		t.Errorf("config outside the protected directory: %v", err)
	}
}
