package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/controlstream"
	"github.com/carverauto/fortress/internal/pki"
	"github.com/carverauto/fortress/internal/store"
)

type testGW struct {
	ca       *pki.CA
	srvTLS   *tls.Config
	dbPath   string
	grpcAddr string
	httpAddr string
	trust    []ed25519.PublicKey
	g        *Gateway
	st       *store.SQLite
	cancel   context.CancelFunc
	done     chan error
	mod      func(*Config)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestGW(t *testing.T, trust []ed25519.PublicKey) *testGW {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Server("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tg := &testGW{ca: ca, srvTLS: pki.ServerTLS(cert, ca.Pool()), dbPath: filepath.Join(t.TempDir(), "gw.db"),
		grpcAddr: "127.0.0.1:0", httpAddr: "127.0.0.1:0", trust: trust}
	tg.start(t)
	t.Cleanup(func() { tg.stop(t) })
	return tg
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	var err error
	for range 100 {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}

func (tg *testGW) start(t *testing.T) {
	t.Helper()
	st, err := store.Open(tg.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	gl, hl := listen(t, tg.grpcAddr), listen(t, tg.httpAddr)
	tg.grpcAddr, tg.httpAddr = gl.Addr().String(), hl.Addr().String()
	cfg := Config{GRPCListener: gl, HTTPListener: hl, TLS: tg.srvTLS, Store: st, TrustKeys: tg.trust,
		CommitInterval: 10 * time.Millisecond, SnapshotInterval: 250 * time.Millisecond, PingInterval: time.Second, Logger: quiet()}
	if tg.mod != nil {
		tg.mod(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tg.g, tg.st, tg.cancel, tg.done = g, st, cancel, make(chan error, 1)
	go func() { tg.done <- g.Run(ctx) }()
}

func (tg *testGW) stop(t *testing.T) {
	if tg.cancel == nil {
		return
	}
	tg.cancel()
	if err := <-tg.done; err != nil {
		t.Errorf("gateway run: %v", err)
	}
	tg.st.Close()
	tg.cancel = nil
}

// restart stops the gateway and starts it again with mod applied to its config.
func (tg *testGW) restart(t *testing.T, mod func(*Config)) {
	t.Helper()
	tg.stop(t)
	tg.mod = mod
	tg.start(t)
}

func (tg *testGW) agent(t *testing.T, id string, onBundle controlstream.BundleFunc) *controlstream.Client {
	t.Helper()
	return tg.agentWith(t, id, func(c *controlstream.ClientConfig) { c.OnBundle = onBundle })
}

func (tg *testGW) agentWith(t *testing.T, id string, mod func(*controlstream.ClientConfig)) *controlstream.Client {
	t.Helper()
	cert, err := tg.ca.Client(id, pki.RoleAgent)
	if err != nil {
		t.Fatal(err)
	}
	cfg := controlstream.ClientConfig{Addr: tg.grpcAddr, TLS: pki.ClientTLS(cert, tg.ca.Pool(), "127.0.0.1"),
		Hello: controlstream.Hello{AgentID: id, AgentVersion: "test", KernelRelease: "6.12", KernelChecks: map[string]bool{"xdp": true, "bpf_lsm": false},
			KernelReasons: map[string]string{"bpf_lsm": "lsm= lacks bpf"}},
		FlushInterval: 50 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: quiet()}
	if mod != nil {
		mod(&cfg)
	}
	c, err := controlstream.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func (tg *testGW) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get("http://" + tg.httpAddr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAPIAndMetrics(t *testing.T) {
	tg := newTestGW(t, nil)
	a1 := tg.agent(t, "edge-1", nil)
	a2 := tg.agent(t, "edge-2", nil)
	a1.SetStatus(&pb.Status{Shield: &pb.Layer{State: pb.LayerState_LAYER_STATE_ENFORCING, Mode: "enforce"},
		Sentinel: &pb.Layer{State: pb.LayerState_LAYER_STATE_ENFORCING, Mode: "enforce"}, PolicyVersion: 4})
	a2.SetStatus(&pb.Status{Shield: &pb.Layer{State: pb.LayerState_LAYER_STATE_DEGRADED, Reason: "xdp attach failed"},
		Sentinel: &pb.Layer{State: pb.LayerState_LAYER_STATE_UNAVAILABLE, Reason: "no bpf lsm"}, DegradedReasons: []string{"shield: xdp attach failed"}})
	a1.AddCounters(&pb.CounterDelta{Rule: "203.0.113.0/24", Packets: 40, Bytes: 4000},
		&pb.CounterDelta{Rule: "198.51.100.0/24", DryRun: true, Packets: 9, Bytes: 900})
	a2.AddCounters(&pb.CounterDelta{Rule: "203.0.113.0/24", Packets: 2, Bytes: 200})
	a1.AddEvent(&pb.Event{Kind: pb.EventKind_EVENT_KIND_VIOLATION, Path: "/etc/serviceradar/agent.json", Op: "unlink", Process: "rm", Pid: 42, Denied: true})
	waitFor(t, 5*time.Second, "drain", func() bool { return a1.Drained() && a2.Drained() })

	var fleet []Row
	tg.getJSON(t, "/api/counters?fleet=1&dry_run=0", &fleet)
	if len(fleet) != 1 || fleet[0].Rule != "203.0.113.0/24" || fleet[0].Packets != 42 || fleet[0].Agents != 2 {
		t.Fatalf("fleet counters %+v", fleet)
	}
	var perAgent []Row
	tg.getJSON(t, "/api/counters?agent=edge-1&filter=198.51", &perAgent)
	if len(perAgent) != 1 || !perAgent[0].DryRun || perAgent[0].Packets != 9 {
		t.Fatalf("agent counters %+v", perAgent)
	}
	var events []store.Event
	tg.getJSON(t, "/api/events", &events)
	if len(events) != 1 || events[0].AgentID != "edge-1" || events[0].Kind != "violation" || !events[0].Denied {
		t.Fatalf("events %+v", events)
	}
	var agents []AgentView
	waitFor(t, 5*time.Second, "status", func() bool {
		tg.getJSON(t, "/api/agents", &agents)
		return len(agents) == 2 && agents[0].Status.PolicyVersion == 4 && agents[1].Health == "degraded"
	})
	if agents[0].Health != "enforcing" || !agents[0].Connected || agents[0].Kernel["bpf_lsm"] == "ok" {
		t.Fatalf("agents %+v", agents)
	}
	resp, err := http.Get("http://" + tg.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"fortress_gateway_counter_updates_total 3",
		"fortress_gateway_events_total 1",
		"fortress_gateway_agents_connected 2",
		`fortress_agent_packets_total{agent="edge-1",kind="would-drop"} 9`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	resp, err = http.Get("http://" + tg.httpAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "EventSource") {
		t.Fatal("dashboard page not served")
	}
}

// TestGatewayRestartExactTotals stops the gateway (and its database) while
// agents stream, starts it again on the same addresses and database, and
// checks that the stored totals equal what the agents were given.
func TestGatewayRestartExactTotals(t *testing.T) {
	tg := newTestGW(t, nil)
	var agents []*controlstream.Client
	for i := range 5 {
		agents = append(agents, tg.agent(t, fmt.Sprintf("edge-%d", i), nil))
	}
	var sentPk, sentEv uint64
	produce := func(n int) {
		for i := range n {
			for j, a := range agents {
				p := uint64(i%5 + j + 1)
				a.AddCounters(&pb.CounterDelta{Rule: fmt.Sprintf("10.%d.0.0/16", i%3), Packets: p, Bytes: p * 100})
				sentPk += p
				if i%7 == 0 && a.AddEvent(&pb.Event{Kind: pb.EventKind_EVENT_KIND_FIM, Path: "/etc/serviceradar/x.json", Op: "write"}) {
					sentEv++
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitFor(t, 5*time.Second, "connect", func() bool { return tg.g.Connected() == len(agents) })
	produce(100)
	tg.stop(t)
	produce(50)
	tg.start(t)
	produce(100)
	for _, a := range agents {
		a.Flush()
	}
	waitFor(t, 15*time.Second, "drain", func() bool {
		for _, a := range agents {
			if !a.Drained() {
				return false
			}
		}
		return true
	})
	var tot map[string]uint64
	tg.getJSON(t, "/api/totals", &tot)
	if tot["packets"] != sentPk || tot["bytes"] != sentPk*100 || tot["events"] != sentEv {
		t.Fatalf("stored %v, sent packets %d events %d", tot, sentPk, sentEv)
	}
}

func TestPushBundle(t *testing.T) {
	pub, priv, _ := bundle.GenerateKey()
	tg := newTestGW(t, []ed25519.PublicKey{pub})
	var verifiers []*bundle.Verifier
	for _, id := range []string{"edge-1", "edge-2"} {
		v, err := bundle.NewVerifier(bundle.Config{Keys: []ed25519.PublicKey{pub}, AgentID: id, StateDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		verifiers = append(verifiers, v)
		tg.agent(t, id, func(_ context.Context, data []byte) (uint64, error) {
			b, err := v.Accept(data, nil)
			if err != nil {
				return 0, err
			}
			return b.Version, nil
		})
	}
	waitFor(t, 5*time.Second, "connect", func() bool { return tg.g.Connected() == 2 })
	sign := func(version uint64, targets ...string) []byte {
		d, err := bundle.Sign(bundle.Body{Version: version, IssuedAt: time.Now(), Targets: targets,
			Payload: bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldEnforce, Rules: []bundle.Rule{{CIDR: "203.0.113.0/24", Action: bundle.ActionDrop}}}}}, priv)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	push := func(cert tls.Certificate, data []byte, agents ...string) (*pb.PushResponse, error) {
		conn, err := grpc.NewClient(tg.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(cert, tg.ca.Pool(), "127.0.0.1"))))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return pb.NewAdminClient(conn).Push(context.Background(), &pb.PushRequest{Bundle: data, AgentIds: agents, WaitMs: 5000})
	}
	admin, _ := tg.ca.Client("ops", pki.RoleAdmin)
	outcomes := func(r *pb.PushResponse) string {
		var s []string
		for _, x := range r.Results {
			s = append(s, x.AgentId+"="+x.Outcome+"/"+x.Reason)
		}
		return strings.Join(s, " ")
	}
	r, err := push(admin, sign(3, bundle.AllAgents))
	if err != nil || outcomes(r) != "edge-1=applied/ edge-2=applied/" {
		t.Fatalf("push v3: %v %v", err, r)
	}
	r, err = push(admin, sign(3, bundle.AllAgents))
	if err != nil || outcomes(r) != "edge-1=refused/replay edge-2=refused/replay" {
		t.Fatalf("replay: %v %v", err, outcomes(r))
	}
	r, err = push(admin, sign(4, "edge-2", "edge-9"), "edge-1", "edge-2", "edge-9")
	if err != nil || outcomes(r) != "edge-1=refused/not_for_agent edge-2=applied/ edge-9=not_connected/" {
		t.Fatalf("targeted: %v %v", err, outcomes(r))
	}
	if verifiers[0].LastVersion() != 3 || verifiers[1].LastVersion() != 4 {
		t.Fatalf("versions %d %d", verifiers[0].LastVersion(), verifiers[1].LastVersion())
	}
	// Bundles the gateway cannot verify are not sent at all.
	_, otherPriv, _ := bundle.GenerateKey()
	forged, _ := bundle.Sign(bundle.Body{Version: 9, IssuedAt: time.Now(), Targets: []string{"*"},
		Payload: bundle.Payload{Sentinel: &bundle.Sentinel{Mode: bundle.SentinelAudit}}}, otherPriv)
	if _, err := push(admin, forged); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "unknown_key") {
		t.Fatalf("forged push: %v", err)
	}
	// Agents cannot push.
	agentCert, _ := tg.ca.Client("edge-1", pki.RoleAgent)
	if _, err := push(agentCert, sign(5, "*")); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("agent push: %v", err)
	}
	var agents []AgentView
	waitFor(t, 3*time.Second, "ack in agent view", func() bool {
		tg.getJSON(t, "/api/agents", &agents)
		return agents[1].Status.LastAck != nil && agents[1].Status.LastAck.Version == 4
	})
}
