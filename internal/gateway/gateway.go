// Package gateway is fortress-gateway: it serves the ControlStream to
// agents, stores what they send through a store.Storage, pushes signed
// bundles, and offers a JSON API, Prometheus metrics and the live dashboard.
package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/controlstream"
	"github.com/carverauto/fortress/internal/store"
)

// Version is the gateway's version string.
var Version = "dev"

// Config configures a Gateway.
type Config struct {
	// GRPCListener and HTTPListener are where the ControlStream and the
	// dashboard/API listen.
	GRPCListener net.Listener
	HTTPListener net.Listener
	// TLS is the ControlStream's server config (mutual TLS).
	TLS *tls.Config
	// Store holds agents, counters and events.
	Store store.Storage
	// TrustKeys, when set, make the gateway verify pushed bundles before
	// sending them on; agents verify them in any case.
	TrustKeys []ed25519.PublicKey
	// Retention bounds what the store keeps; PruneInterval is how often it
	// is enforced (1 min).
	Retention     store.Retention
	PruneInterval time.Duration
	// CommitInterval is the longest a batch waits for its transaction (50 ms).
	CommitInterval time.Duration
	// PingInterval is how often agents are pinged (15 s).
	PingInterval time.Duration
	// SnapshotInterval is how often dashboards get a new snapshot (1 s).
	SnapshotInterval time.Duration
	Logger           *slog.Logger
}

// Gateway is a running gateway.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	store   store.Storage
	control *controlstream.Server
	// grpc serves admin connections (bundle-sized messages), agentGRPC
	// agent connections (at most MaxAgentMessage); split picks by the
	// client certificate's role.
	grpc      *grpc.Server
	agentGRPC *grpc.Server
	split     *roleSplitter
	http      *http.Server
	rates     *rates
	history   *history
	metrics   *metrics

	writes chan writeReq
	done   chan struct{}

	waiters ackWaiters
	changed changeFeed
	agents  agentBook
}

// Each agent may have events stored at eventRate per second on average,
// in bursts of up to eventBurst; events beyond that are not stored and
// count as events the agent lost. So one agent adds at most eventBurst +
// 60 * eventRate events between two prunes (one a minute), whatever it
// sends, and its share is then cut to Retention.MaxEventsPerAgent.
const (
	eventRate  = 50
	eventBurst = 1000
)

// New builds a gateway from cfg; Run serves it.
func New(cfg Config) (*Gateway, error) {
	if cfg.Store == nil || cfg.TLS == nil || cfg.GRPCListener == nil || cfg.HTTPListener == nil {
		return nil, errors.New("gateway: need Store, TLS and both listeners")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.PruneInterval, time.Minute)
	def(&cfg.CommitInterval, 50*time.Millisecond)
	def(&cfg.SnapshotInterval, time.Second)
	if cfg.Retention == (store.Retention{}) {
		cfg.Retention = store.DefaultRetention
	}
	g := &Gateway{
		cfg:     cfg,
		log:     cfg.Logger,
		store:   cfg.Store,
		rates:   newRates(),
		history: newHistory(),
		writes:  make(chan writeReq, 8192),
		done:    make(chan struct{}),
		waiters: ackWaiters{waiters: map[string][]*ackWaiter{}},
		changed: changeFeed{ch: make(chan struct{})},
		agents:  newAgentBook(),
	}
	g.metrics = newMetrics(g)
	g.control = controlstream.NewServer(controlstream.ServerConfig{Backend: (*backend)(g), PingInterval: cfg.PingInterval, Logger: cfg.Logger})
	g.split = newRoleSplitter(cfg.GRPCListener, cfg.TLS, cfg.Logger)
	g.grpc = controlstream.NewGRPCServer(handshaken{}, controlstream.MaxMessage)
	g.agentGRPC = controlstream.NewGRPCServer(handshaken{}, controlstream.MaxAgentMessage)
	// Both services on both servers: each checks the role itself, so a
	// certificate used for the wrong service gets PermissionDenied.
	for _, srv := range []*grpc.Server{g.grpc, g.agentGRPC} {
		g.control.Register(srv)
		pb.RegisterAdminServer(srv, &admin{g: g})
	}
	g.http = &http.Server{Handler: (&api{g: g}).routes(), ReadHeaderTimeout: 10 * time.Second}
	return g, nil
}

// Registry is the gateway's Prometheus registry.
func (g *Gateway) Registry() *prometheus.Registry { return g.metrics.reg }

// Run serves until ctx ends, then stops the servers and flushes the writer.
func (g *Gateway) Run(ctx context.Context) error {
	writerDone := make(chan struct{})
	go func() { g.writer(); close(writerDone) }()
	errc := make(chan error, 3)
	go g.split.run()
	go func() { errc <- g.grpc.Serve(g.split.admin) }()
	go func() { errc <- g.agentGRPC.Serve(g.split.agent) }()
	go func() { errc <- g.http.Serve(g.cfg.HTTPListener) }()
	prune := time.NewTicker(g.cfg.PruneInterval)
	defer prune.Stop()
	g.log.Info("gateway serving", "grpc", g.cfg.GRPCListener.Addr().String(), "http", g.cfg.HTTPListener.Addr().String())
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-errc:
			break loop
		case <-prune.C:
			if perr := g.store.Prune(ctx, g.cfg.Retention, time.Now()); perr != nil {
				g.log.Warn("prune", "err", perr)
			}
		}
	}
	// Stop (not GracefulStop): agent streams never end on their own, and
	// agents resend whatever was not acknowledged.
	g.grpc.Stop()
	g.agentGRPC.Stop()
	g.cfg.GRPCListener.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	g.http.Shutdown(sctx)
	cancel()
	close(g.done)
	<-writerDone
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) || (ctx.Err() != nil && errors.Is(err, net.ErrClosed)) {
		err = nil
	}
	return err
}

// backend is the Gateway as controlstream.Backend.
type backend Gateway

func (b *backend) g() *Gateway { return (*Gateway)(b) }

func (b *backend) Open(ctx context.Context, s *controlstream.Session) (uint64, error) {
	g := b.g()
	h := s.Hello
	kernel := map[string]string{}
	if h.Kernel != nil {
		kernel["release"] = clip(h.Kernel.Release, maxShortLen)
		for k, ok := range h.Kernel.Checks {
			if len(kernel) > maxListLen {
				break
			}
			if ok {
				kernel[clip(k, maxShortLen)] = "ok"
			} else {
				kernel[clip(k, maxShortLen)] = "unavailable: " + clip(h.Kernel.Reasons[k], maxReasonLen)
			}
		}
	}
	now := time.Now()
	if err := g.store.UpsertAgent(ctx, store.Agent{ID: s.AgentID, Hostname: clip(h.Hostname, maxHostLen), Version: clip(h.AgentVersion, maxShortLen),
		Capabilities: clipList(h.Capabilities, maxShortLen), Kernel: kernel, Epoch: h.Epoch, LastSeen: now}); err != nil {
		return 0, err
	}
	g.agents.connect(s.AgentID, now)
	g.metrics.connects.Inc()
	return g.store.Position(ctx, s.AgentID, s.Epoch)
}

func (b *backend) Submit(s *controlstream.Session, cb controlstream.Batch, done func(error)) {
	g := b.g()
	sb := store.Batch{AgentID: s.AgentID, Epoch: s.Epoch, Seq: cb.Seq, Time: time.Now()}
	if c := cb.Counters; c != nil {
		if c.TimeUnixNano > 0 {
			sb.Time = time.Unix(0, c.TimeUnixNano)
		}
		sb.Counters = make([]store.CounterDelta, 0, len(c.Deltas))
		for _, d := range c.Deltas {
			cd, why := counterDelta(d)
			if why != "" {
				g.refuse(s.AgentID, why, 1)
				continue
			}
			sb.Counters = append(sb.Counters, cd)
		}
	}
	if e := cb.Events; e != nil {
		evs := e.Events
		keep := g.agents.takeEvents(s.AgentID, len(evs), time.Now())
		if keep < len(evs) {
			g.metrics.eventsRefused.Add(float64(len(evs) - keep))
			evs = evs[:keep]
		}
		sb.Dropped = e.Dropped + uint64(len(e.Events)-keep)
		sb.Events = make([]store.Event, len(evs))
		for i, ev := range evs {
			sb.Events[i] = store.Event{Time: time.Unix(0, ev.TimeUnixNano), Kind: kindName(ev.Kind), Severity: clip(ev.Severity, maxShortLen),
				Path: clip(ev.Path, maxPathLen), Op: clip(ev.Op, maxShortLen), Process: clip(ev.Process, maxShortLen), PID: ev.Pid, UID: ev.Uid,
				Detail: clip(ev.Detail, maxDetailLen), Denied: ev.Denied}
		}
	}
	select {
	case g.writes <- writeReq{batch: sb, done: done}:
	case <-g.done:
		done(errors.New("gateway stopping"))
	}
}

func kindName(k pb.EventKind) string {
	switch k {
	case pb.EventKind_EVENT_KIND_FIM:
		return "fim"
	case pb.EventKind_EVENT_KIND_VIOLATION:
		return "violation"
	case pb.EventKind_EVENT_KIND_CRITICAL:
		return "critical"
	case pb.EventKind_EVENT_KIND_STATUS:
		return "status"
	}
	return "unknown"
}

func layerState(s pb.LayerState) string {
	switch s {
	case pb.LayerState_LAYER_STATE_ENFORCING:
		return "enforcing"
	case pb.LayerState_LAYER_STATE_OBSERVING:
		return "observing"
	case pb.LayerState_LAYER_STATE_DEGRADED:
		return "degraded"
	case pb.LayerState_LAYER_STATE_UNAVAILABLE:
		return "unavailable"
	}
	return "unknown"
}

func (b *backend) Status(s *controlstream.Session, st *pb.Status) {
	g := b.g()
	layer := func(l *pb.Layer) store.Layer {
		if l == nil {
			return store.Layer{State: "unknown"}
		}
		return store.Layer{State: layerState(l.State), Mode: clip(l.Mode, maxShortLen), Reason: clip(l.Reason, maxReasonLen)}
	}
	ss := store.Status{Shield: layer(st.Shield), Sentinel: layer(st.Sentinel), PolicyVersion: st.PolicyVersion,
		Degraded: clipList(st.DegradedReasons, maxReasonLen), EventsDropped: st.EventsDropped, CounterKeysDropped: st.CounterKeysDropped,
		Reported: time.Unix(0, st.TimeUnixNano)}
	if last := g.agents.lastAck(s.AgentID); last != nil {
		ss.LastAck = last
	}
	if err := g.store.SetStatus(context.Background(), s.AgentID, ss, time.Now()); err != nil {
		g.log.Warn("store status", "agent", s.AgentID, "err", err)
	}
	g.agents.touch(s.AgentID)
}

func (b *backend) BundleAck(s *controlstream.Session, a *pb.BundleAck) {
	a.Reason, a.Error = clip(a.Reason, maxShortLen), clip(a.Error, maxReasonLen)
	b.g().deliverAck(s.AgentID, a)
}

// refuse counts n counter deltas of agent that were not stored, and why.
func (g *Gateway) refuse(agent, why string, n int) {
	g.metrics.refused.WithLabelValues(why).Add(float64(n))
	if first := g.agents.refuse(agent, n); first {
		g.log.Warn("agent counters refused", "agent", agent, "reason", why, "n", n)
	}
}

// Refused is how many counter deltas of agent the gateway refused (junk
// rule names, bad kinds, beyond the rule quota) since it started.
func (g *Gateway) Refused(agent string) uint64 { return g.agents.refusedCount(agent) }

func (b *backend) Close(s *controlstream.Session, err error) {
	g := b.g()
	// Only mark the agent disconnected if no newer session replaced this one.
	if cur, ok := g.control.Session(s.AgentID); ok && cur != s {
		return
	}
	g.agents.disconnect(s.AgentID)
	if serr := g.store.SetConnected(context.Background(), s.AgentID, false, time.Now()); serr != nil {
		g.log.Warn("store disconnect", "agent", s.AgentID, "err", serr)
	}
	g.log.Debug("agent disconnected", "agent", s.AgentID, "err", err)
}

// Connected returns the number of connected agents.
func (g *Gateway) Connected() int { return len(g.control.Sessions()) }

// writeReq is one batch waiting for the writer.
type writeReq struct {
	batch store.Batch
	done  func(error)
}

// writer groups batches into transactions (group commit): one transaction
// per CommitInterval or per 4096 batches, then acknowledges each.
func (g *Gateway) writer() {
	var reqs []writeReq
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		if len(reqs) == 0 {
			return
		}
		batches := make([]store.Batch, len(reqs))
		for i, r := range reqs {
			batches[i] = r.batch
		}
		start := time.Now()
		applied, err := g.store.Apply(context.Background(), batches)
		g.metrics.commit.Observe(time.Since(start).Seconds())
		if err != nil {
			g.log.Error("store batches", "n", len(batches), "err", err)
		} else {
			g.account(batches, applied)
			g.changed.notify()
		}
		for _, r := range reqs {
			r.done(err)
		}
		reqs = reqs[:0]
	}
	for {
		select {
		case r := <-g.writes:
			if len(reqs) == 0 {
				timer.Reset(g.cfg.CommitInterval)
			}
			reqs = append(reqs, r)
			if len(reqs) >= 4096 {
				flush()
			}
		case <-timer.C:
			flush()
		case <-g.done:
			for {
				select {
				case r := <-g.writes:
					reqs = append(reqs, r)
					continue
				default:
				}
				break
			}
			flush()
			return
		}
	}
}

// account updates rates and metrics for applied batches.
func (g *Gateway) account(batches []store.Batch, applied []bool) {
	now := time.Now()
	for i, b := range batches {
		if !applied[i] {
			g.metrics.batches.WithLabelValues("duplicate").Inc()
			continue
		}
		g.metrics.batches.WithLabelValues("applied").Inc()
		g.metrics.counterUpdates.Add(float64(len(b.Counters)))
		g.metrics.events.Add(float64(len(b.Events)))
		g.metrics.eventsLost.Add(float64(b.Dropped))
		if b.Refused > 0 {
			g.refuse(b.AgentID, refusedQuota, b.Refused)
		}
		for _, c := range b.Counters {
			g.rates.add(b.AgentID, c.RuleKey, c.Packets, c.Bytes, now)
			g.history.add(b.AgentID, c.RuleKey, c.Packets, now)
		}
	}
}

// lastSeen is when a connected agent was last heard (its session's last
// message, or the gateway's own record).
func (g *Gateway) lastSeen(id string) (time.Time, bool) {
	t, ok := g.agents.seen(id)
	if !ok {
		return t, false
	}
	if s, ok := g.control.Session(id); ok && s.LastSeen().After(t) {
		return s.LastSeen(), true
	}
	return t, true
}

// errf is fmt.Errorf, kept short for handlers.
var errf = fmt.Errorf
