package serviceradar

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"sync/atomic"

	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/policy"
)

// Names under which Fortress reports to ServiceRadar.
const (
	// ServiceName, ServiceType and Source fill GatewayServiceStatus.
	ServiceName = "fortress"
	ServiceType = "fortress"
	Source      = "fortress"
)

// Capability names for the ControlStream hello.
const (
	CapFortress = "fortress"
	CapShield   = "fortress.shield"
	CapSentinel = "fortress.sentinel"
)

// engine is what the service needs of a running Fortress; tests stand in
// for it without a kernel.
type engine interface {
	ApplyBundle(raw []byte) (fortress.Ack, error)
	Status() fortress.Status
	TopCounters() ([]fortress.RuleCounter, map[string][2]uint64)
	Maintenance(token string) (fortress.MaintenanceResult, error)
	EndMaintenance() error
	Events() <-chan fortress.Event
	Stop()
}

// Service is Fortress running inside (or beside) ServiceRadar's agent.
// Every method is safe for concurrent use, and on a nil *Service: it then
// reports nothing available and refuses commands.
type Service struct {
	cfg    Config
	log    *slog.Logger
	eng    engine
	events chan Event
	// dropped counts OCSF events that found Events full.
	dropped atomic.Uint64
	cancel  context.CancelFunc
	done    chan struct{}
	// owned: Close stops Fortress (Open), or leaves it to its owner
	// (Attach).
	owned bool
}

// Open validates cfg and starts Fortress. Off Linux it returns an error
// wrapping fortress.ErrUnsupported; with the block disabled it returns
// ErrDisabled. log may be nil (slog.Default).
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.IsEnabled() {
		return nil, ErrDisabled
	}
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("open fortress on %s/%s: %w", runtime.GOOS, runtime.GOARCH, fortress.ErrUnsupported)
	}
	keys, err := cfg.trustKeys()
	if err != nil {
		return nil, err
	}
	fc := cfg.fortressConfig()
	fc.TrustKeys, fc.Logger = keys, log
	f, err := fortress.Start(ctx, fc)
	if err != nil {
		return nil, fmt.Errorf("open fortress: %w", err)
	}
	s := newService(cfg, f, log)
	s.owned = true
	return s, nil
}

// Attach wraps a Fortress the caller started and keeps owning: the
// Service answers commands, capabilities and status for it, and Close
// leaves it running. The caller keeps reading f.Events() (convert them
// with OCSF); the Service's own Events channel stays empty. A nil f gives
// a nil Service.
func Attach(f *fortress.Fortress, agentID string, log *slog.Logger) *Service {
	if f == nil {
		return nil
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Service{cfg: Config{AgentID: agentID}, log: log, eng: f, events: make(chan Event), cancel: func() {}, done: make(chan struct{})}
	close(s.done)
	return s
}

// ErrDisabled is what Open returns for a block with "enabled": false.
var ErrDisabled = errors.New("fortress is disabled in the configuration")

func newService(cfg Config, eng engine, log *slog.Logger) *Service {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{cfg: cfg, log: log, eng: eng, events: make(chan Event, 1024), cancel: cancel, done: make(chan struct{})}
	go s.pump(ctx)
	return s
}

// trustKeys gathers the keys given in code, built into the binary and in
// the trust key file.
func (c *Config) trustKeys() ([]ed25519.PublicKey, error) {
	keys := append([]ed25519.PublicKey(nil), c.TrustKeys...)
	built, err := policy.BuiltinKeys()
	if err != nil {
		return nil, fmt.Errorf("built-in trust key: %w", err)
	}
	keys = append(keys, built...)
	file := c.TrustKey
	if file == "" {
		if _, err := os.Stat(DefaultTrustKey); err == nil {
			file = DefaultTrustKey
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("fortress.trust_key: %w", err)
		}
	}
	if file != "" {
		k, err := policy.LoadTrustKeys(file)
		if err != nil {
			return nil, fmt.Errorf("fortress.trust_key: %w", err)
		}
		keys = append(keys, k...)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("fortress.trust_key: no trust key (none configured, none built in, no %s): Fortress would accept no policy", DefaultTrustKey)
	}
	return keys, nil
}

// Close stops Fortress's background work. The pinned kernel state keeps
// enforcing the policy in force (see fortress.Fortress.Stop).
func (s *Service) Close() {
	if s == nil {
		return
	}
	s.cancel()
	<-s.done
	if s.owned {
		s.eng.Stop()
	}
}

// Fortress returns the running Fortress for what this package does not
// cover (nil for a nil Service or one built on a test engine).
func (s *Service) Fortress() *fortress.Fortress {
	if s == nil {
		return nil
	}
	f, _ := s.eng.(*fortress.Fortress)
	return f
}

// AgentID is the id bundles and tokens must name.
func (s *Service) AgentID() string {
	if s == nil {
		return ""
	}
	return s.cfg.AgentID
}

// Capabilities lists what the ControlStream hello may claim: "fortress"
// while Fortress runs, "fortress.shield" while Shield enforces or runs dry,
// "fortress.sentinel" while Sentinel enforces or audits. A nil Service
// (Fortress unsupported, disabled or failed) claims none.
func (s *Service) Capabilities() []string {
	if s == nil {
		return nil
	}
	return capabilities(s.eng.Status())
}

func capabilities(st fortress.Status) []string {
	caps := []string{CapFortress}
	if shieldUp(st) {
		caps = append(caps, CapShield)
	}
	if sentinelUp(st) {
		caps = append(caps, CapSentinel)
	}
	return caps
}

func shieldUp(st fortress.Status) bool {
	return st.Shield.State == fortress.ShieldEnforcing || st.Shield.State == fortress.ShieldDryRun
}

func sentinelUp(st fortress.Status) bool {
	return st.Sentinel.State == fortress.SentinelEnforcing || st.Sentinel.State == fortress.SentinelAudit
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
