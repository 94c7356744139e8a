package controlstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/pki"
)

// memBackend stores batches in memory, once each, like the gateway's store.
type memBackend struct {
	mu       sync.Mutex
	pos      map[string]uint64
	packets  map[string]uint64
	events   int
	dropped  uint64
	opens    int
	statuses []*pb.Status
	acks     []*pb.BundleAck
	dups     int
	// noAck stores batches without acknowledging them, as when the gateway
	// dies between commit and ack.
	noAck bool
	// stale makes Open report position 0, as when batches are still queued
	// for the store, so the agent resends what is already stored.
	stale bool
}

func newMem() *memBackend {
	return &memBackend{pos: map[string]uint64{}, packets: map[string]uint64{}}
}

func key(s *Session) string { return fmt.Sprintf("%s/%d", s.AgentID, s.Epoch) }

func (m *memBackend) Open(_ context.Context, s *Session) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.opens++
	if m.stale {
		m.stale = false
		return 0, nil
	}
	return m.pos[key(s)], nil
}

func (m *memBackend) Submit(s *Session, b Batch, done func(error)) {
	m.mu.Lock()
	if b.Seq <= m.pos[key(s)] {
		m.dups++
	} else {
		m.pos[key(s)] = b.Seq
		if b.Counters != nil {
			for _, d := range b.Counters.Deltas {
				m.packets[d.Rule] += d.Packets
			}
		}
		if b.Events != nil {
			m.events += len(b.Events.Events)
			m.dropped += b.Events.Dropped
		}
	}
	noAck := m.noAck
	m.mu.Unlock()
	if !noAck {
		done(nil)
	}
}

func (m *memBackend) Status(_ *Session, st *pb.Status) {
	m.mu.Lock()
	m.statuses = append(m.statuses, st)
	m.mu.Unlock()
}

func (m *memBackend) BundleAck(_ *Session, a *pb.BundleAck) {
	m.mu.Lock()
	m.acks = append(m.acks, a)
	m.mu.Unlock()
}

func (m *memBackend) Close(*Session, error) {}

type fixture struct {
	ca      *pki.CA
	srvTLS  *tls.Config
	addr    string
	backend *memBackend
	server  *Server
	grpc    *grpc.Server
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Server("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ca: ca, srvTLS: pki.ServerTLS(cert, ca.Pool()), backend: newMem()}
	f.start(t, "127.0.0.1:0")
	t.Cleanup(func() { f.grpc.Stop() })
	return f
}

func (f *fixture) start(t *testing.T, addr string) {
	t.Helper()
	var lis net.Listener
	var err error
	for range 50 { // the port may take a moment to free after a stop
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	f.server = NewServer(ServerConfig{Backend: f.backend, PingInterval: 100 * time.Millisecond, Logger: quiet()})
	f.grpc = GRPCServer(f.srvTLS)
	f.server.Register(f.grpc)
	go f.grpc.Serve(lis)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (f *fixture) client(t *testing.T, id string, cfg ClientConfig) *Client {
	t.Helper()
	cert, err := f.ca.Client(id, pki.RoleAgent)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr = f.addr
	cfg.TLS = pki.ClientTLS(cert, f.ca.Pool(), "127.0.0.1")
	cfg.Hello.AgentID = id
	cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 20 * time.Millisecond
	}
	cfg.Logger = quiet()
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReconnectLosesNothing kills the gateway twice while an agent streams
// counters and events, restarts it on the same address, and checks that the
// stored totals equal what the agent was given, with nothing counted twice.
func TestReconnectLosesNothing(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, "agent-1", ClientConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan struct{})
	go func() { c.Run(ctx); close(runDone) }()
	c.SetStatus(&pb.Status{Shield: &pb.Layer{State: pb.LayerState_LAYER_STATE_ENFORCING, Mode: "enforce"}, PolicyVersion: 3})

	sent := map[string]uint64{}
	events := 0
	rules := []string{"10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32"}
	produce := func(n int) {
		for i := range n {
			r := rules[i%len(rules)]
			p := uint64(i%7 + 1)
			c.AddCounters(&pb.CounterDelta{Rule: r, Packets: p, Bytes: p * 64})
			sent[r] += p
			if i%10 == 0 && c.AddEvent(&pb.Event{Kind: pb.EventKind_EVENT_KIND_FIM, Path: "/etc/serviceradar/agent.json", Op: "write"}) {
				events++
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(t, 5*time.Second, "first connect", func() bool { return c.Stats().Connected })
	produce(300)
	for kill := range 2 {
		f.backend.mu.Lock()
		f.backend.noAck = kill == 0
		f.backend.mu.Unlock()
		produce(100)  // the first time: stored but never acknowledged
		f.grpc.Stop() // drops every connection mid-stream
		f.backend.mu.Lock()
		f.backend.noAck = false
		f.backend.stale = kill == 0
		f.backend.mu.Unlock()
		produce(200) // the agent keeps counting while the gateway is gone
		f.start(t, f.addr)
		waitFor(t, 10*time.Second, fmt.Sprintf("reconnect %d", kill+1), func() bool { return c.Stats().Connects >= uint64(kill+2) })
		produce(300)
	}
	c.Flush()
	waitFor(t, 10*time.Second, "drain", c.Drained)

	f.backend.mu.Lock()
	defer f.backend.mu.Unlock()
	for _, r := range rules {
		if f.backend.packets[r] != sent[r] {
			t.Errorf("rule %s: stored %d packets, sent %d", r, f.backend.packets[r], sent[r])
		}
	}
	if f.backend.events != events {
		t.Errorf("stored %d events, sent %d", f.backend.events, events)
	}
	if f.backend.dups == 0 {
		t.Error("no batch was resent: the dedupe path went untested")
	}
	if len(f.backend.statuses) == 0 || f.backend.statuses[0].PolicyVersion != 3 {
		t.Errorf("status not delivered: %v", f.backend.statuses)
	}
	t.Logf("connects %d, opens %d, duplicate batches ignored %d, stats %+v", c.Stats().Connects, f.backend.opens, f.backend.dups, c.Stats())
	cancel()
	<-runDone
}

func TestWrongCertificateRefused(t *testing.T) {
	f := newFixture(t)
	other, _ := pki.NewCA("other")
	rogue, _ := other.Client("agent-1", pki.RoleAgent)
	good, _ := f.ca.Client("agent-1", pki.RoleAgent)
	admin, _ := f.ca.Client("ops", pki.RoleAdmin)

	stream := func(tc *tls.Config, helloID string) error {
		conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := pb.NewControlClient(conn).Stream(ctx)
		if err != nil {
			return err
		}
		if err := s.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: &pb.Hello{AgentId: helloID, Epoch: 1}}}); err != nil {
			_, err = s.Recv()
			return err
		}
		m, err := s.Recv()
		if err != nil {
			return err
		}
		if m.GetWelcome() == nil {
			return fmt.Errorf("got %v", m)
		}
		return nil
	}
	noCert := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: f.ca.Pool(), ServerName: "127.0.0.1"}
	cases := []struct {
		name string
		tls  *tls.Config
		id   string
		code codes.Code
	}{
		{"no client certificate", noCert, "agent-1", codes.Unavailable},
		{"certificate from another CA", pki.ClientTLS(rogue, f.ca.Pool(), "127.0.0.1"), "agent-1", codes.Unavailable},
		{"admin role on the agent stream", pki.ClientTLS(admin, f.ca.Pool(), "127.0.0.1"), "ops", codes.PermissionDenied},
		{"hello claims another agent", pki.ClientTLS(good, f.ca.Pool(), "127.0.0.1"), "agent-2", codes.PermissionDenied},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := stream(c.tls, c.id)
			if status.Code(err) != c.code {
				t.Fatalf("got %v, want code %v", err, c.code)
			}
		})
	}
	if err := stream(pki.ClientTLS(good, f.ca.Pool(), "127.0.0.1"), "agent-1"); err != nil {
		t.Fatalf("good certificate: %v", err)
	}
	f.backend.mu.Lock()
	defer f.backend.mu.Unlock()
	if f.backend.opens != 1 {
		t.Fatalf("backend opened %d sessions, want only the good one", f.backend.opens)
	}

	// The Client with a rogue certificate never connects.
	rc := f.client(t, "agent-9", ClientConfig{})
	rc.cfg.TLS = pki.ClientTLS(rogue, f.ca.Pool(), "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	rc.Run(ctx)
	if rc.Stats().Connects != 0 {
		t.Fatal("rogue client connected")
	}
}

func TestBundleAckAndOverflow(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, "agent-1", ClientConfig{MaxEvents: 10, OnBundle: func(_ context.Context, data []byte) (uint64, error) {
		if strings.Contains(string(data), "old") {
			return 0, fmt.Errorf("%w: version 1, last applied 2", bundle.ErrRollback)
		}
		return 7, nil
	}})
	// Before connecting: 25 events into a queue of 10.
	dropped := 0
	for range 25 {
		if !c.AddEvent(&pb.Event{Kind: pb.EventKind_EVENT_KIND_VIOLATION, Path: "/sys/fs/bpf/serviceradar", Denied: true}) {
			dropped++
		}
	}
	if dropped != 15 {
		t.Fatalf("dropped %d, want 15", dropped)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	waitFor(t, 5*time.Second, "events", func() bool {
		f.backend.mu.Lock()
		defer f.backend.mu.Unlock()
		return f.backend.events == 10 && f.backend.dropped == 15
	})
	var sess *Session
	waitFor(t, 5*time.Second, "session", func() bool { var ok bool; sess, ok = f.server.Session("agent-1"); return ok })
	sess.SendBundle([]byte("new"), 7)
	sess.SendBundle([]byte("old"), 1)
	waitFor(t, 5*time.Second, "acks", func() bool {
		f.backend.mu.Lock()
		defer f.backend.mu.Unlock()
		return len(f.backend.acks) == 2
	})
	a := f.backend.acks
	if !a[0].Applied || a[0].Version != 7 || a[1].Applied || a[1].Reason != "rollback" {
		t.Fatalf("acks %v", a)
	}
}

func TestBackoff(t *testing.T) {
	for a := range 20 {
		d := backoff(a, 100*time.Millisecond, 5*time.Second)
		if d < 50*time.Millisecond || d > 5*time.Second {
			t.Fatalf("attempt %d: %v", a, d)
		}
	}
}
