package srpeer

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	pb "github.com/carverauto/fortress/api/monitoringpb"
	"github.com/carverauto/fortress/internal/pki"
)

// Reply is everything an agent sent about one command.
type Reply struct {
	Ack      *pb.CommandAck
	Progress []*pb.CommandProgress
	Result   *pb.CommandResult
}

// Peer is a running agent-gateway.
type Peer struct {
	// Addr is host:port of the listener (127.0.0.1).
	Addr string
	ca   *pki.CA
	srv  *grpc.Server

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change below
	hellos  []*pb.ControlStreamHello
	// clientIDs are the common names of the connected agents' certificates.
	clientIDs []string
	out       chan *pb.ControlStreamResponse
	replies   map[string]*Reply
	// order lists message kinds per command id as they arrived.
	order map[string][]string
}

// Start listens on 127.0.0.1 with a fresh CA and a server certificate for
// 127.0.0.1 and localhost, requiring client certificates from that CA.
func Start() (*Peer, error) {
	ca, err := pki.NewCA("serviceradar-test-ca")
	if err != nil {
		return nil, err
	}
	cert, err := ca.Server("127.0.0.1", "localhost")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Peer{Addr: ln.Addr().String(), ca: ca, changed: make(chan struct{}), out: make(chan *pb.ControlStreamResponse, 64),
		replies: map[string]*Reply{}, order: map[string][]string{}}
	p.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLS(cert, ca.Pool()))), grpc.MaxRecvMsgSize(80<<20))
	pb.RegisterAgentGatewayServiceServer(p.srv, &service{p: p})
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Close stops the server.
func (p *Peer) Close() { p.srv.Stop() }

// ClientTLS is the agent's side: a client certificate for agentID and the
// peer's CA.
func (p *Peer) ClientTLS(agentID string) (*tls.Config, error) {
	cert, err := p.ca.Client(agentID, "agent")
	if err != nil {
		return nil, err
	}
	return pki.ClientTLS(cert, p.ca.Pool(), "127.0.0.1"), nil
}

// WriteClientFiles writes ca-chain.pem, component.pem and component-key.pem
// (ServiceRadar's names) for agentID into dir.
func (p *Peer) WriteClientFiles(dir, agentID string) error {
	cert, err := p.ca.Client(agentID, "agent")
	if err != nil {
		return err
	}
	if err := pki.WriteCert(dir, "component.pem", "component-key.pem", cert); err != nil {
		return err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ca.Cert.Raw})
	return os.WriteFile(filepath.Join(dir, "ca-chain.pem"), caPEM, 0o644)
}

func (p *Peer) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// wait blocks until cond (called under the lock) holds or ctx ends.
func (p *Peer) wait(ctx context.Context, what string, cond func() bool) error {
	for {
		p.mu.Lock()
		ok, ch := cond(), p.changed
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-ch:
		}
	}
}

// Hello waits for the n-th hello (from 1) and returns it with the common
// name of the client certificate it came with.
func (p *Peer) Hello(ctx context.Context, n int) (*pb.ControlStreamHello, string, error) {
	var h *pb.ControlStreamHello
	var id string
	err := p.wait(ctx, fmt.Sprintf("hello %d", n), func() bool {
		if len(p.hellos) >= n {
			h, id = p.hellos[n-1], p.clientIDs[n-1]
			return true
		}
		return false
	})
	return h, id, err
}

// Send queues a command for the connected agent.
func (p *Peer) Send(ctx context.Context, cmd *pb.CommandRequest) error {
	select {
	case p.out <- &pb.ControlStreamResponse{Payload: &pb.ControlStreamResponse_Command{Command: cmd}}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run sends a command and waits for its result.
func (p *Peer) Run(ctx context.Context, cmd *pb.CommandRequest) (Reply, error) {
	if cmd.CreatedAt == 0 {
		cmd.CreatedAt = time.Now().Unix()
	}
	if err := p.Send(ctx, cmd); err != nil {
		return Reply{}, err
	}
	var r Reply
	err := p.wait(ctx, "result of "+cmd.CommandId, func() bool {
		if got := p.replies[cmd.CommandId]; got != nil && got.Result != nil {
			r = *got
			return true
		}
		return false
	})
	return r, err
}

// Order lists the kinds of message (ack, progress, result) the agent sent
// for a command, in the order they arrived.
func (p *Peer) Order(id string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.order[id]...)
}

type service struct {
	pb.UnimplementedAgentGatewayServiceServer
	p *Peer
}

func (s *service) ControlStream(stream pb.AgentGatewayService_ControlStreamServer) error {
	p := s.p
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return errors.New("first message is not a hello")
	}
	id := ""
	if pr, ok := peer.FromContext(stream.Context()); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			id, _ = pki.Identity(ti.State.VerifiedChains[0][0])
		}
	}
	p.mu.Lock()
	p.hellos = append(p.hellos, hello)
	p.clientIDs = append(p.clientIDs, id)
	p.notify()
	p.mu.Unlock()

	errc := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			p.record(m)
		}
	}()
	for {
		select {
		case m := <-p.out:
			if err := stream.Send(m); err != nil {
				return err
			}
		case err := <-errc:
			return err
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

func (p *Peer) record(m *pb.ControlStreamRequest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	get := func(id string) *Reply {
		r := p.replies[id]
		if r == nil {
			r = &Reply{}
			p.replies[id] = r
		}
		return r
	}
	switch x := m.Payload.(type) {
	case *pb.ControlStreamRequest_CommandAck:
		get(x.CommandAck.CommandId).Ack = x.CommandAck
		p.order[x.CommandAck.CommandId] = append(p.order[x.CommandAck.CommandId], "ack")
	case *pb.ControlStreamRequest_CommandProgress:
		r := get(x.CommandProgress.CommandId)
		r.Progress = append(r.Progress, x.CommandProgress)
		p.order[x.CommandProgress.CommandId] = append(p.order[x.CommandProgress.CommandId], "progress")
	case *pb.ControlStreamRequest_CommandResult:
		get(x.CommandResult.CommandId).Result = x.CommandResult
		p.order[x.CommandResult.CommandId] = append(p.order[x.CommandResult.CommandId], "result")
	}
	p.notify()
}
