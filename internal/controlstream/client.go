package controlstream

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/bundle"
)

// MaxMessage is the largest gRPC message either side accepts: a bundle at
// the default size cap plus framing.
const MaxMessage = bundle.DefaultMaxSize + 1<<20

// maxEventsPerBatch keeps event batches well under gRPC's message limits.
const maxEventsPerBatch = 512

// Hello is what an agent tells the gateway about itself on every connect.
type Hello struct {
	AgentID      string
	AgentVersion string
	Hostname     string
	Capabilities []string
	// Kernel is the kernel probe: release and per-feature results.
	KernelRelease string
	KernelChecks  map[string]bool
	KernelReasons map[string]string
}

// BundleFunc applies a pushed bundle and returns the applied version, or an
// error whose bundle.Reason is reported to the gateway.
type BundleFunc func(ctx context.Context, data []byte) (uint64, error)

// ClientConfig configures a Client.
type ClientConfig struct {
	// Addr is the gateway's host:port.
	Addr string
	// TLS carries the agent's client certificate and the gateway's CA.
	TLS   *tls.Config
	Hello Hello
	// OnBundle applies bundles; nil refuses them.
	OnBundle BundleFunc
	// FlushInterval is how often counter deltas are cut into a batch (1 s).
	FlushInterval time.Duration
	// StatusInterval is how often status is re-sent unchanged (15 s).
	StatusInterval time.Duration
	// MaxBatches bounds batches held for (re)delivery (1024).
	MaxBatches int
	// MaxEvents bounds events waiting for a batch (10000); more are dropped
	// and counted.
	MaxEvents int
	// MaxCounterKeys bounds distinct rule/kind keys waiting (1<<20).
	MaxCounterKeys int
	// MinBackoff and MaxBackoff bound the reconnect delay (200 ms, 30 s).
	MinBackoff, MaxBackoff time.Duration
	// SilenceTimeout drops a stream on which the gateway has sent nothing
	// (it pings every 15 s by default) for this long, and reconnects (60 s).
	SilenceTimeout time.Duration
	Logger         *slog.Logger
}

// counterKey is one rule's counter in the form the client sends it: deltas
// are merged only when every field matches, so deltas of different rules
// (a drop and an allow rule for one CIDR, or one rule in two slots) never
// are.
type counterKey struct {
	rule    string
	action  pb.RuleAction
	kind    pb.CounterKind
	logOnly bool
	slot    uint32
}

// keyOf is d's counter key. The action is drop unless d says allow; a delta
// without a kind (a caller that predates kinds) is a would-drop when
// dry_run is set and a drop otherwise.
func keyOf(d *pb.CounterDelta) counterKey {
	k := counterKey{rule: d.Rule, action: pb.RuleAction_RULE_ACTION_DROP, kind: pb.CounterKind_COUNTER_KIND_DROP,
		logOnly: d.LogOnly, slot: d.Slot}
	if d.Action == pb.RuleAction_RULE_ACTION_ALLOW {
		k.action = pb.RuleAction_RULE_ACTION_ALLOW
	}
	switch {
	case d.Kind == pb.CounterKind_COUNTER_KIND_ALLOW, d.Kind == pb.CounterKind_COUNTER_KIND_WOULD_DROP:
		k.kind = d.Kind
	case d.Kind == pb.CounterKind_COUNTER_KIND_UNSPECIFIED && d.DryRun:
		k.kind = pb.CounterKind_COUNTER_KIND_WOULD_DROP
	}
	return k
}

type pending struct {
	seq uint64
	msg *pb.AgentMessage
}

// Client is the agent's end of the ControlStream. Its Add methods never
// block: counters are merged into an accumulator bounded by the number of
// rules, events wait in a bounded queue, and both are cut into sequenced
// batches that are kept until the gateway acknowledges them.
type Client struct {
	cfg     ClientConfig
	log     *slog.Logger
	epoch   uint64
	bundles chan *pb.PolicyBundle

	mu            sync.Mutex
	acc           map[counterKey]*pb.CounterDelta
	events        []*pb.Event
	dropSince     uint64 // events dropped since the last event batch
	queue         []pending
	nextSeq       uint64
	acked         uint64
	status        *pb.Status
	statusVersion uint64
	acks          []*pb.BundleAck
	pongs         []int64

	wake chan struct{}

	// lastHeard is when the gateway last sent anything (unix ns).
	lastHeard     atomic.Int64
	connected     atomic.Bool
	connects      atomic.Uint64
	eventsDropped atomic.Uint64
	keysDropped   atomic.Uint64
	batchesSent   atomic.Uint64
}

// NewClient checks cfg and returns a Client; Run connects it.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Addr == "" || cfg.TLS == nil || cfg.Hello.AgentID == "" {
		return nil, errors.New("controlstream client: need Addr, TLS and Hello.AgentID")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.FlushInterval, time.Second)
	def(&cfg.StatusInterval, 15*time.Second)
	def(&cfg.MinBackoff, 200*time.Millisecond)
	def(&cfg.MaxBackoff, 30*time.Second)
	def(&cfg.SilenceTimeout, time.Minute)
	if cfg.MaxBatches <= 0 {
		cfg.MaxBatches = 1024
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = 10000
	}
	if cfg.MaxCounterKeys <= 0 {
		cfg.MaxCounterKeys = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var b [8]byte
	rand.Read(b[:])
	return &Client{
		cfg:     cfg,
		log:     cfg.Logger.With("agent", cfg.Hello.AgentID),
		epoch:   binary.LittleEndian.Uint64(b[:]) | 1,
		bundles: make(chan *pb.PolicyBundle, 4),
		acc:     map[counterKey]*pb.CounterDelta{},
		nextSeq: 1,
		wake:    make(chan struct{}, 1),
	}, nil
}

// Epoch is this client's sequence space id.
func (c *Client) Epoch() uint64 { return c.epoch }

// poke wakes the writer without waiting: one pending wake-up is enough.
func poke(wake chan struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}

// AddCounters merges counter deltas into the next batch. It never blocks and
// never loses a delta, except for a new key beyond MaxCounterKeys, which is
// dropped and counted. It keeps none of the deltas it is given: the caller
// may reuse them.
func (c *Client) AddCounters(deltas ...*pb.CounterDelta) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range deltas {
		if d.GetPackets() == 0 && d.GetBytes() == 0 {
			continue
		}
		k := keyOf(d)
		a, ok := c.acc[k]
		if !ok {
			if len(c.acc) >= c.cfg.MaxCounterKeys {
				c.keysDropped.Add(1)
				continue
			}
			a = &pb.CounterDelta{Rule: k.rule, Action: k.action, Kind: k.kind, LogOnly: k.logOnly, Slot: k.slot,
				DryRun: k.kind == pb.CounterKind_COUNTER_KIND_WOULD_DROP}
			c.acc[k] = a
		}
		a.Packets += d.Packets
		a.Bytes += d.Bytes
	}
}

// AddEvent queues an event for immediate delivery; an event without a time
// is given the current one. The client keeps e: the caller must not change
// it afterwards. AddEvent never blocks; when the queue is full the event is
// dropped, counted and false returned. A nil event is not queued.
func (c *Client) AddEvent(e *pb.Event) bool {
	if e == nil {
		return false
	}
	if e.TimeUnixNano == 0 {
		e.TimeUnixNano = time.Now().UnixNano()
	}
	c.mu.Lock()
	if len(c.events) >= c.cfg.MaxEvents {
		c.dropSince++
		c.mu.Unlock()
		c.eventsDropped.Add(1)
		return false
	}
	c.events = append(c.events, e)
	c.mu.Unlock()
	poke(c.wake)
	return true
}

// SetStatus records the agent's status; it is sent at once and then
// periodically. The client keeps a copy of s; the time and drop counts it
// sends are its own. A nil status is ignored.
func (c *Client) SetStatus(s *pb.Status) {
	if s == nil {
		return
	}
	st := proto.Clone(s).(*pb.Status)
	c.mu.Lock()
	c.status = st
	c.statusVersion++
	c.mu.Unlock()
	poke(c.wake)
}

// Flush cuts pending counters into a batch now instead of at the next tick.
func (c *Client) Flush() {
	c.mu.Lock()
	c.cutCounters()
	c.mu.Unlock()
	poke(c.wake)
}

// Stats are the client's counters.
type Stats struct {
	Connected          bool
	Connects           uint64
	Unacked            int // batches waiting for the gateway's ack
	PendingEvents      int
	EventsDropped      uint64
	CounterKeysDropped uint64
	BatchesSent        uint64
	Acked              uint64 // highest acknowledged seq
	NextSeq            uint64
}

// Stats returns a snapshot of the client's counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{
		Connected: c.connected.Load(), Connects: c.connects.Load(), Unacked: len(c.queue), PendingEvents: len(c.events),
		EventsDropped: c.eventsDropped.Load(), CounterKeysDropped: c.keysDropped.Load(), BatchesSent: c.batchesSent.Load(),
		Acked: c.acked, NextSeq: c.nextSeq,
	}
}

// Drained reports whether every delta and event handed to the client has
// been acknowledged by the gateway.
func (c *Client) Drained() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acc) == 0 && len(c.events) == 0 && len(c.queue) == 0
}

// cutCounters moves the accumulator into a sequenced batch if there is room.
// Called with mu held.
func (c *Client) cutCounters() {
	if len(c.acc) == 0 || len(c.queue) >= c.cfg.MaxBatches {
		return
	}
	// Batches of at most clientDeltasPerBatch deltas, to stay inside the
	// gateway's per-message limits.
	for len(c.acc) > 0 && len(c.queue) < c.cfg.MaxBatches {
		n := min(len(c.acc), clientDeltasPerBatch)
		b := &pb.CounterBatch{Seq: c.nextSeq, TimeUnixNano: time.Now().UnixNano(), Deltas: make([]*pb.CounterDelta, 0, n)}
		for k, d := range c.acc {
			if len(b.Deltas) == n {
				break
			}
			b.Deltas = append(b.Deltas, d)
			delete(c.acc, k)
		}
		c.queue = append(c.queue, pending{c.nextSeq, &pb.AgentMessage{Msg: &pb.AgentMessage_Counters{Counters: b}}})
		c.nextSeq++
	}
}

// cutEvents moves waiting events into sequenced batches while there is room.
// Called with mu held.
func (c *Client) cutEvents() {
	for (len(c.events) > 0 || c.dropSince > 0) && len(c.queue) < c.cfg.MaxBatches {
		n := min(len(c.events), maxEventsPerBatch)
		b := &pb.EventBatch{Seq: c.nextSeq, Events: c.events[:n:n], Dropped: c.dropSince}
		c.events = c.events[n:]
		c.dropSince = 0
		c.queue = append(c.queue, pending{c.nextSeq, &pb.AgentMessage{Msg: &pb.AgentMessage_Events{Events: b}}})
		c.nextSeq++
	}
	if len(c.events) == 0 {
		c.events = nil // release the backing array
	}
}

// ackTo drops batches the gateway has stored.
func (c *Client) ackTo(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq > c.acked {
		c.acked = seq
	}
	i := 0
	for i < len(c.queue) && c.queue[i].seq <= seq {
		c.queue[i] = pending{}
		i++
	}
	c.queue = c.queue[i:]
	if len(c.queue) == 0 {
		c.queue = nil
	}
}

// Run keeps the stream up until ctx ends, reconnecting with exponential
// backoff and jitter. It returns ctx's error.
func (c *Client) Run(ctx context.Context) error {
	go c.bundleWorker(ctx)
	attempt := 0
	for {
		start := time.Now()
		err := c.session(ctx)
		c.connected.Store(false)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) > 10*time.Second {
			attempt = 0
		}
		delay := backoff(attempt, c.cfg.MinBackoff, c.cfg.MaxBackoff)
		attempt++
		if replaced(err) {
			// Another connection with this agent's certificate took the
			// session: take it back at once (the backoff still grows if
			// two live agents keep replacing each other).
			c.log.Warn("control stream replaced by another connection with this agent's certificate; reconnecting",
				"retry_in", delay)
		} else {
			c.log.Warn("control stream down", "err", err, "retry_in", delay)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// replaced reports whether the gateway ended the stream because a newer
// connection of this agent took its place.
func replaced(err error) bool {
	return status.Code(err) == codes.Aborted && strings.Contains(err.Error(), "replaced")
}

// backoff returns a delay in [d/2, d) where d doubles from min up to max.
func backoff(attempt int, min, max time.Duration) time.Duration {
	d := min
	for i := 0; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

func dial(cfg ClientConfig) (*grpc.ClientConn, error) {
	return grpc.NewClient(cfg.Addr,
		grpc.WithTransportCredentials(credentials.NewTLS(cfg.TLS)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
}

// hello is the first message of a session: who the agent is, its kernel,
// its sequence space and the policy version it reports.
func hello(h Hello, epoch, pv uint64) *pb.Hello {
	return &pb.Hello{AgentId: h.AgentID, AgentVersion: h.AgentVersion, Hostname: h.Hostname, Capabilities: h.Capabilities,
		Kernel: &pb.KernelProbe{Release: h.KernelRelease, Checks: h.KernelChecks, Reasons: h.KernelReasons},
		Epoch:  epoch, PolicyVersion: pv}
}

// session runs one connection: hello, welcome, then the writer loop here and
// the reader in a goroutine, until either fails.
func (c *Client) session(ctx context.Context) error {
	conn, err := dial(c.cfg)
	if err != nil {
		return fmt.Errorf("dial %s: %w", c.cfg.Addr, err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pb.NewControlClient(conn).Stream(sctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	c.mu.Lock()
	var pv uint64
	if c.status != nil {
		pv = c.status.PolicyVersion
	}
	c.mu.Unlock()
	if err := stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: hello(c.cfg.Hello, c.epoch, pv)}}); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	welcomeTimer := time.AfterFunc(15*time.Second, cancel)
	first, err := stream.Recv()
	welcomeTimer.Stop()
	if err != nil {
		return fmt.Errorf("await welcome: %w", err)
	}
	w := first.GetWelcome()
	if w == nil {
		return errors.New("await welcome: gateway sent something else")
	}
	c.ackTo(w.LastSeq)
	c.lastHeard.Store(time.Now().UnixNano())
	c.connected.Store(true)
	c.connects.Add(1)
	c.log.Info("control stream up", "gateway", c.cfg.Addr, "resume_after", w.LastSeq)

	readErr := make(chan error, 1)
	go func() { readErr <- c.reader(sctx, stream) }()
	err = c.writer(sctx, stream, w.LastSeq, readErr)
	cancel()
	return err
}

func (c *Client) reader(ctx context.Context, stream pb.Control_StreamClient) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("gateway closed the stream")
			}
			return fmt.Errorf("receive: %w", err)
		}
		c.lastHeard.Store(time.Now().UnixNano())
		switch x := m.Msg.(type) {
		case *pb.GatewayMessage_SeqAck:
			c.ackTo(x.SeqAck.Seq)
		case *pb.GatewayMessage_Ping:
			c.mu.Lock()
			if len(c.pongs) < 16 {
				c.pongs = append(c.pongs, x.Ping.TimeUnixNano)
			}
			c.mu.Unlock()
			poke(c.wake)
		case *pb.GatewayMessage_Bundle:
			select {
			case c.bundles <- x.Bundle:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// bundleWorker applies bundles one at a time, outside the reader, and queues
// the acks (kept across reconnects until sent).
func (c *Client) bundleWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-c.bundles:
			ack := &pb.BundleAck{Version: b.Version}
			if c.cfg.OnBundle == nil {
				ack.Reason, ack.Error = "unsupported", "agent accepts no bundles"
			} else if v, err := c.cfg.OnBundle(ctx, b.Data); err != nil {
				ack.Reason, ack.Error = bundle.Reason(err), err.Error()
			} else {
				ack.Applied, ack.Version = true, v
			}
			c.mu.Lock()
			if len(c.acks) < 64 {
				c.acks = append(c.acks, ack)
			}
			c.mu.Unlock()
			poke(c.wake)
		}
	}
}

func (c *Client) writer(ctx context.Context, stream pb.Control_StreamClient, sentUpTo uint64, readErr <-chan error) error {
	flush := time.NewTicker(c.cfg.FlushInterval)
	defer flush.Stop()
	statusTick := time.NewTicker(c.cfg.StatusInterval)
	defer statusTick.Stop()
	silence := time.NewTicker(max(c.cfg.SilenceTimeout/4, 10*time.Millisecond))
	defer silence.Stop()
	var sentStatus uint64
	forceStatus := true
	for {
		c.mu.Lock()
		c.cutEvents()
		var out []*pb.AgentMessage
		for _, p := range c.queue {
			if p.seq > sentUpTo {
				out = append(out, p.msg)
				sentUpTo = p.seq
			}
		}
		if c.status != nil && (forceStatus || c.statusVersion != sentStatus) {
			st := proto.Clone(c.status).(*pb.Status)
			st.TimeUnixNano = time.Now().UnixNano()
			st.EventsDropped = c.eventsDropped.Load()
			st.CounterKeysDropped = c.keysDropped.Load()
			out = append(out, &pb.AgentMessage{Msg: &pb.AgentMessage_Status{Status: st}})
			sentStatus, forceStatus = c.statusVersion, false
		}
		for _, a := range c.acks {
			out = append(out, &pb.AgentMessage{Msg: &pb.AgentMessage_BundleAck{BundleAck: a}})
		}
		c.acks = nil
		for _, p := range c.pongs {
			out = append(out, &pb.AgentMessage{Msg: &pb.AgentMessage_Pong{Pong: &pb.Pong{PingTimeUnixNano: p}}})
		}
		c.pongs = nil
		c.mu.Unlock()
		for _, m := range out {
			if err := stream.Send(m); err != nil {
				return fmt.Errorf("send: %w", err)
			}
			if m.GetCounters() != nil || m.GetEvents() != nil {
				c.batchesSent.Add(1)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-readErr:
			return err
		case <-c.wake:
		case <-flush.C:
			c.mu.Lock()
			c.cutCounters()
			c.mu.Unlock()
		case <-statusTick.C:
			forceStatus = true
		case <-silence.C:
			if quiet := time.Since(time.Unix(0, c.lastHeard.Load())); quiet > c.cfg.SilenceTimeout {
				return fmt.Errorf("gateway silent for %s (no ping): stream presumed dropped", quiet.Round(time.Millisecond))
			}
		}
	}
}
