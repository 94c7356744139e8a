package demo

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/gateway"
	"github.com/carverauto/fortress/internal/netlab"
	"github.com/carverauto/fortress/internal/pki"
	"github.com/carverauto/fortress/internal/store"
	"github.com/carverauto/fortress/pkg/fortress"
)

// AgentID is the demo agent's id.
const AgentID = "demo-agent"

// Config configures a demo.
type Config struct {
	// Listen is the dashboard's address; it must be a loopback address
	// (127.0.0.1:8080; port 0 picks one).
	Listen string
	// AgentBinary is a fortress-agent built to read its configuration from
	// inside the work directory; empty builds one with the go tool.
	AgentBinary string
	// Rate is datagrams per second from each non-quiet source (20; below 0: none).
	Rate int
	// Name tags the namespaces (fortress-NAME-a/-b) and interfaces
	// ("demo"; 1 to 13 lower-case letters and digits). One demo runs per
	// name at a time; a run cleans up what an earlier run under the same
	// name left behind.
	Name string
	// Out receives progress lines (os.Stdout).
	Out io.Writer
	// Logger receives the gateway's log (warnings to stderr).
	Logger *slog.Logger
}

// Demo is a running demo. Close stops it and removes everything it made.
type Demo struct {
	cfg Config
	// Work is the temporary work directory.
	Work string
	// Dashboard is the dashboard's URL.
	Dashboard string
	// Pair is the namespaces' veth pair; Shield runs on Pair.B.Iface.
	Pair *netlab.Pair
	// Gateway is the in-process gateway.
	Gateway *gateway.Gateway

	configDir, agentConfig, agentBin, agentLog string
	status                                     *statusClient
	ca                                         *pki.CA
	priv                                       ed25519.PrivateKey
	grpcAddr                                   string
	rx                                         *netlab.Receiver
	traffic                                    *traffic
	logw                                       *lockedWriter

	mu      sync.Mutex
	agent   *agentProc
	cleanup []func() error
	lock    *runLock
}

func (d *Demo) onClose(f func() error) { d.cleanup = append(d.cleanup, f) }

// Start brings the demo up: work directory, private bpffs, PKI, signing
// key, gateway, namespaces, agent, signed sample policy, traffic. On error
// everything made so far is removed.
func Start(ctx context.Context, cfg Config) (_ *Demo, err error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8080"
	}
	if cfg.Rate == 0 {
		cfg.Rate = 20
	}
	if cfg.Name == "" {
		cfg.Name = "demo"
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if err := checkLoopback(cfg.Listen); err != nil {
		return nil, err
	}
	if err := checkName(cfg.Name); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the demo needs root (network namespaces, XDP, bpffs)")
	}
	d := &Demo{cfg: cfg}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.Close())
		}
	}()
	lock, prev, err := lockName(cfg.Name)
	if err != nil {
		return nil, err
	}
	d.lock = lock
	if err := cleanLeftovers(cfg.Name, prev, func(format string, args ...any) { say(cfg.Out, format, args...) }); err != nil {
		return nil, fmt.Errorf("leftovers of an earlier run: %w", err)
	}
	if d.Work, err = os.MkdirTemp("", "fortress-demo-"); err != nil {
		return nil, err
	}
	if err := d.lock.record(d.Work); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	d.onClose(func() error { return os.RemoveAll(d.Work) })
	say(d.cfg.Out, "work directory %s", d.Work)

	pinRoot := filepath.Join(d.Work, "bpf")
	if err := mountBPFFS(pinRoot); err != nil {
		return nil, err
	}
	d.onClose(func() error { return unmount(pinRoot) })

	// PKI, signing key, trust key.
	pkiDir := filepath.Join(d.Work, "pki")
	if d.ca, err = pki.Init(pkiDir, "127.0.0.1"); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	agentCert, err := d.ca.Client(AgentID, pki.RoleAgent)
	if err != nil {
		return nil, err
	}
	if err := pki.WriteCert(pkiDir, "agent.pem", "agent-key.pem", agentCert); err != nil {
		return nil, err
	}
	pub, priv, err := bundle.GenerateKey()
	if err != nil {
		return nil, err
	}
	d.priv = priv
	d.configDir = filepath.Join(d.Work, "etc")
	if err := os.MkdirAll(d.configDir, 0o755); err != nil {
		return nil, err
	}
	pubPEM, err := bundle.MarshalPublicKey(pub)
	if err != nil {
		return nil, err
	}
	trust := filepath.Join(d.configDir, "trust.pem")
	if err := os.WriteFile(trust, pubPEM, 0o600); err != nil {
		return nil, err
	}

	if err := d.startGateway(ctx, pkiDir, pub); err != nil {
		return nil, err
	}

	// Namespaces and the veth pair.
	addrsA, addrsB := netlabAddrs()
	if d.Pair, err = netlab.New(netlab.Config{Name: cfg.Name, AddrsA: addrsA, AddrsB: addrsB}); err != nil {
		return nil, err
	}
	d.onClose(d.Pair.Close)
	if d.rx, err = d.Pair.B.ListenUDP(Port); err != nil {
		return nil, err
	}
	d.onClose(d.rx.Close)
	say(d.cfg.Out, "namespaces %s and %s joined by veth %s/%s", d.Pair.A.NSName, d.Pair.B.NSName, d.Pair.A.Iface, d.Pair.B.Iface)

	// The agent.
	d.agentBin = cfg.AgentBinary
	if d.agentBin == "" {
		say(d.cfg.Out, "building fortress-agent")
		if d.agentBin, err = BuildAgent(ctx, filepath.Join(d.Work, "bin"), d.configDir); err != nil {
			return nil, err
		}
	}
	run := filepath.Join(d.Work, "run")
	if err := os.MkdirAll(run, 0o700); err != nil {
		return nil, err
	}
	ac := agentConfig{
		AgentID:    AgentID,
		Interfaces: []map[string]any{{"name": d.Pair.B.Iface, "mode": "native", "netns": "/run/netns/" + d.Pair.B.NSName}},
		PinRoot:    pinRoot, StateDir: filepath.Join(d.Work, "state"), AuditLog: filepath.Join(d.Work, "log", "audit.log"),
		TrustKey: trust,
		Gateway: map[string]string{"address": d.grpcAddr, "ca": filepath.Join(pkiDir, pki.Files.CA),
			"cert": filepath.Join(pkiDir, "agent.pem"), "key": filepath.Join(pkiDir, "agent-key.pem")},
		Metrics:      map[string]any{"listen": "off"},
		StatusSocket: filepath.Join(run, "fortress.sock"),
		Sentinel:     map[string]any{"enabled": true},
		Log:          map[string]string{"level": "info", "format": "text"},
	}
	if d.agentConfig, err = writeJSON(filepath.Join(d.configDir, "fortress-agent.json"), ac); err != nil {
		return nil, err
	}
	d.agentLog = filepath.Join(d.Work, "agent.log")
	lf, err := os.OpenFile(d.agentLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	d.onClose(lf.Close)
	d.logw = &lockedWriter{w: lf}
	d.status = newStatusClient(ac.StatusSocket)
	// Registered before the agent starts: it runs before the namespaces and
	// the bpffs go away.
	d.onClose(func() error { return d.StopAgent(syscall.SIGTERM) })
	st, err := d.StartAgent(ctx)
	if err != nil {
		return nil, err
	}
	say(d.cfg.Out, "agent pid %d: shield %s, sentinel %s", d.AgentPID(), st.Shield.State, st.Sentinel.State)
	if st.Sentinel.State == fortress.SentinelUnavailable {
		say(d.cfg.Out, "sentinel unavailable: %s", st.Sentinel.Reason)
	}

	// The signed sample policy, pushed through the gateway.
	if err := waitConnected(ctx, d.Gateway, d.agentLog, 20*time.Second); err != nil {
		return nil, err
	}
	raw, err := signBundle(priv, AgentID, 1)
	if err != nil {
		return nil, err
	}
	if err := d.push(ctx, raw, AgentID); err != nil {
		return nil, withAgentLog(d.agentLog, err)
	}
	rules, _ := Rules()
	say(d.cfg.Out, "signed bundle v1 (%d rules) pushed and applied", len(rules))

	if d.traffic, err = startTraffic(d.Pair.A, cfg.Rate); err != nil {
		return nil, err
	}
	d.onClose(func() error { d.traffic.stop(); return nil })
	return d, nil
}

// say prints one line of the demo's narration.
func say(out io.Writer, format string, args ...any) {
	fmt.Fprintf(out, "fortress-demo: "+format+"\n", args...)
}

func (d *Demo) startGateway(ctx context.Context, pkiDir string, pub ed25519.PublicKey) error {
	srv, err := d.ca.Server("127.0.0.1")
	if err != nil {
		return err
	}
	st, err := store.Open(filepath.Join(d.Work, "gateway.db"))
	if err != nil {
		return err
	}
	d.onClose(st.Close)
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", d.cfg.Listen)
	if err != nil {
		gl.Close()
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("dashboard: %w (another demo or gateway? pass --listen 127.0.0.1:0 for a free port)", err)
		}
		return fmt.Errorf("dashboard: %w", err)
	}
	g, err := gateway.New(gateway.Config{GRPCListener: gl, HTTPListener: hl, TLS: pki.ServerTLS(srv, d.ca.Pool()), Store: st,
		TrustKeys: []ed25519.PublicKey{pub}, Logger: d.cfg.Logger})
	if err != nil {
		gl.Close()
		hl.Close()
		return err
	}
	d.Gateway, d.grpcAddr = g, gl.Addr().String()
	d.Dashboard = "http://" + hl.Addr().String() + "/"
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	d.onClose(func() error { cancel(); return <-done })
	_ = pkiDir
	return nil
}

// StartAgent starts the agent process and waits until its status socket
// answers with Shield attached.
func (d *Demo) StartAgent(ctx context.Context) (AgentStatus, error) {
	p, err := startAgent(d.agentBin, d.agentConfig, d.logw)
	if err != nil {
		return AgentStatus{}, err
	}
	d.mu.Lock()
	d.agent = p
	d.mu.Unlock()
	st, err := waitStatus(ctx, d.status, p, 60*time.Second, func(s AgentStatus) bool {
		return len(s.Shield.Interfaces) > 0 && s.Shield.Interfaces[0].Attached
	})
	if err != nil {
		return st, withAgentLog(d.agentLog, err)
	}
	return st, nil
}

// StopAgent sends sig to the agent process (SIGKILL: kill -9) and waits
// for it to end. The pinned Shield keeps enforcing.
func (d *Demo) StopAgent(sig syscall.Signal) error {
	d.mu.Lock()
	p := d.agent
	d.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.stop(sig, 15*time.Second)
}

// AgentPID is the agent's process id.
func (d *Demo) AgentPID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.agent == nil {
		return 0
	}
	return d.agent.PID()
}

// AgentStatus reads the agent's status socket.
func (d *Demo) AgentStatus(ctx context.Context) (AgentStatus, error) { return d.status.Status(ctx) }

// RuleCounter returns the agent's counter of rule (zero if it matched
// nothing yet).
func (d *Demo) RuleCounter(ctx context.Context, rule string) (fortress.RuleCounter, error) {
	top, err := d.status.Counters(ctx)
	if err != nil {
		return fortress.RuleCounter{}, err
	}
	for _, r := range top {
		if r.Rule == rule {
			return r, nil
		}
	}
	return fortress.RuleCounter{Rule: rule}, nil
}

// Send sends n datagrams from src (one of Sources) to namespace B.
func (d *Demo) Send(src netip.Addr, n int) error {
	return d.Pair.A.SendUDP(src, Dst(src), Port, n)
}

// Received is how many datagrams from src arrived in namespace B.
func (d *Demo) Received(src netip.Addr) int { return d.rx.Count(src) }

// StopTraffic stops the background traffic (tests that compare totals).
func (d *Demo) StopTraffic() { d.traffic.stop() }

// Sent is how many datagrams the background traffic sent from src.
func (d *Demo) Sent(src netip.Addr) uint64 { return d.traffic.Sent(src) }

// waitConnected waits until an agent is connected to gw; agentLog is the
// agent's log, quoted when it does not connect.
func waitConnected(ctx context.Context, gw *gateway.Gateway, agentLog string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for gw.Connected() == 0 {
		if time.Now().After(deadline) {
			return withAgentLog(agentLog, fmt.Errorf("agent did not connect to the gateway within %v", timeout))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// withAgentLog adds the end of the agent's log (at path) to err.
func withAgentLog(path string, err error) error {
	b, rerr := os.ReadFile(path)
	if rerr != nil || len(b) == 0 {
		return err
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return fmt.Errorf("%w\nagent log (last lines):\n  %s", err, strings.Join(lines, "\n  "))
}

// StatusLine sums the demo up in one line.
func (d *Demo) StatusLine(ctx context.Context) string {
	var b strings.Builder
	st, err := d.AgentStatus(ctx)
	if err != nil {
		fmt.Fprintf(&b, "agent: %v", err)
	} else {
		fmt.Fprintf(&b, "shield %s, %d rules, dropped %d, would-drop %d | sentinel %s | policy v%d",
			st.Shield.State, st.Shield.Rules, st.Shield.Totals.Drop, st.Shield.Totals.WouldDrop, st.Sentinel.State, st.Policy.Version)
	}
	b.WriteString(" | arrived/sent:")
	for _, s := range Sources {
		if s.Quiet {
			continue
		}
		fmt.Fprintf(&b, " %s(%s) %d/%d", s.Addr, s.Expect, d.Received(s.Addr), d.Sent(s.Addr))
	}
	return b.String()
}

// tick is the periodic status line, or nothing once ctx (the run) has
// ended: a tick and the end can come together. The line gets its own
// deadline, so the run's end never cuts it short into "context deadline
// exceeded".
func (d *Demo) tick(ctx context.Context) (string, bool) {
	if ctx.Err() != nil {
		return "", false
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	return d.StatusLine(sctx), true
}

// Close stops the traffic, the agent and the gateway and removes the
// namespaces, the bpffs mount and the work directory, in that order.
func (d *Demo) Close() error {
	var errs []error
	for i := len(d.cleanup) - 1; i >= 0; i-- {
		if err := d.cleanup[i](); err != nil {
			errs = append(errs, err)
		}
	}
	d.cleanup = nil
	if d.lock != nil {
		// The record stays when something could not be removed: the next
		// run under this name tries again.
		if err := d.lock.release(len(errs) == 0); err != nil {
			errs = append(errs, err)
		}
		d.lock = nil
	}
	return errors.Join(errs...)
}

// Run runs the demo until ctx ends (or duration passes, when above 0),
// printing the dashboard URL and a status line every few seconds.
func Run(ctx context.Context, cfg Config, duration time.Duration) (err error) {
	d, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		say(d.cfg.Out, "stopping: agent, gateway, namespaces, bpffs, %s", d.Work)
		if cerr := d.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()
	say(d.cfg.Out, "dashboard: %s", d.Dashboard)
	say(d.cfg.Out, "traffic: %d datagrams/s from each of %d sources in %s to %s/%s port %d; Ctrl-C stops",
		d.cfg.Rate, len(Sources)-1, d.Pair.A.NSName, DstV4, DstV6, Port)
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if line, ok := d.tick(ctx); ok {
				fmt.Fprintln(cfg.Out, line)
			}
		}
	}
}

func checkLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("listen %q: %w", hostport, err)
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.IsLoopback() {
		return fmt.Errorf("listen %q: the dashboard listens on a loopback address only (e.g. 127.0.0.1:8080)", hostport)
	}
	return nil
}

func mountBPFFS(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount private bpffs on %s: %w", dir, err)
	}
	return nil
}

func unmount(dir string) error {
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}
