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
	"sync"
	"testing"
	"time"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/controlstream"
	"github.com/carverauto/fortress/internal/pki"
	"github.com/carverauto/fortress/pkg/fortress"
)

// TestAgentEnforcesLastBundle runs the daemon's logic on a veth pair
// between two test namespaces. The signed bundle is already in the state
// directory (the gateway is unreachable), so the agent must enforce it from
// the start, and its status socket and metrics must report the drops.
func TestAgentEnforcesLastBundle(t *testing.T) {
	b := newTestBed(t, "fa", "10.68", 7777)
	pinRoot, pair, rx, dir, priv, trust := b.pinRoot, b.pair, b.rx, b.dir, b.priv, b.trust
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

	gw := startGateway(t, dir)
	cfgJSON := fmt.Sprintf(`{
		"agent_id": "veth-agent",
		"interfaces": [{"name": %q, "netns": %q}],
		"pin_root": %q, "state_dir": %q, "audit_log": %q, "trust_key": %q,
		"metrics": {"listen": "127.0.0.1:0", "top_rules": 5},
		"status_socket": %q,
		"gateway": {"address": %q, "ca": %q, "cert": %q, "key": %q},
		"sentinel": {"enabled": false}
	}`, pair.B.Iface, "/run/netns/"+pair.B.NSName, pinRoot, state, filepath.Join(dir, "audit.log"), trust,
		filepath.Join(dir, "run", "fortress.sock"), gw.addr, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "agent.pem"),
		filepath.Join(dir, "agent-key.pem"))
	cfg, err := parseConfig([]byte(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	a, stop := startAgent(t, cfg)
	defer stop()

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

	client := socketClient(cfg.StatusSocket)
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

	// The gateway sees the hello, the status, the counter deltas, and
	// acknowledges a pushed bundle that the agent applies.
	waitFor(t, "counters at the gateway", func() bool { return gw.packets("10.68.1.0/24") == n })
	sess, ok := gw.server.Session("veth-agent")
	if !ok || sess.Hello.GetPolicyVersion() != 7 || sess.Hello.GetKernel().GetRelease() != "test" {
		t.Fatalf("session %v hello %v", ok, sess)
	}
	raw8, _ := bundle.Sign(bundle.Body{Version: 8, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{"*"},
		Payload: bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldEnforce, Rules: []bundle.Rule{
			{CIDR: "10.68.1.0/24", Action: "drop"}, {CIDR: "192.0.2.0/24", Action: "drop"}}}}}, priv)
	if err := sess.SendBundle(raw8, 8); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bundle ack", func() bool { ack := gw.lastAck(); return ack != nil && ack.Applied && ack.Version == 8 })
	waitFor(t, "status with version 8", func() bool { st := gw.lastStatus(); return st != nil && st.PolicyVersion == 8 })
	if err := sess.SendBundle(raw8, 8); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replay refused", func() bool { ack := gw.lastAck(); return ack != nil && !ack.Applied && ack.Reason == "replay" })

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
		"fortress_policy_version 8",
		"fortress_controlstream_connected 1",
		`fortress_bundles_total{outcome="applied"} 1`,
		`fortress_bundles_total{outcome="replay"} 1`,
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

// gateway is a ControlStream server with an in-memory store.
type gateway struct {
	addr   string
	server *controlstream.Server
	mu     sync.Mutex
	counts map[string]uint64
	acks   []*pb.BundleAck
	stats  []*pb.Status
}

func startGateway(t *testing.T, dir string) *gateway {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, _ := ca.Server("127.0.0.1")
	agentCert, _ := ca.Client("veth-agent", pki.RoleAgent)
	if err := pki.WriteCert(dir, "agent.pem", "agent-key.pem", agentCert); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ca.pem"), ca.CertPEM, 0o644)
	g := &gateway{counts: map[string]uint64{}}
	g.server = controlstream.NewServer(controlstream.ServerConfig{Backend: g, Logger: slog.New(slog.DiscardHandler)})
	gs := controlstream.GRPCServer(pki.ServerTLS(srvCert, ca.Pool()))
	g.server.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = lis.Addr().String()
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return g
}

func (g *gateway) Open(context.Context, *controlstream.Session) (uint64, error) { return 0, nil }
func (g *gateway) Submit(_ *controlstream.Session, b controlstream.Batch, done func(error)) {
	g.mu.Lock()
	if b.Counters != nil {
		for _, d := range b.Counters.Deltas {
			g.counts[d.Rule] += d.Packets
		}
	}
	g.mu.Unlock()
	done(nil)
}
func (g *gateway) Status(_ *controlstream.Session, st *pb.Status) {
	g.mu.Lock()
	g.stats = append(g.stats, st)
	g.mu.Unlock()
}
func (g *gateway) BundleAck(_ *controlstream.Session, a *pb.BundleAck) {
	g.mu.Lock()
	g.acks = append(g.acks, a)
	g.mu.Unlock()
}
func (g *gateway) Close(*controlstream.Session, error) {}

func (g *gateway) packets(rule string) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.counts[rule]
}

func (g *gateway) lastAck() *pb.BundleAck {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.acks) == 0 {
		return nil
	}
	return g.acks[len(g.acks)-1]
}

func (g *gateway) lastStatus() *pb.Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.stats) == 0 {
		return nil
	}
	return g.stats[len(g.stats)-1]
}

// startAgent runs the daemon's logic with a kernel probe that claims no
// BPF LSM (the host refuses it) until stop is called.
func startAgent(t *testing.T, cfg *config) (a *agent, stop func()) {
	t.Helper()
	probeKernel = func() fortress.KernelReport {
		return fortress.KernelReport{Release: "test", Checks: map[string]bool{}, Reasons: map[string]string{}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *agent, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { done <- runAgent(ctx, cfg, log, func(a *agent) { ready <- a }) }()
	select {
	case a = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("agent exited: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("agent did not come up")
	}
	return a, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}
}

// socketClient talks HTTP over the agent's status socket.
func socketClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second) // the VM lab runs under TCG
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
