package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/pkg/controlstream"
	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/serviceradar"
)

type agent struct {
	cfg     *config
	log     *slog.Logger
	f       *fortress.Fortress
	metrics *metrics
	// metricsAddr is where /metrics listens, once it does.
	metricsAddr string

	mu     sync.Mutex
	stream *controlstream.Client
}

func (a *agent) setStream(c *controlstream.Client) {
	a.mu.Lock()
	a.stream = c
	a.mu.Unlock()
}

func (a *agent) streamClient() *controlstream.Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stream
}

// counterForwarder hands counter deltas to the stream client once it
// exists.
type counterForwarder struct {
	c atomic.Pointer[controlstream.Client]
}

func (w *counterForwarder) set(c *controlstream.Client) { w.c.Store(c) }

func (w *counterForwarder) add(ds []fortress.CounterDelta) {
	c := w.c.Load()
	if c == nil {
		return
	}
	c.AddCounters(wireCounters(ds)...)
}

// StatusReply is what the status socket serves at /v1/status.
type StatusReply struct {
	fortress.Status
	ControlStream *StreamStatus `json:"control_stream,omitempty"`
}

// StreamStatus is the ControlStream's state.
type StreamStatus struct {
	Gateway       string `json:"gateway"`
	Connected     bool   `json:"connected"`
	Connects      uint64 `json:"connects"`
	Unacked       int    `json:"unacked_batches"`
	EventsDropped uint64 `json:"events_dropped"`
}

func (a *agent) statusReply() StatusReply {
	r := StatusReply{Status: a.f.Status()}
	if c := a.streamClient(); c != nil {
		s := c.Stats()
		r.ControlStream = &StreamStatus{Gateway: a.cfg.Gateway.Address, Connected: s.Connected, Connects: s.Connects,
			Unacked: s.Unacked, EventsDropped: s.EventsDropped}
	}
	return r
}

// statusHandler serves the local status API.
func (a *agent) statusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, a.statusReply())
	})
	mux.HandleFunc("GET /v1/counters", func(w http.ResponseWriter, r *http.Request) {
		top, sums := a.f.TopCounters()
		if n, err := strconv.Atoi(r.URL.Query().Get("top")); err == nil && n >= 0 && n < len(top) {
			top = top[:n]
		}
		writeJSON(w, map[string]any{"top": top, "sums": sums})
	})
	mux.HandleFunc("POST /v1/maintenance", a.maintenance)
	mux.HandleFunc("POST /v1/maintenance/end", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.f.EndMaintenance(); err != nil {
			writeError(w, http.StatusConflict, err)
			return
		}
		writeJSON(w, map[string]string{"sentinel": "enforcing"})
	})
	return mux
}

// MaintenanceRequest is the body of POST /v1/maintenance.
type MaintenanceRequest struct {
	Token string `json:"token"`
}

// maintenance hands a signed maintenance token to Fortress. The token is
// the authority: the socket only carries it.
func (a *agent) maintenance(w http.ResponseWriter, r *http.Request) {
	var req MaintenanceRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Token == "" {
		writeError(w, http.StatusBadRequest, fmt.Errorf("body must be {\"token\": \"...\"}: %v", err))
		return
	}
	res, err := a.f.Maintenance(req.Token)
	switch {
	case errors.Is(err, fortress.ErrTokenRefused):
		writeError(w, http.StatusForbidden, err)
	case errors.Is(err, fortress.ErrRemoved), errors.Is(err, fortress.ErrNoSentinel):
		writeError(w, http.StatusConflict, err)
	case err != nil:
		a.log.Error("maintenance", "action", res.Action, "err", err)
		writeError(w, http.StatusInternalServerError, err)
	default:
		writeJSON(w, res)
	}
}

func writeError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// serveStatus listens on the status socket (root only).
func (a *agent) serveStatus(ctx context.Context) (*http.Server, error) {
	path := a.cfg.StatusSocket
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	// A socket left by a killed agent; anything else at the path is not ours.
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("status socket: %s exists and is not a socket", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("status socket: %w", err)
	}
	srv := &http.Server{Handler: a.statusHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("status socket", "err", err)
		}
	}()
	a.log.Info("status socket listening", "path", path)
	return srv, nil
}

// newStreamClient builds the ControlStream client: mutual TLS, the hello
// with the kernel probe, bundles into ApplyBundle.
func (a *agent) newStreamClient(k fortress.KernelReport) (*controlstream.Client, error) {
	g := a.cfg.Gateway
	tlsCfg, err := a.clientTLS("gateway", g.Address, g.CA, g.Cert, g.Key, g.ServerName)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	caps := []string{"shield"}
	st := a.f.Status()
	if st.Sentinel.State != fortress.SentinelUnavailable {
		caps = append(caps, "sentinel")
	}
	return controlstream.NewClient(controlstream.ClientConfig{
		Addr: g.Address,
		TLS:  tlsCfg,
		Hello: controlstream.Hello{AgentID: a.cfg.AgentID, AgentVersion: version, Hostname: host, Capabilities: caps,
			KernelRelease: k.Release, KernelChecks: k.Checks, KernelReasons: k.Reasons},
		OnBundle: func(_ context.Context, data []byte) (uint64, error) {
			ack, err := a.f.ApplyBundle(data)
			a.metrics.bundle(err)
			return ack.Version, err
		},
		// Counters are read every 500 ms and cut into a batch every
		// 500 ms, so a drop reaches the dashboard well within 2 s.
		FlushInterval: 500 * time.Millisecond,
		Logger:        a.log,
	})
}

// clientTLS builds a mutual-TLS client configuration from protected
// files; what names the configuration section in errors.
func (a *agent) clientTLS(what, address, ca, certFile, keyFile, serverName string) (*tls.Config, error) {
	certPEM, err := a.cfg.readInput(certFile)
	if err != nil {
		return nil, fmt.Errorf("%s.cert: %w", what, err)
	}
	keyPEM, err := a.cfg.readInput(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s.key: %w", what, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s.cert/key: %w", what, err)
	}
	caPEM, err := a.cfg.readInput(ca)
	if err != nil {
		return nil, fmt.Errorf("%s.ca: %w", what, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s.ca: %s holds no PEM certificate", what, ca)
	}
	if serverName == "" {
		serverName, _, _ = net.SplitHostPort(address)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: serverName,
		MinVersion: tls.VersionTLS13}, nil
}

// runServiceRadar serves ServiceRadar's agent-gateway ControlStream until
// ctx ends: hello with Fortress's capabilities, every command acked,
// expired ones refused, fortress.* commands answered.
func (a *agent) runServiceRadar(ctx context.Context) error {
	sr := a.cfg.ServiceRadar
	tlsCfg, err := a.clientTLS("serviceradar", sr.Address, sr.CA, sr.Cert, sr.Key, sr.ServerName)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	svc := serviceradar.Attach(a.f, a.cfg.AgentID, a.log)
	defer svc.Close()
	return ignoreCanceled(svc.RunControlStream(ctx, serviceradar.StreamConfig{
		Addr: sr.Address, TLS: tlsCfg, Logger: a.log,
		Hello: serviceradar.Hello{AgentID: a.cfg.AgentID, Partition: sr.Partition, Version: version, Hostname: host,
			Labels: sr.Labels, ConfigSource: "fortress-agent"},
	}))
}

// pushStatus sends the status whenever it changes (checked every 2s); the
// client repeats it periodically on its own.
func (a *agent) pushStatus(ctx context.Context, c *controlstream.Client) {
	var last *controlpb.Status
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if s := wireStatus(a.f.Status()); !proto.Equal(s, last) {
			c.SetStatus(s)
			last = s
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pumpEvents logs, counts and forwards Fortress's events.
func (a *agent) pumpEvents(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-a.f.Events():
			a.metrics.event(e)
			switch e.Kind {
			case fortress.KindCritical:
				a.log.Error("event", "kind", e.Kind, "layer", e.Layer, "op", e.Op, "detail", e.Detail, "count", e.Count)
			case fortress.KindViolation:
				a.log.Warn("event", "kind", e.Kind, "op", e.Op, "path", e.Path, "verdict", e.Verdict, "pid", e.PID,
					"uid", e.UID, "comm", e.Comm, "exe", e.Exe, "detail", e.Detail)
			default:
				a.log.Debug("event", "kind", e.Kind, "op", e.Op, "path", e.Path, "rule", e.Rule, "packets", e.Packets)
			}
			c := a.streamClient()
			if c == nil || e.Kind == fortress.KindDryRun {
				continue // dry-run matches reach the gateway as counters
			}
			c.AddEvent(wireEvent(e, a.f.Status))
		}
	}
}
