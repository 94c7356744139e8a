package sentinel

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf/rlimit"

	"github.com/carverauto/fortress/internal/pins"
	"github.com/carverauto/fortress/pkg/paths"
)

// Mode is enforce or audit.
type Mode uint32

const (
	Enforce = Mode(sentinelSentinelModeSENTINEL_MODE_ENFORCE)
	Audit   = Mode(sentinelSentinelModeSENTINEL_MODE_AUDIT)
)

func (m Mode) String() string {
	if m == Audit {
		return "audit"
	}
	return "enforce"
}

// DefaultConfigDir is the agent's configuration directory.
const DefaultConfigDir = paths.ConfigDir

// ErrUnavailable says BPF LSM cannot be used on this kernel; Sentinel then
// protects nothing and must say so.
var ErrUnavailable = errors.New("sentinel: BPF LSM unavailable")

// Config says what Sentinel protects and watches.
type Config struct {
	// PinRoot is the bpffs root of Fortress's pins.
	PinRoot pins.Root
	// AgentBinary is the agent executable: its inode is the agent identity.
	AgentBinary string
	// UpdaterBinary (optional) is the update manager's executable.
	UpdaterBinary string
	// StagingDir is where the updater prepares a new agent binary; it must
	// be on the agent binary's filesystem. Default: .fortress-staging next
	// to the agent binary, none with a release layout (the updater stages
	// inside it).
	StagingDir string
	// Releases (optional) is a versioned release layout that the agent
	// runs from and the updater alone changes (ServiceRadar's).
	Releases Releases
	// ConfigDir is protected with everything in it (default
	// /etc/serviceradar). StateDirs are further protected trees (trust
	// keys, last applied policy version).
	ConfigDir string
	StateDirs []string
	// Watched paths produce file integrity events (a directory: for its
	// entries too). They are not protected by being watched.
	Watched []string
	// Mode is the mode a fresh load starts in; an adopted Sentinel keeps
	// the pinned mode.
	Mode Mode
	// Recorder receives a record of every change of kernel state.
	Recorder Recorder
	Log      *slog.Logger
}

// Recorder is where Sentinel records load, attach, pin, unpin, adopt and
// map updates (the audit log).
type Recorder interface {
	Record(action, object string, err error, details map[string]any)
}

// Sentinel is a loaded (or adopted) set of Sentinel programs. It is a
// facade over the owners of its parts, each with its own state:
//   - kernelSet: the maps, programs and links and their pins;
//   - loader: loading, attaching, adopting and replacing them;
//   - policyWriter: what is protected and watched (Protect, Watch);
//   - guard: which BPF objects only the agent may change (GuardMap,
//     GuardLink);
//   - modes: enforce or audit (Mode, SetEnforce, ApplyMaintenance);
//   - events: the event ring, counters and critical conditions
//     (ReadEvents, Stats).
type Sentinel struct {
	k   *kernelSet
	rec record
	*guard
	*modes
	*policyWriter
	*events
}

const (
	mapObjects    = sentinelMapSentinelObjects
	mapIdentities = sentinelMapSentinelIdentities
	mapGuarded    = sentinelMapSentinelGuarded
	mapConfig     = sentinelMapSentinelConfig
	mapStats      = sentinelMapSentinelStats
	mapEvents     = sentinelMapSentinelEvents
	mapListed     = sentinelMapSentinelListed
)

func (c *Config) defaults() error {
	if c.PinRoot == "" {
		c.PinRoot = pins.DefaultRoot
	}
	if c.ConfigDir == "" {
		c.ConfigDir = DefaultConfigDir
	}
	if c.AgentBinary == "" {
		return errors.New("sentinel: no agent binary configured")
	}
	if c.Releases.Dir != "" {
		if c.Releases.Binary == "" {
			c.Releases.Binary = filepath.Base(c.AgentBinary)
		}
		if err := c.Releases.validate(); err != nil {
			return fmt.Errorf("sentinel: %w", err)
		}
	} else if c.StagingDir == "" {
		c.StagingDir = filepath.Join(filepath.Dir(c.AgentBinary), ".fortress-staging")
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return nil
}

// record is where Sentinel records a change of kernel state: the
// configured Recorder, or nowhere.
type record func(action, object string, err error, details map[string]any)

func recorderOf(r Recorder) record {
	if r == nil {
		return func(string, string, error, map[string]any) {}
	}
	return r.Record
}

// Start adopts the pinned Sentinel if there is one and it is the embedded
// one, and loads, attaches and pins a fresh one otherwise. The policy (what
// is protected and watched) is resolved and written either way. On a kernel
// without usable BPF LSM it returns an error wrapping ErrUnavailable.
func Start(cfg Config) (*Sentinel, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s, l := assemble(cfg)
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	if err := l.ensureDirs(); err != nil {
		return nil, err
	}
	spec, err := l.embeddedSpec()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(s.k.pin("map", mapObjects)); err == nil {
		err = l.adopt(spec)
		if err == nil {
			// The agent was exec'd under Sentinel (or replaced an older
			// one): confirm that the kernel gave it the role.
			err = l.claim()
		}
		if err == nil {
			err = s.apply()
		}
		if err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	if err := l.load(spec, nil); err != nil {
		// Nothing of a failed fresh load may stay attached half-way.
		s.Remove()
		return nil, err
	}
	return s, nil
}

// assemble wires Sentinel's owners together, with nothing loaded yet.
func assemble(cfg Config) (*Sentinel, *loader) {
	log := cfg.Log.With("layer", "sentinel")
	rec := recorderOf(cfg.Recorder)
	k := newKernelSet(cfg.PinRoot)
	ev := newEvents(k, log)
	s := &Sentinel{
		k:            k,
		rec:          rec,
		guard:        &guard{k: k},
		modes:        &modes{k: k, rec: rec},
		policyWriter: &policyWriter{cfg: cfg, k: k, ev: ev, rec: rec},
		events:       ev,
	}
	return s, &loader{cfg: cfg, log: log, rec: rec, k: k, guard: s.guard, modes: s.modes, policy: s.policyWriter, ev: ev}
}

// Adopted reports whether Start adopted pinned programs instead of loading.
func (s *Sentinel) Adopted() bool { return s.k.adopted }

// Programs returns the names of the attached programs.
func (s *Sentinel) Programs() []string { return s.k.programs() }

// Close releases Sentinel's file descriptors. The pins keep every program
// attached: enforcement outlives the agent.
func (s *Sentinel) Close() error {
	s.k.close()
	return nil
}

// Remove detaches Sentinel: it unpins every program, link and map and
// closes them. Only the agent may do it while enforcing; an operator does it
// after a maintenance token switched Sentinel to audit.
func (s *Sentinel) Remove() error { return s.k.remove(s.rec) }

// Status reports the mode, the attached programs and the counters.
func (s *Sentinel) Status() Status {
	st := Status{Adopted: s.k.adopted, Programs: s.k.programs(), Notes: s.k.notes}
	m, end, err := s.Mode()
	if err != nil {
		st.Critical = append(st.Critical, err.Error())
	}
	st.Mode, st.AuditEnd = m.String(), end
	st.Enforcing = err == nil && m == Enforce && len(st.Programs) > 0
	st.Stats, _ = s.Stats()
	st.Roles, _ = s.roleStats()
	st.Critical = append(st.Critical, s.criticals()...)
	return st
}
