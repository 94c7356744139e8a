package shield

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/carverauto/fortress/internal/bytecode"
	"github.com/carverauto/fortress/internal/lpm"
	"github.com/carverauto/fortress/internal/pins"
)

// largeSet is the rule count from which an apply collects garbage before it
// compiles (a few tens of milliseconds against seconds of work).
const largeSet = 100000

// MaxManagement is the number of management addresses per family.
const MaxManagement = 4

// Allow is the helper allowlist of the embedded Shield object.
var Allow = bytecode.Allowlist{
	"xdp_shield": {Helpers: []asm.BuiltinFunc{
		asm.FnMapLookupElem, asm.FnMapUpdateElem, asm.FnKtimeGetNs, asm.FnRingbufReserve, asm.FnRingbufSubmit,
	}},
}

// Object describes the embedded Shield object for the allowlist check.
var Object = bytecode.Embedded{Name: "shield", Load: loadShield, Allow: Allow}

// Recorder receives one record per change of kernel state (the audit log).
type Recorder interface {
	Record(action, object string, err error, details map[string]any)
}

type nopRecorder struct{}

func (nopRecorder) Record(string, string, error, map[string]any) {}

// Config configures a Shield instance.
type Config struct {
	// Management are the management addresses no rule can drop (up to four per
	// family).
	Management []netip.Addr
	// Budget caps the memory of all Shield maps; 0 means DefaultBudget.
	Budget uint64
	// SampleGap is the minimum time between two dry-run samples per CPU;
	// 0 means 10ms.
	SampleGap time.Duration
	// TrackedRules is how many distinct rules keep exact counters: rules
	// that see traffic, whatever the size of the set. A rule that first
	// matches when all are taken is counted in Stats().Untracked only,
	// until a swap removes rules that left the set. 0 means
	// DefaultTrackedRules.
	TrackedRules uint32
	// PinRoot, if set, pins maps, program and links under PinRoot/shield.
	PinRoot pins.Root
	Audit   Recorder
	Logger  *slog.Logger
}

func (c *Config) defaults() {
	if c.Budget == 0 {
		c.Budget = DefaultBudget
	}
	if c.TrackedRules == 0 {
		c.TrackedRules = DefaultTrackedRules
	}
	if c.SampleGap == 0 {
		c.SampleGap = 10 * time.Millisecond
	}
	if c.Audit == nil {
		c.Audit = nopRecorder{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Shield is a loaded firewall: program, maps and links.
//
// mu guards everything but counters, which reads maps that never change
// for the Shield's life and needs no lock.
type Shield struct {
	cfg      Config
	ncpu     int
	counters *Counters

	mu      sync.Mutex
	objs    *shieldObjects
	cap     Capacity
	rcu     *rcuSync
	links   linkSet
	ctl     control
	rules   []lpm.Rule // the set in force, as applied; nil after adoption
	applied ApplyResult
	adopted bool
}

// New loads Shield with room for an initial set of the given size. Nothing
// is attached and the rule set is empty until Apply.
func New(cfg Config) (*Shield, error) {
	cfg.defaults()
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("possible cpus: %w", err)
	}
	s := &Shield{cfg: cfg, ncpu: ncpu, links: newLinkSet(cfg.PinRoot)}
	c, err := plan(0, 0, 0, 0, cfg.TrackedRules, ncpu, cfg.Budget)
	if err != nil {
		return nil, err
	}
	objs, err := loadObjects(cfg, ncpu, c, nil)
	if err != nil {
		return nil, err
	}
	s.objs, s.cap = objs, c
	s.ctl = control{Layout: layoutVersion}
	if err := objs.ShieldState.Put(uint32(0), s.ctl); err != nil {
		objs.Close()
		return nil, fmt.Errorf("init shield state: %w", err)
	}
	if s.counters, s.rcu, err = sideObjects(objs, cfg.Logger); err != nil {
		objs.Close()
		return nil, err
	}
	return s, nil
}

// sideObjects makes what a Shield needs beside its objects: the counters'
// own handles to objs' counter maps and the RCU sync maps.
func sideObjects(objs *shieldObjects, log *slog.Logger) (*Counters, *rcuSync, error) {
	c, err := newCounters(objs, log)
	if err != nil {
		return nil, nil, err
	}
	r, err := newRCUSync()
	if err != nil {
		c.close()
		return nil, nil, err
	}
	return c, r, nil
}

// managementConsts converts the management addresses to the program's
// constants.
func managementConsts(addrs []netip.Addr) (v4 [MaxManagement]uint32, n4 uint32, v6 [MaxManagement]key128, n6 uint32, err error) {
	for _, g := range addrs {
		g = g.Unmap()
		switch {
		case g.Is4():
			if n4 == MaxManagement {
				return v4, 0, v6, 0, fmt.Errorf("management addresses: more than %d IPv4 addresses", MaxManagement)
			}
			a := g.As4()
			v4[n4] = binary.NativeEndian.Uint32(a[:])
			n4++
		case g.Is6():
			if n6 == MaxManagement {
				return v4, 0, v6, 0, fmt.Errorf("management addresses: more than %d IPv6 addresses", MaxManagement)
			}
			a := g.As16()
			v6[n6] = key128{Hi: binary.BigEndian.Uint64(a[:8]), Lo: binary.BigEndian.Uint64(a[8:])}
			n6++
		default:
			return v4, 0, v6, 0, fmt.Errorf("management addresses: invalid address %v", g)
		}
	}
	return v4, n4, v6, n6, nil
}

// collectionSpec returns the Shield collection spec, checked against its
// allowlist and sized for c.
func collectionSpec(cfg Config, c Capacity) (*ebpf.CollectionSpec, error) {
	spec, err := loadShield()
	if err != nil {
		return nil, fmt.Errorf("load embedded shield: %w", err)
	}
	if _, err := bytecode.Check("shield", spec, Allow); err != nil {
		return nil, err
	}
	sizes := map[string]uint32{
		"v4_blocks": 2 * c.V4Blocks,
		"v6_keys":   2 * c.V6Ranges,
		"v6_vals":   2 * c.V6Ranges / valsPerElem,
		"rule_hits": c.Tracked,
	}
	for name, n := range sizes {
		spec.Maps[name].MaxEntries = n
	}
	v4, n4, v6, n6, err := managementConsts(cfg.Management)
	if err != nil {
		return nil, err
	}
	vars := map[string]any{
		"v4_gen_stride": c.V4Blocks,
		"v6_gen_stride": c.V6Ranges,
		"gw_v4":         v4,
		"gw_v4_count":   n4,
		"gw_v6":         v6,
		"gw_v6_count":   n6,
		"sample_gap_ns": uint64(cfg.SampleGap.Nanoseconds()),
	}
	for name, v := range vars {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	return spec, nil
}

// loadObjects creates maps and program for capacity c; replace supplies
// existing maps to reuse by name.
func loadObjects(cfg Config, ncpu int, c Capacity, replace map[string]*ebpf.Map) (*shieldObjects, error) {
	spec, err := collectionSpec(cfg, c)
	if err != nil {
		cfg.Audit.Record("load", "shield", err, nil)
		return nil, err
	}
	var objs shieldObjects
	err = spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: replace})
	details := map[string]any{"v4_blocks": c.V4Blocks, "v6_ranges": c.V6Ranges, "tracked_rules": c.Tracked, "map_bytes": c.MapBytes(ncpu)}
	if err != nil {
		err = fmt.Errorf("load shield: %w", err)
		cfg.Audit.Record("load", "shield", err, details)
		return nil, err
	}
	cfg.Audit.Record("load", "shield", nil, details)
	return &objs, nil
}

// Info describes a loaded Shield at one moment.
type Info struct {
	// Adopted says this Shield took over a pinned one (rather than loading
	// afresh); Applied then describes the set found in force.
	Adopted bool
	// Interfaces are those Shield is attached to.
	Interfaces []string
	// Management are the management addresses: those no rule can drop.
	Management []netip.Addr
	// Capacity is the capacity of one generation; MapBytes the memory of
	// all Shield maps, both generations.
	Capacity Capacity
	MapBytes uint64
	// Program is the XDP program (for test runs); a growth or a change of
	// the management addresses replaces it.
	Program *ebpf.Program
}

// Info describes the Shield now.
func (s *Shield) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Info{Adopted: s.adopted, Interfaces: s.links.names(), Management: slices.Clone(s.cfg.Management),
		Capacity: s.cap, MapBytes: s.cap.MapBytes(s.ncpu), Program: s.objs.XdpShield}
}

// Counters reads Shield's counters and samples; it needs no lock of the
// Shield and stays valid until Close.
func (s *Shield) Counters() *Counters { return s.counters }

// ApplyResult describes a policy swap.
type ApplyResult struct {
	Rules      int
	V4Ranges   int
	V6Ranges   int
	Generation uint32
	Serial     uint64
	DryRun     bool
	MapBytes   uint64
	// Digest names the set in force (SetID, hex).
	Digest   string
	Compile  time.Duration
	Swap     time.Duration
	Reloaded bool
	// Reused: the named set was already in force (found in the pinned
	// tables after a restart, or applied again): nothing was compiled or
	// swapped.
	Reused bool
}

// SetID names a rule set and mode. It is stored with the tables, so that a
// restarted agent that would apply the same set finds it in force (Holds)
// and adopts the tables instead of compiling and swapping them again.
type SetID [32]byte

// Apply makes rules the rule set in force, in one atomic step. On error the
// rule set in force is unchanged. The set is named by the digest of its
// rules and mode.
func (s *Shield) Apply(rules []lpm.Rule, dryRun bool) (ApplyResult, error) {
	return s.ApplyAs(rules, dryRun, SetID{})
}

// ApplyAs is Apply with the caller's name for the set (for example
// SetIDForList, known without compiling); the zero SetID means the digest
// of rules and mode. When the set in force already has that name, in the
// same mode and with as many rules, nothing is compiled or swapped
// (ApplyResult.Reused): a restarted agent re-applying its last policy over
// adopted tables costs a comparison. Rules must not be changed afterwards:
// Shield keeps the slice to name rules in RuleStats.
func (s *Shield) ApplyAs(rules []lpm.Rule, dryRun bool, id SetID) (ApplyResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != (SetID{}) && SetID(s.ctl.Digest) == id && s.ctl.Layout == layoutVersion &&
		(s.ctl.Flags&modeDryRun != 0) == dryRun && s.ctl.Rules == uint32(len(rules)) {
		s.rules = rules
		res := s.applied
		res.Rules, res.DryRun, res.Reused, res.Compile, res.Swap, res.Reloaded = len(rules), dryRun, true, 0, 0, false
		s.applied = res
		s.cfg.Logger.Info("shield policy already in force", "rules", res.Rules, "generation", res.Generation, "digest", res.Digest)
		return res, nil
	}
	res, err := s.apply(rules, dryRun, id)
	details := map[string]any{"rules": res.Rules, "v4_ranges": res.V4Ranges, "v6_ranges": res.V6Ranges,
		"generation": res.Generation, "serial": res.Serial, "dry_run": dryRun, "digest": res.Digest}
	s.cfg.Audit.Record("map_update", "shield policy", err, details)
	if err != nil {
		s.cfg.Logger.Error("shield policy refused", "err", err, "rules", len(rules))
		return res, err
	}
	s.cfg.Logger.Info("shield policy applied", "rules", res.Rules, "generation", res.Generation,
		"v4_ranges", res.V4Ranges, "v6_ranges", res.V6Ranges, "dry_run", dryRun,
		"compile", res.Compile, "swap", res.Swap)
	return res, nil
}

// SetIDForList names the set a list_ref policy applies: the list's digest
// (SHA-256, hex) and the mode.
func SetIDForList(listSHA256 string, dryRun bool) SetID {
	mode := "enforce"
	if dryRun {
		mode = "dry-run"
	}
	return sha256.Sum256([]byte("shield list " + listSHA256 + " " + mode))
}

// Holds reports whether the set in force was applied as id, by this
// process or by an earlier one whose pinned tables this one adopted.
func (s *Shield) Holds(id SetID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return id != SetID{} && SetID(s.ctl.Digest) == id && s.ctl.Layout == layoutVersion
}

func (s *Shield) apply(rules []lpm.Rule, dryRun bool, id SetID) (ApplyResult, error) {
	start := time.Now()
	res := ApplyResult{Rules: len(rules), DryRun: dryRun}
	if len(rules) > 1<<30 {
		return res, fmt.Errorf("%d rules: too many", len(rules))
	}
	if len(rules) >= largeSet {
		// Collect what reading the list left behind before compiling, so
		// that the heap's peak is the old and new sets plus the tables
		// rather than twice that (the collector's default target).
		runtime.GC()
	}
	tab, err := lpm.CompileRules(rules, verdictOf)
	if err != nil {
		return res, err
	}
	if id == (SetID{}) {
		id = digest(tab.Digest, dryRun)
	}
	res.Digest = hex.EncodeToString(id[:])
	res.V4Ranges, res.V6Ranges = tab.Ranges()
	res.Compile = time.Since(start)
	swapStart := time.Now()

	if !s.cap.Fits(len(tab.V4Blocks), res.V6Ranges) {
		c, err := plan(len(tab.V4Blocks), res.V6Ranges, tab.Prefixes4, tab.Prefixes6, s.cap.Tracked, s.ncpu, s.cfg.Budget)
		if err != nil {
			return res, err
		}
		if err := s.grow(c); err != nil {
			return res, err
		}
		res.Reloaded = true
	}
	gen := s.ctl.Gen ^ 1
	if err := writeTables(s.objs, s.cap, gen, tab); err != nil {
		return res, err
	}
	tab = nil // the tables are in the maps; let the copy go before pruning
	ctl := control{Gen: gen, Serial: s.ctl.Serial + 1, Layout: layoutVersion, Rules: uint32(len(rules)), Digest: id}
	if dryRun {
		ctl.Flags |= modeDryRun
	}
	if err := s.objs.ShieldState.Put(uint32(0), ctl); err != nil {
		return res, fmt.Errorf("switch generation: %w", err)
	}
	s.ctl = ctl
	s.rules = rules
	// From here the new set is in force. Wait until no packet can still be
	// reading the old generation before its tables are reused or the
	// counters of rules that left are removed.
	if err := s.rcu.wait(); err != nil {
		return res, err
	}
	if err := s.counters.prune(rules); err != nil {
		s.cfg.Logger.Warn("shield: remove counters of rules that left the set", "err", err)
	}
	res.Generation, res.Serial = gen, ctl.Serial
	res.MapBytes = s.cap.MapBytes(s.ncpu)
	res.Swap = time.Since(swapStart)
	s.applied = res
	if len(rules) >= largeSet {
		// The compiler's working arrays are garbage now; collecting them
		// here keeps the collector's next target at twice the sets, not
		// twice the compile's peak.
		runtime.GC()
	}
	return res, nil
}

// Applied returns the result of the last successful Apply.
func (s *Shield) Applied() ApplyResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

// digest names a set by its rules' digest (sorted prefixes with action and
// log-only flag) and the mode.
func digest(rules [32]byte, dryRun bool) SetID {
	mode := []byte("enforce")
	if dryRun {
		mode = []byte("dry-run")
	}
	return sha256.Sum256(append(rules[:], mode...))
}

func asBytes[T any](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	var z T
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(z)))
}

// writeTables copies tab into generation gen of the memory-mapped maps of
// objs, of capacity c.
func writeTables(objs *shieldObjects, c Capacity, gen uint32, tab *lpm.Tables) error {
	writes := []struct {
		m   *ebpf.Map
		off int64
		b   []byte
	}{
		{objs.V4Dir, int64(gen) * lpm.DirBuckets * v4DirBytes, asBytes(tab.V4Dir)},
		{objs.V6Dir, int64(gen) * lpm.DirBuckets * dirBytes, asBytes(tab.V6Dir)},
		{objs.V4Blocks, int64(gen) * int64(c.V4Blocks) * v4BlockBytes, asBytes(tab.V4Blocks)},
		{objs.V6Keys, int64(gen) * int64(c.V6Ranges) * v6KeyBytes, asBytes(tab.V6Keys)},
		{objs.V6Vals, int64(gen) * int64(c.V6Ranges) * valBytes, asBytes(tab.V6Vals)},
	}
	for _, w := range writes {
		if len(w.b) == 0 {
			continue
		}
		if err := copyToMap(w.m, w.off, w.b); err != nil {
			return fmt.Errorf("write table: %w", err)
		}
	}
	return nil
}

// grow replaces maps and program with larger ones, switching every attached
// interface atomically (link update). The generation in force is copied into
// the new maps first, so no packet ever meets an empty table; global counters and the
// sample ring and the rule counters are carried over as they are.
func (s *Shield) grow(c Capacity) error {
	keep := map[string]*ebpf.Map{
		"shield_stats":   s.objs.ShieldStats,
		"shield_samples": s.objs.ShieldSamples,
		"sample_last":    s.objs.SampleLast,
		"rule_hits":      s.objs.RuleHits,
	}
	objs, err := loadObjects(s.cfg, s.ncpu, c, keep)
	if err != nil {
		return err
	}
	old, oldCap := s.objs, s.cap
	s.objs, s.cap = objs, c
	fail := func(err error) error {
		s.objs, s.cap = old, oldCap
		objs.Close()
		return err
	}
	if err := copyLive(old, oldCap, objs, c, s.ctl.Gen); err != nil {
		return fail(err)
	}
	if err := objs.ShieldState.Put(uint32(0), s.ctl); err != nil {
		return fail(fmt.Errorf("init grown shield state: %w", err))
	}
	if iface, err := s.links.update(objs.XdpShield); err != nil {
		// Interfaces already switched keep running the new program on the
		// current rule set, which is correct; report.
		err = fmt.Errorf("switch %s to grown shield: %w", iface, err)
		s.cfg.Audit.Record("attach", "shield "+iface, err, nil)
		return err
	}
	if err := s.rcu.wait(); err != nil {
		return err
	}
	if err := pinObjects(s.cfg.PinRoot, s.cfg.Audit, s.objs); err != nil {
		s.cfg.Logger.Warn("shield: re-pin after grow", "err", err)
	}
	s.cfg.Audit.Record("replace", "shield", nil, map[string]any{"v4_blocks": c.V4Blocks, "v6_ranges": c.V6Ranges, "tracked_rules": c.Tracked, "links": len(s.links.m)})
	return old.Close()
}

// Close releases the loaded objects. Pinned objects stay in the kernel.
func (s *Shield) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := s.links.close()
	if s.objs != nil {
		errs = append(errs, s.objs.Close())
	}
	if s.rcu != nil {
		errs = append(errs, s.rcu.close()...)
	}
	if s.counters != nil {
		errs = append(errs, s.counters.close()...)
	}
	return errors.Join(errs...)
}

// copyLive copies generation gen of the tables from one set of maps to
// another of larger capacity. Range indices in the directory are relative to
// the generation's base, so the copy stays valid at the new stride.
func copyLive(from *shieldObjects, fc Capacity, to *shieldObjects, tc Capacity, gen uint32) error {
	regions := []struct {
		src, dst       *ebpf.Map
		srcOff, dstOff int64
		n              int64
	}{
		{from.V4Dir, to.V4Dir, int64(gen) * lpm.DirBuckets * v4DirBytes, int64(gen) * lpm.DirBuckets * v4DirBytes, lpm.DirBuckets * v4DirBytes},
		{from.V6Dir, to.V6Dir, int64(gen) * lpm.DirBuckets * dirBytes, int64(gen) * lpm.DirBuckets * dirBytes, lpm.DirBuckets * dirBytes},
		{from.V4Blocks, to.V4Blocks, int64(gen) * int64(fc.V4Blocks) * v4BlockBytes, int64(gen) * int64(tc.V4Blocks) * v4BlockBytes, int64(fc.V4Blocks) * v4BlockBytes},
		{from.V6Keys, to.V6Keys, int64(gen) * int64(fc.V6Ranges) * v6KeyBytes, int64(gen) * int64(tc.V6Ranges) * v6KeyBytes, int64(fc.V6Ranges) * v6KeyBytes},
		{from.V6Vals, to.V6Vals, int64(gen) * int64(fc.V6Ranges) * valBytes, int64(gen) * int64(tc.V6Ranges) * valBytes, int64(fc.V6Ranges) * valBytes},
	}
	for _, r := range regions {
		if r.n == 0 {
			continue
		}
		if err := copyBetweenMaps(r.src, r.srcOff, r.dst, r.dstOff, r.n); err != nil {
			return fmt.Errorf("copy live tables: %w", err)
		}
	}
	return nil
}

// Tables are Shield's lookup maps, by their name in the object, and where
// the generation in force lies in them: what a program that searches
// exactly what Shield searches (the benchmark's) loads against.
type Tables struct {
	Maps map[string]*ebpf.Map
	// Gen is the generation in force; V4Stride and V6Stride are the
	// entries of one generation in the IPv4 block and IPv6 range arrays.
	Gen                uint32
	V4Stride, V6Stride uint32
}

// WithTables calls fn with Shield's tables while no apply can change them.
func (s *Shield) WithTables(fn func(Tables) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fn(Tables{
		Maps: map[string]*ebpf.Map{
			"shield_state": s.objs.ShieldState, "rule_hits": s.objs.RuleHits,
			"v4_dir": s.objs.V4Dir, "v4_blocks": s.objs.V4Blocks,
			"v6_dir": s.objs.V6Dir, "v6_keys": s.objs.V6Keys, "v6_vals": s.objs.V6Vals,
		},
		Gen: s.ctl.Gen, V4Stride: s.cap.V4Blocks, V6Stride: s.cap.V6Ranges,
	})
}

// RuleOf is the rule a verdict word names for a packet from src, false when
// the verdict is no match.
func RuleOf(verdict uint32, src netip.Addr) (lpm.Rule, bool) { return ruleFor(verdict, src) }
