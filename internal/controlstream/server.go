package controlstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/pki"
)

// Batch is one sequenced unit received from an agent: counters or events.
type Batch struct {
	Seq      uint64
	Counters *pb.CounterBatch
	Events   *pb.EventBatch
}

// Backend is what the gateway plugs into the Server.
type Backend interface {
	// Open is called once a session's hello is authenticated. It returns the
	// highest stored seq for the session's epoch.
	Open(ctx context.Context, s *Session) (lastSeq uint64, err error)
	// Submit hands over a batch; done must be called once it is durable (or
	// failed). Submit must not block for long.
	Submit(s *Session, b Batch, done func(error))
	// Status records a status report.
	Status(s *Session, st *pb.Status)
	// BundleAck records an agent's answer to a bundle.
	BundleAck(s *Session, a *pb.BundleAck)
	// Close is called when the session ends.
	Close(s *Session, err error)
}

// Session is one connected agent.
type Session struct {
	AgentID   string
	Epoch     uint64
	Hello     *pb.Hello
	Remote    string
	Connected time.Time

	out      chan *pb.GatewayMessage
	ackSeq   atomic.Uint64
	ackWake  chan struct{}
	cancel   context.CancelCauseFunc
	lastSeen atomic.Int64
}

// LastSeen is when the agent last sent anything.
func (s *Session) LastSeen() time.Time { return time.Unix(0, s.lastSeen.Load()) }

// ErrReplaced ends a session that a newer connection of the same agent
// replaced. The agent receives it as codes.Aborted with this text, and
// reconnects at once: the newer connection may have been an impostor with a
// copy of its certificate, or may have gone again already.
var ErrReplaced = errors.New("replaced by a newer connection with this agent's certificate")

// ErrSessionBusy reports a full outbound queue.
var ErrSessionBusy = errors.New("session outbound queue full")

// SendBundle queues a bundle for the agent without blocking.
func (s *Session) SendBundle(data []byte, version uint64) error {
	select {
	case s.out <- &pb.GatewayMessage{Msg: &pb.GatewayMessage_Bundle{Bundle: &pb.PolicyBundle{Data: data, Version: version}}}:
		return nil
	default:
		return ErrSessionBusy
	}
}

func (s *Session) acked(seq uint64) {
	for {
		cur := s.ackSeq.Load()
		if seq <= cur || s.ackSeq.CompareAndSwap(cur, seq) {
			break
		}
	}
	select {
	case s.ackWake <- struct{}{}:
	default:
	}
}

// ServerConfig configures a Server.
type ServerConfig struct {
	Backend Backend
	// PingInterval is how often the gateway pings each agent (15 s).
	PingInterval time.Duration
	// HelloTimeout bounds the wait for an agent's hello (10 s).
	HelloTimeout time.Duration
	Logger       *slog.Logger
}

// Server is the gateway's end of the ControlStream.
type Server struct {
	pb.UnimplementedControlServer
	cfg ServerConfig
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]*Session
}

// NewServer returns a Server for cfg.
func NewServer(cfg ServerConfig) *Server {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 15 * time.Second
	}
	if cfg.HelloTimeout <= 0 {
		cfg.HelloTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, log: cfg.Logger, sessions: map[string]*Session{}}
}

// GRPCServer makes a gRPC server with mutual TLS (client certificates from
// the CA required) and these limits; register services on it.
func GRPCServer(tlsCfg *tls.Config) *grpc.Server {
	return NewGRPCServer(credentials.NewTLS(tlsCfg), MaxMessage)
}

// NewGRPCServer makes a gRPC server with creds that reads messages of at
// most maxRecv bytes (MaxMessage for operators, whose bundles are large;
// MaxAgentMessage where only agents connect).
func NewGRPCServer(creds credentials.TransportCredentials, maxRecv int) *grpc.Server {
	return grpc.NewServer(
		grpc.Creds(creds),
		grpc.MaxRecvMsgSize(maxRecv),
		grpc.MaxSendMsgSize(MaxMessage),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		// Stop waits for stream handlers, so sessions close before the
		// gateway closes its store.
		grpc.WaitForHandlers(true),
	)
}

// Register registers the Control service on g.
func (s *Server) Register(g *grpc.Server) { pb.RegisterControlServer(g, s) }

// Session returns the connected session of an agent.
func (s *Server) Session(agentID string) (*Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.sessions[agentID]
	return x, ok
}

// Sessions returns every connected session.
func (s *Server) Sessions() []*Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Session, 0, len(s.sessions))
	for _, x := range s.sessions {
		out = append(out, x)
	}
	return out
}

// PeerIdentity returns the verified client certificate's id and role.
func PeerIdentity(ctx context.Context) (id, role string, err error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", "", status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", "", status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	id, role = pki.Identity(ti.State.VerifiedChains[0][0])
	return id, role, nil
}

// Stream implements the Control service.
func (s *Server) Stream(stream pb.Control_StreamServer) error {
	ctx := stream.Context()
	id, role, err := PeerIdentity(ctx)
	if err != nil {
		return err
	}
	if role != pki.RoleAgent {
		return status.Errorf(codes.PermissionDenied, "certificate role %q is not %q", role, pki.RoleAgent)
	}
	helloCh := make(chan *pb.AgentMessage, 1)
	errCh := make(chan error, 1)
	go func() {
		m, err := stream.Recv()
		if err != nil {
			errCh <- err
			return
		}
		helloCh <- m
	}()
	var first *pb.AgentMessage
	select {
	case first = <-helloCh:
	case err := <-errCh:
		return err
	case <-time.After(s.cfg.HelloTimeout):
		return status.Error(codes.DeadlineExceeded, "no hello")
	}
	if err := checkAgentMessage(first); err != nil {
		return err
	}
	h := first.GetHello()
	if h == nil {
		return status.Error(codes.InvalidArgument, "first message must be hello")
	}
	if h.AgentId != id {
		return status.Errorf(codes.PermissionDenied, "hello says agent %q, certificate says %q", h.AgentId, id)
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sess := &Session{AgentID: id, Epoch: h.Epoch, Hello: h, Connected: time.Now(),
		out: make(chan *pb.GatewayMessage, 16), ackWake: make(chan struct{}, 1), cancel: cancel}
	if p, ok := peer.FromContext(ctx); ok {
		sess.Remote = p.Addr.String()
	}
	sess.lastSeen.Store(time.Now().UnixNano())

	// One session per agent: a new connection replaces the old one, whose
	// unacknowledged batches the agent resends on this one anyway.
	s.mu.Lock()
	if old, ok := s.sessions[id]; ok {
		old.cancel(ErrReplaced)
	}
	s.sessions[id] = sess
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.sessions[id] == sess {
			delete(s.sessions, id)
		}
		s.mu.Unlock()
	}()

	last, err := s.cfg.Backend.Open(sctx, sess)
	if err != nil {
		s.cfg.Backend.Close(sess, err)
		return status.Errorf(codes.Unavailable, "open session: %v", err)
	}
	sess.ackSeq.Store(last)
	if err := stream.Send(&pb.GatewayMessage{Msg: &pb.GatewayMessage_Welcome{Welcome: &pb.Welcome{LastSeq: last}}}); err != nil {
		s.cfg.Backend.Close(sess, err)
		return err
	}
	s.log.Debug("agent connected", "agent", id, "epoch", h.Epoch, "resume_after", last, "remote", sess.Remote)

	sendErr := make(chan error, 1)
	go func() { sendErr <- s.sender(sctx, stream, sess) }()
	recvErr := make(chan error, 1)
	go func() { recvErr <- s.receive(sctx, stream, sess, last) }()
	// A session the gateway ends (replaced, or its batches cannot be
	// stored) ends here at once, also while an idle agent sends nothing and
	// receive waits in Recv: returning closes the stream, Recv then fails,
	// and the agent learns from the status why it must reconnect.
	select {
	case err = <-recvErr:
	case <-sctx.Done():
	}
	cancel(err)
	if serr := <-sendErr; err == nil {
		err = serr
	}
	cause := context.Cause(sctx)
	if err == nil || errors.Is(err, context.Canceled) {
		err = cause
	}
	s.cfg.Backend.Close(sess, err)
	switch {
	case status.Code(err) == codes.ResourceExhausted:
		return err // the agent learns which limit it broke
	case ctx.Err() != nil:
		return nil // the agent went away
	case errors.Is(cause, ErrReplaced):
		return status.Error(codes.Aborted, ErrReplaced.Error())
	case cause != nil && !errors.Is(cause, context.Canceled):
		return status.Errorf(codes.Unavailable, "session ended by the gateway: %v", cause)
	}
	return nil
}

func (s *Server) receive(ctx context.Context, stream pb.Control_StreamServer, sess *Session, submitted uint64) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			// Ended (replaced): nothing more is handed to the backend.
			return context.Cause(ctx)
		}
		if err := checkAgentMessage(m); err != nil {
			s.log.Warn("agent message refused", "agent", sess.AgentID, "err", err)
			return err
		}
		sess.lastSeen.Store(time.Now().UnixNano())
		var b Batch
		switch x := m.Msg.(type) {
		case *pb.AgentMessage_Counters:
			b = Batch{Seq: x.Counters.Seq, Counters: x.Counters}
		case *pb.AgentMessage_Events:
			b = Batch{Seq: x.Events.Seq, Events: x.Events}
		case *pb.AgentMessage_Status:
			s.cfg.Backend.Status(sess, x.Status)
			continue
		case *pb.AgentMessage_BundleAck:
			s.cfg.Backend.BundleAck(sess, x.BundleAck)
			continue
		case *pb.AgentMessage_Pong, *pb.AgentMessage_Hello:
			continue
		default:
			continue
		}
		if b.Seq <= submitted {
			// Already handed to the backend on this session: a resend.
			sess.acked(b.Seq)
			continue
		}
		if b.Seq != submitted+1 {
			// Only possible if the gateway lost data it had acknowledged
			// (e.g. a restored database); the batches in between are gone
			// from the agent too, so record the gap and go on.
			s.log.Warn("sequence gap", "agent", sess.AgentID, "epoch", sess.Epoch, "after", submitted, "got", b.Seq)
		}
		submitted = b.Seq
		seq := b.Seq
		s.cfg.Backend.Submit(sess, b, func(err error) {
			if err != nil {
				sess.cancel(fmt.Errorf("store batch %d: %w", seq, err))
				return
			}
			sess.acked(seq)
		})
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
	}
}

func (s *Server) sender(ctx context.Context, stream pb.Control_StreamServer, sess *Session) error {
	ping := time.NewTicker(s.cfg.PingInterval)
	defer ping.Stop()
	var sentAck uint64 = sess.ackSeq.Load()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-sess.out:
			if err := stream.Send(m); err != nil {
				return err
			}
		case <-sess.ackWake:
			if a := sess.ackSeq.Load(); a > sentAck {
				if err := stream.Send(&pb.GatewayMessage{Msg: &pb.GatewayMessage_SeqAck{SeqAck: &pb.SeqAck{Seq: a}}}); err != nil {
					return err
				}
				sentAck = a
			}
		case <-ping.C:
			if err := stream.Send(&pb.GatewayMessage{Msg: &pb.GatewayMessage_Ping{Ping: &pb.Ping{TimeUnixNano: time.Now().UnixNano()}}}); err != nil {
				return err
			}
		}
	}
}
