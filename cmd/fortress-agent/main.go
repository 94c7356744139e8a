// Command fortress-agent is the Fortress daemon: it runs Shield and Sentinel
// through package fortress, re-applies the last signed policy at start,
// takes new policy from the gateway over the ControlStream, and serves its
// status on a local unix socket and Prometheus metrics. It has no
// sub-commands: its binary is the agent's kernel identity, and every input
// that steers it is signed or comes from a protected path.
package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/paths"
	"github.com/carverauto/fortress/pkg/policy"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ue usageError
		fmt.Fprintf(os.Stderr, "fortress-agent: %v\n", err)
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath, showVersion := newFlagSet(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q: the agent takes only --config and --version", fs.Arg(0))}
	}
	if *showVersion {
		fmt.Fprintf(stdout, "fortress-agent %s\n", version)
		return nil
	}
	cfg, err := loadConfig(*cfgPath, protectedConfigDir)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	slog.SetDefault(log)
	return runAgent(ctx, cfg, log, nil)
}

// usageText describes what the agent does besides its flags: the
// configuration file chooses where policy comes from.
const usageText = `Usage: fortress-agent [--config FILE] [--version]

Runs Shield and Sentinel, re-applies the last signed policy at start and
serves its status on a unix socket and Prometheus metrics. The
configuration file (JSON, inside the protected configuration directory)
chooses where new policy comes from:

  "gateway": {...}       Fortress's own gateway (ControlStream, fortress.v1)
  "serviceradar": {...}  a ServiceRadar agent-gateway (monitoring.AgentGatewayService
                         ControlStream, mutual TLS with ServiceRadar's certificates):
                         hello with the fortress capabilities, every command
                         acknowledged, expired ones refused, and fortress.apply_bundle,
                         fortress.status, fortress.maintenance and fortress.counters
                         answered; Fortress then runs beside an unmodified
                         ServiceRadar agent (see docs/SERVICERADAR.md)
  neither                the last applied policy only

Flags:
`

// newFlagSet declares the agent's flags.
func newFlagSet(w io.Writer) (fs *flag.FlagSet, cfgPath *string, showVersion *bool) {
	fs = flag.NewFlagSet("fortress-agent", flag.ContinueOnError)
	fs.SetOutput(w)
	cfgPath = fs.String("config", paths.AgentConfig, "configuration `file` (inside "+protectedConfigDir+")")
	showVersion = fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	return fs, cfgPath, showVersion
}

// probeKernel is replaced in tests, which must not run BPF LSM trials on
// the host.
var probeKernel = fortress.ProbeKernel

func newLogger(c logConfig, w io.Writer) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lv}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// trustKeys are the keys compiled into the binary plus those of the trust
// key file (which must be root-owned and writable by root only).
func trustKeys(file string) ([]ed25519.PublicKey, error) {
	keys, err := policy.BuiltinKeys()
	if err != nil {
		return nil, fmt.Errorf("built-in trust key: %w", err)
	}
	if file != "" {
		k, err := policy.LoadTrustKeys(file)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k...)
	}
	if len(keys) == 0 {
		return nil, errors.New("config: trust_key: no trust key configured or built in; the agent would accept no policy")
	}
	return keys, nil
}

// gatewayAddrs resolves the ControlStream gateway's host so that Shield
// never drops it.
func gatewayAddrs(ctx context.Context, hostport string) ([]netip.Addr, error) {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.Unmap())
	}
	return out, nil
}

// runAgent runs Fortress and the agent's services until ctx ends. ready,
// if set, is called once everything is up.
func runAgent(ctx context.Context, cfg *config, log *slog.Logger, ready func(*agent)) error {
	keys, err := trustKeys(cfg.TrustKey)
	if err != nil {
		return err
	}
	fc := cfg.fortressConfig()
	fc.TrustKeys, fc.Logger, fc.AgentVersion = keys, log, version
	var streams []string
	if cfg.Gateway != nil {
		streams = append(streams, cfg.Gateway.Address)
	}
	if cfg.ServiceRadar != nil {
		streams = append(streams, cfg.ServiceRadar.Address)
	}
	for _, addr := range streams {
		gws, err := gatewayAddrs(ctx, addr)
		if err != nil {
			log.Warn("gateway address not resolved; it is not exempt from shield rules", "gateway", addr, "err", err)
		}
		for _, g := range gws {
			if !containsAddr(fc.Gateways, g) {
				fc.Gateways = append(fc.Gateways, g)
			}
		}
	}
	kernel := probeKernel()
	fc.Kernel = &kernel
	warnLacking(log, kernel)
	if err := refuseLacking(cfg, kernel); err != nil {
		return err
	}

	fwd := &counterForwarder{}
	fc.OnCounters = fwd.add

	a := &agent{cfg: cfg, log: log}
	f, err := fortress.Start(ctx, fc)
	if err != nil {
		return err
	}
	defer f.Stop()
	if err := verifyInputs(cfg, keys, log); err != nil {
		return err
	}
	a.f = f
	a.metrics = newMetrics(f, a)

	errc := make(chan error, 4)
	srvCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	statusSrv, err := a.serveStatus(srvCtx)
	if err != nil {
		return err
	}
	defer statusSrv.Close()
	if cfg.Metrics.Listen != "off" {
		ms, err := a.serveMetrics(cfg.Metrics.Listen)
		if err != nil {
			return err
		}
		defer ms.Close()
	}
	if cfg.Gateway != nil {
		cl, err := a.newStreamClient(kernel)
		if err != nil {
			return err
		}
		fwd.set(cl)
		a.setStream(cl)
		// The first hello carries the policy version in force: set the
		// status before the stream can connect.
		cl.SetStatus(wireStatus(f.Status()))
		go func() { errc <- ignoreCanceled(cl.Run(srvCtx)) }()
		go a.pushStatus(srvCtx, cl)
	}
	if cfg.ServiceRadar != nil {
		go func() { errc <- a.runServiceRadar(srvCtx) }()
	}
	if cfg.Gateway == nil && cfg.ServiceRadar == nil {
		log.Info("no gateway configured: enforcing the last applied policy only")
	}
	go a.pumpEvents(srvCtx)

	log.Info("fortress-agent running", "version", version, "agent", cfg.AgentID)
	if ready != nil {
		ready(a)
	}
	select {
	case <-ctx.Done():
		log.Info("fortress-agent stopping", "cause", context.Cause(ctx))
		return nil
	case err := <-errc:
		if err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// warnLacking says once at start what this process or architecture lacks
// (capabilities, memlock, BPF trampolines); the layers then report
// degraded or unavailable with the kernel's own error.
func warnLacking(log *slog.Logger, k fortress.KernelReport) {
	for _, name := range []string{"caps_shield", "caps_sentinel", "memlock", "bpf_trampoline"} {
		if ok, probed := k.Checks[name]; probed && !ok {
			log.Warn("kernel check failed", "check", name, "reason", k.Reasons[name])
		}
	}
}

// refuseLacking stops the agent before it loads anything when the process
// lacks a capability that a layer it is configured to run needs (Shield:
// interfaces configured; Sentinel: not disabled), or, on a kernel that
// charges BPF maps to RLIMIT_MEMLOCK, a limit it cannot raise. Such an
// agent would run half protected: a layer that cannot load, or that loads
// now and cannot adopt its pins after a restart. The kernel's own checks
// would not always say so (CAP_SYS_ADMIN passes its CAP_BPF, CAP_PERFMON
// and XDP load checks), so the agent holds to the named set. A kernel or
// architecture without BPF LSM is not refused: Sentinel reports itself
// unavailable, as before.
func refuseLacking(cfg *config, k fortress.KernelReport) error {
	var checks []string
	if len(cfg.Interfaces) > 0 {
		checks = append(checks, "caps_shield")
	}
	if cfg.Sentinel.Enabled == nil || *cfg.Sentinel.Enabled {
		checks = append(checks, "caps_sentinel")
	}
	if len(checks) > 0 {
		checks = append(checks, "memlock")
	}
	var reasons []string
	for _, name := range checks {
		if ok, probed := k.Checks[name]; probed && !ok && !slices.Contains(reasons, k.Reasons[name]) {
			reasons = append(reasons, k.Reasons[name])
		}
	}
	if len(reasons) == 0 {
		return nil
	}
	return fmt.Errorf("not starting half protected: %s (the unit grants the set in AmbientCapabilities= and CapabilityBoundingSet=, and LimitMEMLOCK=infinity: deploy/systemd)",
		strings.Join(reasons, "; "))
}
