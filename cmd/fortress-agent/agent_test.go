package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/netlab"
	"github.com/carverauto/fortress/internal/testutil"
	"github.com/carverauto/fortress/pkg/fortress"
)

// TestAgentEnforcesLastBundle runs the daemon's logic on a veth pair
// between two test namespaces. The signed bundle is already in the state
// directory (the gateway is unreachable), so the agent must enforce it from
// the start, and its status socket and metrics must report the drops.
func TestAgentEnforcesLastBundle(t *testing.T) {
	testutil.RequireRoot(t)
	pinRoot := testutil.TempBPFFS(t)
	p := netip.MustParsePrefix
	pair, err := netlab.New(netlab.Config{
		Name:   fmt.Sprintf("fa%d", time.Now().UnixNano()%100000),
		AddrsA: []netip.Prefix{p("10.68.0.1/16"), p("10.68.1.2/16")},
		AddrsB: []netip.Prefix{p("10.68.0.2/16")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	rx, err := pair.B.ListenUDP(7777)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()

	dir := t.TempDir()
	pub, priv, _ := bundle.GenerateKey()
	pubPEM, _ := bundle.MarshalPublicKey(pub)
	trust := filepath.Join(dir, "trust.pem")
	if err := os.WriteFile(trust, pubPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	os.MkdirAll(state, 0o700)
	raw, err := bundle.Sign(bundle.Body{Version: 7, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{"veth-agent"},
		Payload: bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldEnforce, Rules: []bundle.Rule{{CIDR: "10.68.1.0/24", Action: "drop"}}}}}, priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, bundle.StateFile), raw, 0o600); err != nil {
		t.Fatal(err)
	}

	cfgJSON := fmt.Sprintf(`{
		"agent_id": "veth-agent",
		"interfaces": [{"name": %q, "netns": %q}],
		"pin_root": %q, "state_dir": %q, "audit_log": %q, "trust_key": %q,
		"metrics": {"listen": "127.0.0.1:0", "top_rules": 5},
		"status_socket": %q,
		"sentinel": {"enabled": false}
	}`, pair.B.Iface, "/run/netns/"+pair.B.NSName, pinRoot, state, filepath.Join(dir, "audit.log"), trust,
		filepath.Join(dir, "run", "fortress.sock"))
	cfg, err := parseConfig([]byte(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	probeKernel = func() fortress.KernelReport {
		return fortress.KernelReport{Release: "test", Checks: map[string]bool{}, Reasons: map[string]string{}}
	}

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *agent, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { done <- runAgent(ctx, cfg, log, func(a *agent) { ready <- a }) }()
	var a *agent
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("agent exited: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not come up")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()

	const n = 50
	a68 := netip.MustParseAddr
	for _, src := range []string{"10.68.0.1", "10.68.1.2"} {
		if err := pair.A.SendUDP(a68(src), a68("10.68.0.2"), 7777, n); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "allowed traffic", func() bool { return rx.Count(a68("10.68.0.1")) == n })
	if c := rx.Count(a68("10.68.1.2")); c != 0 {
		t.Fatalf("blocked source: %d datagrams arrived", c)
	}

	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", cfg.StatusSocket)
	}}}
	var st StatusReply
	waitFor(t, "drops in status", func() bool {
		resp, err := client.Get("http://agent/v1/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		st = StatusReply{}
		return json.NewDecoder(resp.Body).Decode(&st) == nil && st.Shield.Totals.Drop == n
	})
	if st.Shield.State != fortress.ShieldEnforcing || st.Policy.Version != 7 || !st.Policy.InForce ||
		st.Sentinel.State != fortress.SentinelUnavailable || st.AgentID != "veth-agent" {
		t.Errorf("status: %+v", st.Status)
	}

	resp, err := http.Get("http://" + a.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf(`fortress_shield_rule_packets_total{kind="drop",rule="10.68.1.0/24"} %d`, n),
		`fortress_shield_rule_packets_total{kind="drop",rule="other"} 0`,
		fmt.Sprintf(`fortress_shield_packets_total{verdict="drop"} %d`, n),
		"fortress_policy_version 7",
		`fortress_degraded{layer="shield"} 0`,
		`fortress_degraded{layer="sentinel"} 1`,
		`fortress_layer_state{layer="sentinel",state="unavailable"} 1`,
		`fortress_events_lost_total{where="kernel"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
