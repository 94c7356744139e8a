package gateway

import (
	"context"
	"crypto/ed25519"
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
)

// TestReplacedConnectionReconnects: a second connection with the real
// agent's own certificate comes and goes while the agent is idle (no
// counters, status only every hour). The agent must notice that its stream
// was replaced and reconnect at once, so that a push a few seconds later
// reaches it. Before, the idle agent kept its dead stream and every push
// said not_connected.
func TestReplacedConnectionReconnects(t *testing.T) {
	pub, priv, _ := bundle.GenerateKey()
	tg := newTestGW(t, []ed25519.PublicKey{pub})
	const id = "edge-1"
	cert, err := tg.ca.Client(id, pki.RoleAgent)
	if err != nil {
		t.Fatal(err)
	}
	agentTLS := pki.ClientTLS(cert, tg.ca.Pool(), "127.0.0.1")
	v, err := bundle.NewVerifier(bundle.Config{Keys: []ed25519.PublicKey{pub}, AgentID: id, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := controlstream.NewClient(controlstream.ClientConfig{Addr: tg.grpcAddr, TLS: agentTLS,
		Hello:         controlstream.Hello{AgentID: id, AgentVersion: "test"},
		FlushInterval: time.Hour, StatusInterval: time.Hour, Logger: quiet(),
		OnBundle: func(_ context.Context, data []byte) (uint64, error) {
			b, err := v.Accept(data, nil)
			if err != nil {
				return 0, err
			}
			return b.Version, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, 5*time.Second, "agent connected", func() bool { return tg.g.Connected() == 1 && c.Stats().Connects == 1 })

	// The second connection: same certificate, a hello, a welcome, a
	// moment, then gone.
	conn, err := grpc.NewClient(tg.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(agentTLS)))
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	s, err := pb.NewControlClient(conn).Stream(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: &pb.Hello{AgentId: id, Epoch: 12345}}}); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("second connection: %v %v", m, err)
	}
	time.Sleep(300 * time.Millisecond)
	scancel()
	conn.Close()

	// The real agent is back within a few seconds, by itself.
	waitFor(t, 3*time.Second, "agent reconnected after being replaced", func() bool { return c.Stats().Connects >= 2 })

	admin, _ := tg.ca.Client("ops", pki.RoleAdmin)
	aconn, err := grpc.NewClient(tg.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(admin, tg.ca.Pool(), "127.0.0.1"))))
	if err != nil {
		t.Fatal(err)
	}
	defer aconn.Close()
	data, err := bundle.Sign(bundle.Body{Version: 1, IssuedAt: time.Now(), Targets: []string{id},
		Payload: bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldEnforce, Rules: []bundle.Rule{{CIDR: "203.0.113.0/24", Action: bundle.ActionDrop}}}}}, priv)
	if err != nil {
		t.Fatal(err)
	}
	var outcome string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r, err := pb.NewAdminClient(aconn).Push(context.Background(), &pb.PushRequest{Bundle: data, AgentIds: []string{id}, WaitMs: 3000})
		if err != nil {
			t.Fatal(err)
		}
		if outcome = r.Results[0].Outcome; outcome == "applied" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if outcome != "applied" {
		t.Fatalf("push after the replaced connection: %s, want applied", outcome)
	}
	if v.LastVersion() != 1 {
		t.Fatalf("agent applied version %d", v.LastVersion())
	}
}

// TestReplacedStreamGetsAborted: the replaced stream itself is closed at
// once with codes.Aborted naming the reason, even though its client sends
// nothing, so the agent on it knows to reconnect.
func TestReplacedStreamGetsAborted(t *testing.T) {
	tg := newTestGW(t, nil)
	cert, _ := tg.ca.Client("edge-2", pki.RoleAgent)
	tlsCfg := pki.ClientTLS(cert, tg.ca.Pool(), "127.0.0.1")
	open := func(epoch uint64) pb.Control_StreamClient {
		conn, err := grpc.NewClient(tg.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		s, err := pb.NewControlClient(conn).Stream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: &pb.Hello{AgentId: "edge-2", Epoch: epoch}}}); err != nil {
			t.Fatal(err)
		}
		if m, err := s.Recv(); err != nil || m.GetWelcome() == nil {
			t.Fatalf("welcome: %v %v", m, err)
		}
		return s
	}
	first := open(1)
	open(2)
	got := make(chan error, 1)
	go func() {
		for {
			if _, err := first.Recv(); err != nil {
				got <- err
				return
			}
		}
	}()
	select {
	case err := <-got:
		if status.Code(err) != codes.Aborted {
			t.Fatalf("replaced stream ended with %v, want codes.Aborted", err)
		}
		if want := controlstream.ErrReplaced.Error(); status.Convert(err).Message() != want {
			t.Fatalf("message %q, want %q", status.Convert(err).Message(), want)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the replaced stream was not closed")
	}
}
