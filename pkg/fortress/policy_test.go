//go:build linux

package fortress

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/carverauto/fortress/internal/auditlog"
	"github.com/carverauto/fortress/internal/blocklist"
	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/lpm"
	"github.com/carverauto/fortress/internal/shield"
)

func signed(t *testing.T, priv ed25519.PrivateKey, version uint64, p bundle.Payload) []byte {
	t.Helper()
	data, err := bundle.Sign(bundle.Body{Version: version, IssuedAt: time.Now().Add(-time.Minute),
		Targets: []string{bundle.AllAgents}, Payload: p}, priv)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func parsed(t *testing.T, pub ed25519.PublicKey, data []byte) *bundle.Bundle {
	t.Helper()
	b, err := bundle.Parse(data, bundle.Options{Keys: []ed25519.PublicKey{pub}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConvertInlineRules(t *testing.T) {
	pub, priv, _ := bundle.GenerateKey()
	data := signed(t, priv, 3, bundle.Payload{
		Shield: &bundle.Shield{Mode: bundle.ShieldDryRun, Rules: []bundle.Rule{
			{CIDR: "10.0.0.0/8", Action: "drop"},
			{CIDR: "10.1.0.0/16", Action: "allow"},
			{CIDR: "192.0.2.7/32", Action: "drop", LogOnly: true},
			{CIDR: "2001:db8::/32", Action: "drop"},
			{CIDR: "10.0.0.0/8", Action: "drop"}, // exact repeat: skipped
		}},
		Gateways: &bundle.Gateways{V4: []string{"198.51.100.7"}, V6: []string{"2001:db8:ffff::7"}},
		Sentinel: &bundle.Sentinel{Mode: bundle.SentinelEnforce, Protect: []string{"/etc/serviceradar"}, Watch: []string{"/etc/passwd"}},
	})
	p, err := convert(context.Background(), parsed(t, pub, data), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []lpm.Rule{
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Action: lpm.Drop},
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Action: lpm.Allow},
		{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Action: lpm.Drop, LogOnly: true},
		{Prefix: netip.MustParsePrefix("2001:db8::/32"), Action: lpm.Drop},
	}
	if len(p.rules) != len(want) {
		t.Fatalf("rules = %v, want %v", p.rules, want)
	}
	for i := range want {
		if p.rules[i] != want[i] {
			t.Errorf("rule %d = %v, want %v", i, p.rules[i], want[i])
		}
	}
	if !p.dryRun || p.duplicates != 1 || p.version != 3 {
		t.Errorf("dryRun %v duplicates %d version %d", p.dryRun, p.duplicates, p.version)
	}
	if len(p.management) != 2 || p.sentinel == nil || p.sentinel.Watch[0] != "/etc/passwd" {
		t.Errorf("gateways %v sentinel %+v", p.management, p.sentinel)
	}
}

func TestConvertRefusals(t *testing.T) {
	cases := []struct {
		name  string
		rules []bundle.Rule
		want  string
	}{
		{"conflict", []bundle.Rule{{CIDR: "10.0.0.0/8", Action: "drop"}, {CIDR: "10.0.0.0/8", Action: "allow"}},
			"payload.shield.rules[1] (10.0.0.0/8 allow): conflicts with an earlier rule (10.0.0.0/8 drop)"},
		{"host bits", []bundle.Rule{{CIDR: "10.0.0.0/8", Action: "drop"}, {CIDR: "10.9.9.9/8", Action: "drop", LogOnly: true}},
			`payload.shield.rules[1] "10.9.9.9/8": host bits set: 10.9.9.9/8 is not a network address (the network is 10.0.0.0/8)`},
		{"IPv4-mapped", []bundle.Rule{{CIDR: "::ffff:10.1.2.3/128", Action: "drop"}},
			`payload.shield.rules[0] "::ffff:10.1.2.3/128": IPv4-mapped IPv6 address never matches IPv4 traffic: write 10.1.2.3/32 instead`},
		{"log-only allow", []bundle.Rule{{CIDR: "10.0.0.0/8", Action: "allow", LogOnly: true}},
			`payload.shield.rules[0] "10.0.0.0/8": log-only applies to drop rules`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := convertRules(c.rules)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestConvertListRef(t *testing.T) {
	dir := t.TempDir()
	list := "# blocklist\n10.0.0.0/8\n192.0.2.0/24 drop log-only\n2001:db8::/32 allow\n"
	src := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(src, []byte(list), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(list))
	ref := &bundle.ListRef{URL: "file://" + src, SHA256: hex.EncodeToString(sum[:])}
	pub, priv, _ := bundle.GenerateKey()
	b := parsed(t, pub, signed(t, priv, 1, bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldEnforce, ListRef: ref}}))
	cache := listCache{dir: filepath.Join(dir, "cache")}
	p, err := convert(context.Background(), b, cache.get)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.rules) != 3 || !p.rules[1].LogOnly || p.rules[2].Action != lpm.Allow || p.listRef != ref.SHA256 {
		t.Fatalf("rules %v listRef %q", p.rules, p.listRef)
	}
	// The list is cached by digest: gone at the source, still there.
	os.Remove(src)
	if _, err := convert(context.Background(), b, cache.get); err != nil {
		t.Fatalf("from cache: %v", err)
	}

	// A list that does not match its digest, and one with a bad line.
	bad := "10.0.0.0/8\n10.0.0.300/8\n"
	os.WriteFile(src, []byte(bad), 0o600)
	ref2 := &bundle.ListRef{URL: src, SHA256: strings.Repeat("0", 64)}
	b2 := parsed(t, pub, signed(t, priv, 2, bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldEnforce, ListRef: ref2}}))
	if _, err := convert(context.Background(), b2, cache.get); !errors.Is(err, bundle.ErrListDigest) {
		t.Fatalf("digest mismatch: err = %v", err)
	}
	sum = sha256.Sum256([]byte(bad))
	ref3 := &bundle.ListRef{URL: src, SHA256: hex.EncodeToString(sum[:])}
	b3 := parsed(t, pub, signed(t, priv, 3, bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldEnforce, ListRef: ref3}}))
	_, err = convert(context.Background(), b3, cache.get)
	var le *blocklist.LineError
	if !errors.As(err, &le) || le.Line != 2 || !strings.Contains(err.Error(), "payload.shield.list_ref") {
		t.Fatalf("bad line: err = %v", err)
	}
}

func TestMergeGateways(t *testing.T) {
	a := netip.MustParseAddr
	got, err := mergeManagement([]netip.Addr{a("192.0.2.1")}, []netip.Addr{a("192.0.2.1"), a("::ffff:192.0.2.2"), a("2001:db8::1")})
	if err != nil {
		t.Fatal(err)
	}
	if !sameAddrs(got, []netip.Addr{a("192.0.2.1"), a("192.0.2.2"), a("2001:db8::1")}) {
		t.Fatalf("got %v", got)
	}
	var many []netip.Addr
	for i := range shield.MaxManagement + 1 {
		many = append(many, netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}))
	}
	if _, err := mergeManagement(nil, many); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("too many: err = %v", err)
	}
}

func TestCounterDeltas(t *testing.T) {
	var c counterState
	c.init()
	r1 := lpm.Rule{Prefix: netip.MustParsePrefix("10.0.0.0/8")}
	r2 := lpm.Rule{Prefix: netip.MustParsePrefix("192.0.2.0/24"), LogOnly: true}
	r3 := lpm.Rule{Prefix: netip.MustParsePrefix("198.51.100.0/24")}
	d := c.deltas([]shield.RuleStat{{Rule: r1, Packets: 10, Bytes: 1000}, {Rule: r2, Packets: 3, Bytes: 300}, {Rule: r3}}, false, 1, counterSnapshot{})
	if len(d) != 2 || d[0].Packets != 10 || d[1].Kind != "would-drop" || !d[1].DryRun {
		t.Fatalf("first deltas %+v", d)
	}
	if s := c.snapshot(); len(s.top) != 1 || s.top[0].Rule != "10.0.0.0/8" || s.sum["drop"].packets != 10 {
		t.Fatalf("snapshot %+v", s)
	}
	// r1 grew, r2 was reset (left the policy and came back).
	d = c.deltas([]shield.RuleStat{{Rule: r1, Packets: 15, Bytes: 1500}, {Rule: r2, Packets: 1, Bytes: 100}}, false, 10, counterSnapshot{})
	if len(d) != 2 || d[0].Packets != 5 || d[0].Bytes != 500 || d[1].Packets != 1 {
		t.Fatalf("second deltas %+v", d)
	}
	// Nothing new: no deltas; whole-set dry run turns drops into would-drops.
	if d := c.deltas([]shield.RuleStat{{Rule: r1, Packets: 15, Bytes: 1500}}, true, 10, counterSnapshot{}); len(d) != 0 {
		t.Fatalf("idle deltas %+v", d)
	}
	if s := c.snapshot(); s.top[0].Kind != "would-drop" {
		t.Fatalf("dry-run kind %+v", s.top)
	}
}

// TestCounterDeltaIdentity: a delta carries its rule's action and log-only
// flag, so a drop rule and a later allow rule for the same CIDR
// arrive as two rules, and allow hits are never drops.
func TestCounterDeltaIdentity(t *testing.T) {
	var c counterState
	c.init()
	p := netip.MustParsePrefix("10.77.99.0/24")
	drop := lpm.Rule{Prefix: p}
	allow := lpm.Rule{Prefix: p, Action: lpm.Allow}
	logOnly := lpm.Rule{Prefix: netip.MustParsePrefix("fd77::55:0/112"), LogOnly: true}
	d := c.deltas([]shield.RuleStat{{Rule: drop, Packets: 7, Bytes: 700}, {Rule: allow, Packets: 5, Bytes: 500},
		{Rule: logOnly, Packets: 2, Bytes: 200}}, false, 10, counterSnapshot{})
	want := []CounterDelta{
		{Rule: "10.77.99.0/24", Action: "drop", Kind: CounterDrop, Packets: 7, Bytes: 700},
		{Rule: "10.77.99.0/24", Action: "allow", Kind: CounterAllow, Packets: 5, Bytes: 500},
		{Rule: "fd77::55:0/112", Action: "drop", LogOnly: true, Kind: CounterWouldDrop, DryRun: true, Packets: 2, Bytes: 200},
	}
	if len(d) != len(want) {
		t.Fatalf("deltas %+v", d)
	}
	for i := range want {
		if d[i] != want[i] {
			t.Errorf("delta %d: %+v, want %+v", i, d[i], want[i])
		}
	}
	// Dry-run mode: the drop rule's matches are would-drops, the allow
	// rule's stay allow hits.
	d = c.deltas([]shield.RuleStat{{Rule: drop, Packets: 8, Bytes: 800}, {Rule: allow, Packets: 6, Bytes: 600}}, true, 10, counterSnapshot{})
	if len(d) != 2 || d[0].Kind != CounterWouldDrop || !d[0].DryRun || d[1].Kind != CounterAllow || d[1].DryRun {
		t.Fatalf("dry-run deltas %+v", d)
	}
}

func TestAuditRecorder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := auditlog.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := &auditRecorder{log: l, logger: slog.New(slog.DiscardHandler)}
	var _ shield.Recorder = rec
	rec.Record("attach", "shield veth0", nil, map[string]any{"mode": "native"})
	rec.Record("load", "shield", errors.New("verifier says no"), nil)
	l.Close()
	if _, err := auditlog.VerifyFile(path); err != nil {
		t.Fatalf("verify: %v", err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `"object":"shield veth0"`) || !strings.Contains(string(data), `"outcome":"verifier says no"`) {
		t.Fatalf("log:\n%s", data)
	}
	if rec.failures.Load() != 0 {
		t.Fatalf("failures %d", rec.failures.Load())
	}
	// After Close, appends fail; the loss is counted, never silent.
	rec.Record("pin", "x", nil, nil)
	if rec.failures.Load() != 1 || rec.lastError() == "" {
		t.Fatalf("lost record not counted")
	}
}

func TestConfigDefaults(t *testing.T) {
	pub, _, _ := bundle.GenerateKey()
	c := Config{AgentID: "a", TrustKeys: []ed25519.PublicKey{pub}, Interfaces: []Interface{{Name: "eth0"}}}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	if c.PinRoot != DefaultPinRoot || c.StateDir != DefaultStateDir || c.Interfaces[0].Mode != Native {
		t.Fatalf("defaults %+v", c)
	}
	bad := []Config{
		{TrustKeys: []ed25519.PublicKey{pub}},
		{AgentID: "a"},
		{AgentID: "a", TrustKeys: []ed25519.PublicKey{pub}, Interfaces: []Interface{{Name: "eth0", Mode: "turbo"}}},
		{AgentID: "a", TrustKeys: []ed25519.PublicKey{pub}, Interfaces: []Interface{{Name: "eth0"}, {Name: "eth0"}}},
		{AgentID: "a", TrustKeys: []ed25519.PublicKey{pub}, StateDir: "relative"},
	}
	for i, c := range bad {
		if err := c.defaults(); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
}
