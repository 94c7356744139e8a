package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/carverauto/fortress/internal/pki"
)

// maxConnsPerAgent bounds the ControlStream connections one agent
// certificate may hold open at once (an agent needs one; a reconnect
// overlaps the old one briefly).
const maxConnsPerAgent = 4

// roleSplitter completes the mutual-TLS handshake of every connection on
// the ControlStream port itself and hands the connection to the gRPC
// server for its certificate's role. Agent connections thus meet the agent
// message limit (MaxAgentMessage) at the transport, before a message is
// read, and one agent certificate holds at most maxConnsPerAgent
// connections; only admin connections may send bundle-sized messages.
type roleSplitter struct {
	inner        net.Listener
	tls          *tls.Config
	log          *slog.Logger
	agent, admin *chanListener

	mu    sync.Mutex
	conns map[string]int // open connections per agent id
}

func newRoleSplitter(l net.Listener, cfg *tls.Config, log *slog.Logger) *roleSplitter {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	done := make(chan struct{})
	var once sync.Once
	closeAll := func() { once.Do(func() { close(done) }) }
	mk := func() *chanListener {
		return &chanListener{ch: make(chan net.Conn), done: done, closeAll: closeAll, addr: l.Addr()}
	}
	return &roleSplitter{inner: l, tls: cfg, log: log, agent: mk(), admin: mk(), conns: map[string]int{}}
}

// run accepts until the inner listener fails or is closed.
func (r *roleSplitter) run() {
	defer r.agent.closeAll()
	for {
		c, err := r.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		go r.handshake(c)
	}
}

func (r *roleSplitter) handshake(c net.Conn) {
	tc := tls.Server(c, r.tls)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		r.log.Debug("control handshake", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		c.Close()
		return
	}
	id, role := pki.Identity(st.VerifiedChains[0][0])
	dst := r.agent
	var conn net.Conn = tc
	if role == pki.RoleAdmin {
		dst = r.admin
	} else {
		r.mu.Lock()
		n := r.conns[id]
		if n >= maxConnsPerAgent {
			r.mu.Unlock()
			r.log.Warn("agent connection refused", "agent", id, "open", n, "max", maxConnsPerAgent)
			c.Close()
			return
		}
		r.conns[id] = n + 1
		r.mu.Unlock()
		conn = &countedConn{Conn: tc, done: func() {
			r.mu.Lock()
			if r.conns[id]--; r.conns[id] <= 0 {
				delete(r.conns, id)
			}
			r.mu.Unlock()
		}}
	}
	select {
	case dst.ch <- conn:
	case <-dst.done:
		conn.Close()
	}
}

// countedConn runs done once when closed.
type countedConn struct {
	*tls.Conn
	once sync.Once
	done func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.done)
	return c.Conn.Close()
}

// chanListener is a net.Listener fed by roleSplitter.
type chanListener struct {
	ch       chan net.Conn
	done     chan struct{}
	closeAll func()
	addr     net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { l.closeAll(); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

// handshaken is transport credentials for connections whose TLS handshake
// roleSplitter already completed: it reports their verified state to gRPC
// (so controlstream.PeerIdentity works) without a second handshake.
type handshaken struct{}

func (handshaken) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("handshaken: server side only")
}

func (handshaken) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	var st tls.ConnectionState
	switch x := c.(type) {
	case *tls.Conn:
		st = x.ConnectionState()
	case *countedConn:
		st = x.ConnectionState()
	default:
		return nil, nil, errors.New("handshaken: not a TLS connection")
	}
	return c, credentials.TLSInfo{State: st, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (handshaken) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3"}
}

func (h handshaken) Clone() credentials.TransportCredentials { return h }

func (handshaken) OverrideServerName(string) error { return nil }
