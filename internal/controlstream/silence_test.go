package controlstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/pki"
)

// stuckGateway welcomes every agent and then sends nothing, ever, while
// keeping the stream open: a gateway whose session for the agent is gone
// but whose connection is not.
type stuckGateway struct {
	pb.UnimplementedControlServer
	streams atomic.Int32
}

func (g *stuckGateway) Stream(s pb.Control_StreamServer) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	g.streams.Add(1)
	if err := s.Send(&pb.GatewayMessage{Msg: &pb.GatewayMessage_Welcome{Welcome: &pb.Welcome{}}}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

// TestSilentGatewayReconnects: an idle agent whose gateway stops pinging
// drops the stream after SilenceTimeout and connects again, instead of
// believing itself connected for ever.
func TestSilentGatewayReconnects(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := ca.Server("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gw := &stuckGateway{}
	srv := GRPCServer(pki.ServerTLS(srvCert, ca.Pool()))
	pb.RegisterControlServer(srv, gw)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	cert, err := ca.Client("agent-1", pki.RoleAgent)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ClientConfig{Addr: lis.Addr().String(), TLS: pki.ClientTLS(cert, ca.Pool(), "127.0.0.1"),
		Hello: Hello{AgentID: "agent-1"}, FlushInterval: time.Hour, StatusInterval: time.Hour,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, SilenceTimeout: 300 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	start := time.Now()
	waitFor(t, 5*time.Second, "first connect", func() bool { return c.Stats().Connects >= 1 })
	waitFor(t, 3*time.Second, "reconnect after the gateway fell silent", func() bool { return c.Stats().Connects >= 2 })
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("reconnected after %v, before the silence timeout", took)
	}
	if n := gw.streams.Load(); n < 2 {
		t.Fatalf("gateway saw %d streams", n)
	}
}

// TestReplacedRecognised: the client recognises the gateway's "replaced"
// status through its own error wrapping, and nothing else as such.
func TestReplacedRecognised(t *testing.T) {
	st := status.Error(codes.Aborted, ErrReplaced.Error())
	if !replaced(fmt.Errorf("receive: %w", st)) {
		t.Error("wrapped replaced status not recognised")
	}
	if replaced(fmt.Errorf("receive: %w", status.Error(codes.Unavailable, "session ended by the gateway"))) ||
		replaced(errors.New("replaced")) {
		t.Error("another error taken for a replacement")
	}
}
