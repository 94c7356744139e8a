package sentinel

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
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

// Sentinel is a loaded (or adopted) set of Sentinel programs.
type Sentinel struct {
	cfg Config
	log *slog.Logger
	// maps holds every map by name (pinning and adoption go by name);
	// m names the same maps by bpf2go's generated fields.
	maps    map[string]*ebpf.Map
	m       sentinelMaps
	links   map[string]link.Link
	progs   map[string]*ebpf.Program
	adopted bool
	notes   []string

	mu       sync.Mutex
	names    map[Inode]string
	critical []string
	crit     chan Event
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

func (s *Sentinel) record(action, object string, err error, details map[string]any) {
	if s.cfg.Recorder != nil {
		s.cfg.Recorder.Record(action, object, err, details)
	}
}

func pinName(kind, name string) string {
	return kind + "_" + strings.TrimPrefix(name, ".")
}

// Start adopts the pinned Sentinel if there is one and it is the embedded
// one, and loads, attaches and pins a fresh one otherwise. The policy (what
// is protected and watched) is resolved and written either way. On a kernel
// without usable BPF LSM it returns an error wrapping ErrUnavailable.
func Start(cfg Config) (*Sentinel, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &Sentinel{
		cfg:   cfg,
		log:   cfg.Log.With("layer", "sentinel"),
		maps:  map[string]*ebpf.Map{},
		links: map[string]link.Link{},
		progs: map[string]*ebpf.Program{},
		names: map[Inode]string{},
		crit:  make(chan Event, 16),
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	if err := s.ensureDirs(); err != nil {
		return nil, err
	}
	spec, err := s.embeddedSpec()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(s.pin("map", mapObjects)); err == nil {
		err = s.adopt(spec)
		if err == nil {
			// The agent was exec'd under Sentinel (or replaced an older
			// one): confirm that the kernel gave it the role.
			err = s.claim()
		}
		if err == nil {
			err = s.applyPolicy()
		}
		if err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	if err := s.load(spec, nil); err != nil {
		// Nothing of a failed fresh load may stay attached half-way.
		s.Remove()
		return nil, err
	}
	return s, nil
}

func (s *Sentinel) pin(kind, name string) string {
	return s.cfg.PinRoot.Path(pins.Sentinel, pinName(kind, name))
}

func (s *Sentinel) ensureDirs() error {
	for _, l := range []pins.Layer{pins.Sentinel, pins.Shield} {
		if err := s.cfg.PinRoot.Ensure(l); err != nil {
			return err
		}
	}
	if s.cfg.StagingDir == "" {
		return nil
	}
	if err := os.MkdirAll(s.cfg.StagingDir, 0o700); err != nil {
		return fmt.Errorf("create staging dir: %w", err)
	}
	return nil
}

// embeddedSpec returns the embedded programs that fit this kernel, audited.
func (s *Sentinel) embeddedSpec() (*ebpf.CollectionSpec, error) {
	spec, err := loadSentinel()
	if err != nil {
		return nil, err
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("%w: kernel btf: %v", ErrUnavailable, err)
	}
	notes, err := selectPrograms(spec, kernel)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	s.notes = notes
	// The .bss section only carries the event type into BTF; no program
	// uses it, so it is not created (and not pinned).
	delete(spec.Maps, ".bss")
	for name := range spec.Variables {
		if strings.HasPrefix(name, "unused_") {
			delete(spec.Variables, name)
		}
	}
	if err := auditSpec(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// load loads spec (reusing the maps in replace, if any), attaches every
// program and pins maps, programs and links. The policy maps are filled
// before anything is attached, so protection is complete from the first
// hook on.
func (s *Sentinel) load(spec *ebpf.CollectionSpec, replace map[string]*ebpf.Map) error {
	coll, err := ebpf.NewCollectionWithOptions(spec, s.collectionOptions(replace))
	s.record("load", "sentinel", err, map[string]any{"programs": len(spec.Programs)})
	if err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("%w: load: %v", ErrUnavailable, err)
		}
		return fmt.Errorf("load sentinel: %w", err)
	}
	for name, m := range coll.Maps {
		if old, ok := s.maps[name]; ok && old != m {
			old.Close()
		}
		s.maps[name] = m
	}
	if err := s.bindMaps(); err != nil {
		return err
	}
	for name, p := range coll.Programs {
		s.progs[name] = p
	}
	if replace == nil {
		if err := s.setMode(s.cfg.Mode, time.Time{}); err != nil {
			return err
		}
		if err := s.applyPolicy(); err != nil {
			return err
		}
	}
	for name, m := range s.maps {
		if replace[name] != nil {
			continue
		}
		path := s.pin("map", name)
		err := m.Pin(path)
		s.record("pin", path, err, nil)
		if err != nil {
			return fmt.Errorf("pin map %s: %w", name, err)
		}
		if err := s.GuardMap(m); err != nil {
			return err
		}
	}
	names, err := s.attachAll("")
	if err != nil {
		return err
	}
	for _, name := range names {
		for kind, pin := range map[string]interface{ Pin(string) error }{"prog": s.progs[name], "link": s.links[name]} {
			path := s.pin(kind, name)
			os.Remove(path) // a stale pin from a replaced program
			err := pin.Pin(path)
			s.record("pin", path, err, nil)
			if err != nil {
				return fmt.Errorf("pin %s %s: %w", kind, name, err)
			}
		}
	}
	s.log.Info("sentinel loaded", "programs", len(names), "notes", strings.Join(s.notes, "; "))
	return nil
}

// attachAll attaches every program of s.progs and guards its link, the
// claim program first: the loader claims its role (claim) before any other
// hook can ask for it. reason, if set, goes into the audit log. It returns
// the program names, sorted.
func (s *Sentinel) attachAll(reason string) ([]string, error) {
	names := make([]string, 0, len(s.progs))
	for name := range s.progs {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == claimProgram) != (names[j] == claimProgram) {
			return names[i] == claimProgram
		}
		return names[i] < names[j]
	})
	if len(names) == 0 || names[0] != claimProgram {
		return nil, fmt.Errorf("attach sentinel: no %s program to claim the agent role with", claimProgram)
	}
	for i, name := range names {
		l, err := attach(s.progs[name])
		var details map[string]any
		if reason != "" {
			details = map[string]any{"reason": reason}
		}
		s.record("attach", "lsm/"+name, err, details)
		if err != nil {
			if runtime.GOARCH == "arm64" && errors.Is(err, ebpf.ErrNotSupported) {
				// arm64 attaches BPF trampolines to kernel functions
				// only from 6.4 (ftrace direct calls).
				return nil, fmt.Errorf("%w: attach %s: %v (arm64 kernels before 6.4 cannot attach BPF trampolines to kernel functions)", ErrUnavailable, name, err)
			}
			return nil, fmt.Errorf("%w: attach %s: %v", ErrUnavailable, name, err)
		}
		if err := s.GuardLink(l); err != nil {
			l.Close()
			return nil, err
		}
		s.links[name] = l
		if i == 0 {
			if err := s.claim(); err != nil {
				return nil, err
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// Adopted reports whether Start adopted pinned programs instead of loading.
func (s *Sentinel) Adopted() bool { return s.adopted }

// Programs returns the names of the attached programs.
func (s *Sentinel) Programs() []string {
	out := make([]string, 0, len(s.links))
	for name := range s.links {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Close releases Sentinel's file descriptors. The pins keep every program
// attached: enforcement outlives the agent.
func (s *Sentinel) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.links {
		l.Close()
	}
	for _, p := range s.progs {
		p.Close()
	}
	for _, m := range s.maps {
		m.Close()
	}
	s.links, s.progs, s.maps = map[string]link.Link{}, map[string]*ebpf.Program{}, map[string]*ebpf.Map{}
	s.m = sentinelMaps{}
	return nil
}

// Remove detaches Sentinel: it unpins every program, link and map and
// closes them. Only the agent may do it while enforcing; an operator does it
// after a maintenance token switched Sentinel to audit.
func (s *Sentinel) Remove() error {
	var errs []error
	entries, err := os.ReadDir(s.cfg.PinRoot.Dir(pins.Sentinel))
	if err != nil {
		errs = append(errs, err)
	}
	// Program IDs, taken from the pins (this Sentinel may already be
	// closed), to wait below until the kernel has freed them.
	var ids []ebpf.ProgramID
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "prog_") {
			continue
		}
		if p, err := ebpf.LoadPinnedProgram(filepath.Join(s.cfg.PinRoot.Dir(pins.Sentinel), e.Name()), nil); err == nil {
			if info, err := p.Info(); err == nil {
				if id, ok := info.ID(); ok {
					ids = append(ids, id)
				}
			}
			p.Close()
		}
	}
	// Links first: protection ends only once nothing else can go wrong.
	sort.Slice(entries, func(i, j int) bool {
		return strings.HasPrefix(entries[i].Name(), "link_") && !strings.HasPrefix(entries[j].Name(), "link_")
	})
	for _, e := range entries {
		path := filepath.Join(s.cfg.PinRoot.Dir(pins.Sentinel), e.Name())
		err := os.Remove(path)
		s.record("unpin", path, err, nil)
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range s.progs {
		if info, err := p.Info(); err == nil {
			if id, ok := info.ID(); ok && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	s.Close()
	if len(errs) == 0 {
		errs = append(errs, waitGone(ids, 30*time.Second))
	}
	return errors.Join(errs...)
}

// waitGone waits until the kernel has freed the programs. On 5.10 a
// released LSM link keeps its program in the hook for a grace period (a few
// seconds under emulation), so "removed" is reported only once it is true.
func waitGone(ids []ebpf.ProgramID, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		left := 0
		for _, id := range ids {
			p, err := ebpf.NewProgramFromID(id)
			if err == nil {
				p.Close()
				left++
			}
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d sentinel programs still loaded %s after removal", left, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// bindMaps points the generated struct's fields (tagged with the C names)
// at the loaded maps.
func (s *Sentinel) bindMaps() error {
	v := reflect.ValueOf(&s.m).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("ebpf")
		m, ok := s.maps[name]
		if !ok {
			return fmt.Errorf("bind map %s: not loaded", name)
		}
		v.Field(i).Set(reflect.ValueOf(m))
	}
	return nil
}
