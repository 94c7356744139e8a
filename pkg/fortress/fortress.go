//go:build linux

package fortress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/rlimit"

	"github.com/carverauto/fortress/internal/auditlog"
	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/lpm"
	"github.com/carverauto/fortress/internal/pins"
	"github.com/carverauto/fortress/internal/sentinel"
	"github.com/carverauto/fortress/internal/shield"
	"github.com/carverauto/fortress/internal/statedir"
)

// openShield adopts pinned Shield state or loads a fresh Shield.
var openShield = shield.Open

// Fortress is a running instance: Shield, Sentinel, policy intake, audit
// log, counters and events.
type Fortress struct {
	cfg      Config
	log      *slog.Logger
	audit    *auditRecorder
	auditLog *auditlog.Log
	auditErr string
	verifier *bundle.Verifier
	lists    listCache
	kernel   KernelReport
	started  time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	// Lock order: applyMu, then shMu, then the verifier's lock (held by
	// Accept while it calls enforce), then mu. mu and counters.mu are
	// leaves: nothing else is locked or called out to while either is
	// held, so Status (which takes only leaves, and reads the verifier's
	// atomically published last bundle) never waits for an apply.

	// applyMu serialises policy changes (bundles, gateway switches).
	applyMu sync.Mutex

	// shMu guards the Shield pointer: readers hold it shared while they
	// use the Shield, Stop exclusively.
	shMu sync.RWMutex
	sh   *shield.Shield

	sen *sentinel.Sentinel

	mu            sync.Mutex
	shieldLoadErr string
	shieldAdopted bool
	ifaces        map[string]*InterfaceStatus
	gateways      []netip.Addr
	inForce       *policy
	policyInForce bool
	policyNotes   []string
	appliedAt     time.Time
	lastErr       string
	lastErrAt     time.Time
	applied       shield.ApplyResult
	senReason     string
	senProtected  []string
	senWatched    []string
	// removed says when and by which token Fortress was removed.
	removed string

	events     chan Event
	delivered  atomic.Uint64
	dropped    atomic.Uint64
	kernelLost atomic.Uint64

	counters counterState
}

// Start brings Fortress up: audit log, policy verifier, Sentinel, Shield
// (adopting pinned state), the last applied policy, interfaces. Shield
// failures do not fail Start (Status reports them); configuration errors,
// an unusable trust setup or a last-applied bundle that no longer verifies
// do.
func Start(ctx context.Context, cfg Config) (*Fortress, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	f := &Fortress{
		cfg:     cfg,
		log:     cfg.Logger,
		started: time.Now(),
		ifaces:  map[string]*InterfaceStatus{},
		events:  make(chan Event, cfg.EventBuffer),
		lists:   listCache{dir: filepath.Join(cfg.StateDir, statedir.Lists), fetch: cfg.FetchList},
	}
	f.counters.init()
	f.ctx, f.cancel = context.WithCancel(context.WithoutCancel(ctx))

	// Audit first: everything after it changes kernel state. A log that
	// cannot be opened (or fails verification) is reported loudly, but
	// protection is not given up for it.
	f.audit = &auditRecorder{logger: f.log}
	if l, err := auditlog.Open(cfg.AuditLog); err != nil {
		f.auditErr = err.Error()
		f.critical("agent", "audit log unavailable, kernel changes are not recorded: "+err.Error())
	} else {
		f.auditLog, f.audit.log = l, l
	}

	v, err := bundle.NewVerifier(bundle.Config{Keys: cfg.TrustKeys, AgentID: cfg.AgentID, StateDir: cfg.StateDir})
	if err != nil {
		f.closeAudit()
		return nil, fmt.Errorf("fortress: %w", err)
	}
	f.verifier = v

	if cfg.Kernel != nil {
		f.kernel = *cfg.Kernel
	} else {
		f.kernel = ProbeKernel()
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		f.log.Warn("remove memlock limit", "err", err)
	}

	// The last applied policy decides gateways and extra Sentinel paths,
	// so convert it before either layer loads.
	var last *policy
	var lastErr error
	if b := v.Last(); b != nil {
		last, lastErr = convert(f.ctx, b, deferList)
		if lastErr != nil {
			f.log.Error("last applied bundle cannot be converted", "version", b.Version, "err", lastErr)
		}
	}

	f.startSentinel(last)
	f.startShield(last)
	// The last policy's list is read only when Shield does not hold its
	// set already (pinned tables adopted): a restart then neither reads
	// nor compiles a large list.
	if last != nil && last.list != nil && (f.sh == nil || !f.sh.Holds(last.shieldSetID())) {
		if lastErr = last.loadList(f.ctx, f.lists.get); lastErr != nil {
			f.log.Error("last applied bundle cannot be converted", "version", last.version, "err", lastErr)
		}
	}

	if b := v.Last(); b != nil {
		_, err := v.Reapply(func(*bundle.Bundle) error {
			if lastErr != nil {
				return lastErr
			}
			_, undo, err := f.enforce(last)
			_ = undo
			return err
		})
		if err != nil {
			f.setLastErr(err)
			f.critical("agent", "last applied policy not re-applied: "+err.Error())
		} else {
			f.log.Info("policy re-applied", "version", b.Version, "digest", b.Digest)
		}
	}

	f.attachAll()
	f.guardShield()

	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.pollCounters()
	}()
	if f.sen != nil {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.readSentinel()
		}()
	}
	if f.sh != nil {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.readSamples()
		}()
	}
	st := f.Status()
	f.log.Info("fortress started", "agent", cfg.AgentID, "shield", st.Shield.State, "shield_reason", st.Shield.Reason,
		"sentinel", st.Sentinel.State, "sentinel_reason", st.Sentinel.Reason, "policy_version", st.Policy.Version)
	return f, nil
}

// startSentinel loads or adopts Sentinel where BPF LSM really works.
func (f *Fortress) startSentinel(last *policy) {
	sc := f.cfg.Sentinel
	if sc.Disabled {
		f.senReason = "disabled by configuration: nothing is protected"
		return
	}
	if !f.kernel.Checks["lsm"] {
		why := f.kernel.Reasons["lsm"]
		if why == "" {
			why = "BPF LSM not usable on this kernel"
		}
		f.senReason = "BPF LSM unusable, nothing is protected: " + why
		f.critical("sentinel", f.senReason)
		return
	}
	bin := sc.AgentBinary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			f.senReason = "cannot find the agent binary: " + err.Error()
			f.critical("sentinel", f.senReason)
			return
		}
		bin = exe
	}
	protect := slices.Clone(sc.Protect)
	protect = append(protect, f.cfg.StateDir, filepath.Dir(f.cfg.AuditLog))
	watch := slices.Clone(sc.Watch)
	if last != nil && last.sentinel != nil {
		protect = append(protect, last.sentinel.Protect...)
		watch = append(watch, last.sentinel.Watch...)
	}
	protect, watch = f.existing("protect", protect), f.existing("watch", watch)
	mode := sentinel.Enforce
	if sc.Audit {
		mode = sentinel.Audit
	}
	sc = releaseDefaults(sc, bin)
	s, err := sentinel.Start(sentinel.Config{
		PinRoot: pins.Root(f.cfg.PinRoot), AgentBinary: bin, UpdaterBinary: sc.UpdaterBinary,
		Releases:  sentinel.Releases{Dir: sc.ReleaseDir, Binary: sc.ReleaseBinary, Seed: sc.SeedBinary},
		ConfigDir: sc.ConfigDir, StateDirs: protect, Watched: watch, Mode: mode,
		Recorder: f.audit, Log: f.log,
	})
	if err != nil {
		if errors.Is(err, sentinel.ErrUnavailable) {
			f.senReason = "BPF LSM unusable, nothing is protected: " + err.Error()
		} else {
			// Whatever was pinned before stays attached; this process just
			// cannot drive it. Say so, never claim protection.
			f.senReason = "sentinel failed to start: " + err.Error()
		}
		f.critical("sentinel", f.senReason)
		return
	}
	f.sen = s
	f.senProtected, f.senWatched = append([]string{sc.ConfigDir}, protect...), watch
}

// existing sorts and de-duplicates paths and drops those that do not
// exist (loudly): one missing path must not leave everything unprotected.
func (f *Fortress) existing(what string, paths []string) []string {
	slices.Sort(paths)
	paths = slices.Compact(paths)
	out := paths[:0]
	for _, p := range paths {
		if _, err := os.Lstat(p); err != nil {
			f.critical("sentinel", fmt.Sprintf("cannot %s %s: %v", what, p, err))
			continue
		}
		out = append(out, p)
	}
	return out
}

// startShield adopts or loads Shield. Failure leaves Shield degraded.
func (f *Fortress) startShield(last *policy) {
	for _, ifc := range f.cfg.Interfaces {
		f.ifaces[ifc.Name] = &InterfaceStatus{Name: ifc.Name, Mode: string(ifc.Mode), Netns: ifc.Netns, Configured: true}
	}
	pinned := false
	if _, err := os.Stat(pins.Root(f.cfg.PinRoot).Path(pins.Shield, "xdp_shield")); err == nil {
		pinned = true
	}
	if len(f.cfg.Interfaces) == 0 && !pinned {
		return // disabled
	}
	var fromBundle []netip.Addr
	if last != nil {
		fromBundle = last.gateways
	}
	gws, err := mergeGateways(f.cfg.Gateways, fromBundle)
	if err != nil {
		f.log.Error("gateways of the last bundle ignored", "err", err)
		gws = f.cfg.Gateways
	}
	sh, err := openShield(f.shieldConfig(gws))
	if err != nil {
		f.shieldLoadErr = err.Error()
		f.critical("shield", "shield degraded, traffic is not filtered: "+err.Error())
		return
	}
	f.sh, f.gateways, f.shieldAdopted = sh, gws, sh.Adopted()
	if sh.Adopted() {
		// The pinned counters kept counting; only what was not yet
		// reported before the restart is new.
		if err := f.counters.load(f.reportedPath()); err != nil {
			f.log.Warn("shield: counters reported before the restart are unknown; the first read is reported whole", "err", err)
		}
	}
	for _, name := range sh.Interfaces() {
		st, ok := f.ifaces[name]
		if !ok {
			st = &InterfaceStatus{Name: name}
			f.ifaces[name] = st
			f.log.Warn("shield: adopted interface is not configured; it stays attached", "iface", name)
		}
		st.Attached = true
	}
}

func (f *Fortress) shieldConfig(gws []netip.Addr) shield.Config {
	return shield.Config{Gateways: gws, Budget: f.cfg.ShieldBudget, PinRoot: pins.Root(f.cfg.PinRoot),
		Audit: f.audit, Logger: f.log}
}

// attachAll attaches Shield to every configured interface not yet attached
// (an adopted link is kept as it is).
func (f *Fortress) attachAll() {
	f.shMu.RLock()
	defer f.shMu.RUnlock()
	if f.sh == nil {
		return
	}
	if err := pins.Root(f.cfg.PinRoot).Ensure(pins.Shield); err != nil {
		f.log.Warn("shield pin dir", "err", err)
	}
	for _, ifc := range f.cfg.Interfaces {
		f.mu.Lock()
		st := f.ifaces[ifc.Name]
		attached := st.Attached
		f.mu.Unlock()
		if attached {
			continue
		}
		mode := shield.Native
		if ifc.Mode == Generic {
			mode = shield.Generic
		}
		err := inNetns(ifc.Netns, func() error { return f.sh.Attach(ifc.Name, mode) })
		f.mu.Lock()
		if err != nil {
			st.Error = err.Error()
		} else {
			st.Attached, st.Error = true, ""
		}
		f.mu.Unlock()
		if err != nil {
			f.critical("shield", fmt.Sprintf("shield degraded on %s, its traffic is not filtered: %v", ifc.Name, err))
		}
	}
}

// guardShield makes Shield's pinned maps and links writable only by the
// agent (Sentinel's map and link guard), where Sentinel runs.
func (f *Fortress) guardShield() {
	if f.sen == nil {
		return
	}
	if err := guardPinned(f.sen, pins.Root(f.cfg.PinRoot).Dir(pins.Shield)); err != nil {
		f.critical("sentinel", "cannot guard shield maps and links: "+err.Error())
	}
}

// Stop stops the background work and releases file descriptors. Pinned
// programs stay attached and keep enforcing.
func (f *Fortress) Stop() {
	f.once.Do(func() {
		f.cancel()
		f.wg.Wait()
		f.shMu.Lock()
		if f.sh != nil {
			f.sh.Close()
		}
		f.shMu.Unlock()
		if f.sen != nil {
			f.sen.Close()
		}
		f.closeAudit()
		f.log.Info("fortress stopped; pinned programs keep enforcing")
	})
}

func (f *Fortress) closeAudit() {
	if f.auditLog != nil {
		f.auditLog.Close()
	}
}

// Events delivers FIM and violation events from Sentinel, dry-run samples
// from Shield and critical events. When the channel is full, events are
// dropped and counted in Status.
func (f *Fortress) Events() <-chan Event { return f.events }

func (f *Fortress) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	select {
	case f.events <- e:
		f.delivered.Add(1)
	default:
		f.dropped.Add(1)
	}
}

func (f *Fortress) critical(layer, detail string) {
	f.log.Error("fortress critical", "layer", layer, "detail", detail)
	f.emit(Event{Kind: KindCritical, Severity: SeverityCritical, Layer: layer, Detail: detail})
}

func (f *Fortress) setLastErr(err error) {
	f.mu.Lock()
	f.lastErr, f.lastErrAt = err.Error(), time.Now()
	f.mu.Unlock()
}

// ApplyBundle verifies a signed bundle (signature, target, version above the
// last applied), converts it completely and applies it: Shield's rule set in
// one atomic swap, then Sentinel's paths. On any error the policy in force
// is unchanged and the error names the problem; bundle.Reason-style codes
// are available through RefusalReason.
func (f *Fortress) ApplyBundle(raw []byte) (Ack, error) {
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	if f.isRemoved() {
		return Ack{}, ErrRemoved
	}
	var ack Ack
	var undo func()
	start := time.Now()
	b, err := f.verifier.Accept(raw, func(b *bundle.Bundle) error {
		// Progress for large policies: verified, converted, applied.
		f.log.Info("bundle verified, converting", "version", b.Version, "bytes", len(raw), "took", time.Since(start))
		p, err := convert(f.ctx, b, f.lists.get)
		if err != nil {
			return err
		}
		f.log.Info("bundle converted, applying", "version", b.Version, "rules", len(p.rules), "took", time.Since(start))
		ack, undo, err = f.enforce(p)
		return err
	})
	if err != nil {
		if undo != nil {
			// Applied, but the verifier could not record it: put the
			// previous policy back so that kernel and state agree.
			undo()
		}
		f.setLastErr(err)
		f.audit.Record(auditlog.ActionPolicySwap, "bundle", err, map[string]any{"reason": bundle.Reason(err)})
		f.log.Warn("bundle refused", "reason", bundle.Reason(err), "err", err)
		return Ack{}, err
	}
	f.audit.Record(auditlog.ActionPolicySwap, "bundle", nil, map[string]any{
		"version": b.Version, "digest": "sha256:" + b.Digest, "key_id": b.KeyID, "rules": ack.Rules,
		"shield_mode": ack.ShieldMode, "generation": ack.Generation,
	})
	if f.inForceList() != "" {
		f.lists.prune(f.inForceList())
	}
	// A larger rule set may have moved Shield to new maps: guard them too.
	f.guardShield()
	f.log.Info("bundle applied", "version", b.Version, "rules", ack.Rules, "mode", ack.ShieldMode, "took", time.Since(start),
		"notes", strings.Join(ack.Notes, "; "))
	return ack, nil
}

// RefusalReason is a short stable code for an ApplyBundle error
// ("bad_signature", "rollback", ...; "error" for other failures).
func RefusalReason(err error) string { return bundle.Reason(err) }

func (f *Fortress) inForceList() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inForce == nil {
		return ""
	}
	return f.inForce.listRef
}

// enforce applies p to the layers. On error everything it changed is put
// back. undo reverts a successful enforce.
func (f *Fortress) enforce(p *policy) (Ack, func(), error) {
	ack := Ack{Version: p.version, Digest: p.digest, KeyID: p.keyID, Rules: len(p.rules), Duplicates: p.duplicates,
		ShieldMode: bundle.ShieldEnforce}
	if p.dryRun {
		ack.ShieldMode = bundle.ShieldDryRun
	}
	var notes []string
	var undos []func()
	undoAll := func() {
		for i := len(undos) - 1; i >= 0; i-- {
			undos[i]()
		}
	}

	// Check everything that can be checked before touching the kernel.
	want, err := mergeGateways(f.cfg.Gateways, p.gateways)
	if err != nil {
		return ack, nil, fmt.Errorf("payload.%w", err)
	}
	if p.sentinel != nil && f.sen != nil {
		for i, path := range p.sentinel.Protect {
			if _, err := os.Lstat(path); err != nil {
				return ack, nil, fmt.Errorf("payload.sentinel.protect[%d]: %w", i, err)
			}
		}
		for i, path := range p.sentinel.Watch {
			if _, err := os.Stat(path); err != nil {
				return ack, nil, fmt.Errorf("payload.sentinel.watch[%d]: %w", i, err)
			}
		}
	}

	f.mu.Lock()
	prev := f.inForce
	f.mu.Unlock()

	f.shMu.RLock()
	sh := f.sh
	f.shMu.RUnlock()
	if sh != nil {
		if !sameAddrs(want, f.currentGateways()) {
			old := f.currentGateways()
			if err := f.switchGateways(want); err != nil {
				return ack, nil, fmt.Errorf("payload.gateways: %w", err)
			}
			undos = append(undos, func() {
				if err := f.switchGateways(old); err != nil {
					f.critical("shield", "gateways not restored after a failed policy: "+err.Error())
				}
			})
		}
		canUndo := true
		if prev != nil && prev.list != nil {
			// Adopted at start without reading its list: read it now, so
			// that it can be put back if this policy is undone.
			if err := prev.loadList(f.ctx, f.lists.get); err != nil {
				canUndo = false
				f.log.Warn("shield: the set in force cannot be restored if this policy is undone", "err", err)
			}
		}
		f.shMu.RLock()
		var prevRules []lpm.Rule
		prevDry := false
		var prevID shield.SetID
		if prev != nil {
			prevRules, prevDry, prevID = prev.rules, prev.dryRun, prev.shieldSetID()
		} else if st, err := f.sh.RuleStats(); err == nil {
			for _, r := range st {
				prevRules = append(prevRules, r.Rule)
			}
		}
		// A list policy already in force (pinned tables adopted after a
		// restart) is not compiled or swapped again; with its list unread
		// (deferred at start) the set in force is it.
		var res shield.ApplyResult
		var err error
		if p.list != nil {
			res = f.sh.Applied()
			ack.Rules = res.Rules
		} else {
			res, err = f.sh.ApplyAs(p.rules, p.dryRun, p.shieldSetID())
		}
		f.shMu.RUnlock()
		if err != nil {
			undoAll()
			return ack, nil, fmt.Errorf("shield: %w", err)
		}
		undos = append(undos, func() {
			if !canUndo {
				f.critical("shield", "previous rule set not restored: its list could not be read")
				return
			}
			f.shMu.RLock()
			defer f.shMu.RUnlock()
			if f.sh == nil {
				return
			}
			if _, err := f.sh.ApplyAs(prevRules, prevDry, prevID); err != nil {
				f.critical("shield", "previous rule set not restored: "+err.Error())
			}
		})
		if res.Reloaded {
			f.guardShield()
		}
		ack.Generation = res.Generation
		ack.Compile, ack.Swap = res.Compile.String(), res.Swap.String()
		f.mu.Lock()
		f.applied = res
		f.mu.Unlock()
	} else {
		notes = append(notes, "shield degraded: the rule set is recorded and applies once shield loads")
		f.mu.Lock()
		f.gateways = want
		f.mu.Unlock()
	}

	if s := p.sentinel; s != nil {
		if f.sen == nil {
			notes = append(notes, "sentinel unavailable: its section is recorded but nothing is protected")
		} else {
			for i, path := range s.Protect {
				if err := f.sen.Protect(path, sentinel.RoleAgent); err != nil {
					// Paths protected so far stay protected (fail
					// closed); Shield goes back to its previous set.
					undoAll()
					return ack, nil, fmt.Errorf("payload.sentinel.protect[%d]: %w", i, err)
				}
			}
			if s.Mode == bundle.SentinelAudit {
				notes = append(notes, "sentinel stays in enforce mode: a bundle cannot switch it to audit (use a maintenance token)")
			}
			for i, w := range s.Watch {
				if err := f.sen.Watch(w); err != nil {
					undoAll()
					return ack, nil, fmt.Errorf("payload.sentinel.watch[%d]: %w", i, err)
				}
			}
			f.mu.Lock()
			for _, w := range s.Watch {
				if !slices.Contains(f.senWatched, w) {
					f.senWatched = append(f.senWatched, w)
				}
			}
			for _, pth := range s.Protect {
				if !slices.Contains(f.senProtected, pth) {
					f.senProtected = append(f.senProtected, pth)
				}
			}
			f.mu.Unlock()
		}
	}

	ack.Notes = notes
	f.mu.Lock()
	f.inForce, f.policyInForce, f.policyNotes, f.appliedAt = p, true, notes, time.Now()
	f.mu.Unlock()
	return ack, func() {
		undoAll()
		f.mu.Lock()
		f.inForce = prev
		f.mu.Unlock()
	}, nil
}

func (f *Fortress) currentGateways() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.gateways)
}

// switchGateways changes the addresses Shield never drops. They are
// load-time constants, so Shield loads a new program over the same maps and
// swaps it in through every link: filtering never pauses, and the rule set
// and counters stay.
func (f *Fortress) switchGateways(gws []netip.Addr) error {
	f.shMu.RLock()
	defer f.shMu.RUnlock()
	if f.sh == nil {
		return errors.New("shield not loaded")
	}
	if err := f.sh.SetGateways(gws); err != nil {
		return fmt.Errorf("switch shield gateways: %w", err)
	}
	f.mu.Lock()
	f.gateways = slices.Clone(gws)
	f.mu.Unlock()
	f.log.Info("shield gateways switched", "gateways", gws)
	return nil
}

// Status reports the state of every layer, never claiming protection that
// is not in force.
func (f *Fortress) Status() Status {
	// Everything owned elsewhere is read before mu is taken: mu is a leaf.
	snap := f.counters.snapshot()
	version := f.verifier.LastVersion()
	auditLost, auditLastErr := f.audit.failures.Load(), f.audit.lastError()
	f.mu.Lock()
	sen := f.sen
	var ks sentinel.Status
	if sen != nil && f.removed == "" {
		// The Sentinel pointer only changes under applyMu (removal); its
		// Status takes Sentinel's own leaf lock, never ours.
		f.mu.Unlock()
		ks = sen.Status()
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	st := Status{AgentID: f.cfg.AgentID, AgentVersion: f.cfg.AgentVersion, Started: f.started, Kernel: f.kernel.Release}

	// Shield.
	ss := &st.Shield
	ss.Adopted = f.shieldAdopted
	for _, g := range f.gateways {
		ss.Gateways = append(ss.Gateways, g.String())
	}
	names := make([]string, 0, len(f.ifaces))
	for n := range f.ifaces {
		names = append(names, n)
	}
	slices.Sort(names)
	var failed []string
	attached := 0
	for _, n := range names {
		is := *f.ifaces[n]
		if is.Attached {
			attached++
		} else if is.Configured {
			failed = append(failed, fmt.Sprintf("%s: %s", n, is.Error))
		}
		ss.Interfaces = append(ss.Interfaces, is)
	}
	ss.Rules, ss.Generation, ss.Digest = f.applied.Rules, f.applied.Generation, f.applied.Digest
	ss.MapBytes = snap.mapBytes
	ss.Totals = snap.totals
	dryRun := f.inForce != nil && f.inForce.dryRun
	switch {
	case f.removed != "":
		ss.State, ss.Reason = ShieldRemoved, f.removed
	case f.shieldLoadErr != "":
		ss.State, ss.Reason = ShieldDegraded, "shield not loaded, traffic is not filtered: "+f.shieldLoadErr
	case len(f.ifaces) == 0:
		ss.State, ss.Reason = ShieldDisabled, "no interfaces configured"
	case len(failed) > 0:
		ss.State, ss.Reason = ShieldDegraded, "not attached, traffic there is not filtered: "+strings.Join(failed, "; ")
	case dryRun:
		ss.State, ss.Reason = ShieldDryRun, "rules count and sample but drop nothing"
	default:
		ss.State = ShieldEnforcing
		if f.inForce == nil && !f.shieldAdopted {
			ss.Reason = "attached; no policy applied yet"
		}
	}

	// Sentinel.
	sn := &st.Sentinel
	if f.removed != "" {
		sn.State, sn.Reason = SentinelRemoved, f.removed
	} else if f.sen == nil || sen != f.sen {
		sn.State, sn.Reason = SentinelUnavailable, f.senReason
	} else {
		sn.Adopted, sn.Programs, sn.Notes, sn.Critical = ks.Adopted, ks.Programs, ks.Notes, ks.Critical
		sn.Denied, sn.Audited, sn.Lost = ks.Stats.Denied, ks.Stats.Audited, ks.Stats.Lost
		sn.RolesRefused = ks.Roles.Refused
		sn.AuditEnd = ks.AuditEnd
		sn.Protected, sn.Watched = slices.Clone(f.senProtected), slices.Clone(f.senWatched)
		switch {
		case ks.Enforcing:
			sn.State = SentinelEnforcing
		case ks.Mode == "audit" && len(ks.Programs) > 0:
			sn.State, sn.Reason = SentinelAudit, "violations are reported, not refused"
		default:
			sn.State, sn.Reason = SentinelUnavailable, "no sentinel program attached"
		}
		if len(ks.Critical) > 0 && sn.Reason == "" {
			sn.Reason = strings.Join(ks.Critical, "; ")
		}
	}

	// Policy.
	pl := &st.Policy
	pl.Version = version
	pl.InForce = f.policyInForce
	if f.inForce != nil {
		pl.Digest, pl.KeyID = f.inForce.digest, f.inForce.keyID
	}
	pl.AppliedAt, pl.Notes = f.appliedAt, slices.Clone(f.policyNotes)
	pl.LastError, pl.LastErrorAt = f.lastErr, f.lastErrAt

	// Audit log.
	st.Audit = AuditStatus{Path: f.cfg.AuditLog, Lost: auditLost}
	st.Audit.OK = f.auditLog != nil && st.Audit.Lost == 0
	switch {
	case f.auditErr != "":
		st.Audit.Reason = f.auditErr
	case st.Audit.Lost > 0:
		st.Audit.Reason = auditLastErr
	}

	st.Events = EventStats{Delivered: f.delivered.Load(), Dropped: f.dropped.Load(), KernelLost: f.kernelLost.Load()}

	if ss.State == ShieldDegraded || ss.State == ShieldRemoved {
		st.Degraded = append(st.Degraded, "shield: "+ss.Reason)
	}
	if sn.State != SentinelEnforcing {
		st.Degraded = append(st.Degraded, "sentinel: "+sn.State+": "+sn.Reason)
	}
	if !st.Audit.OK {
		st.Degraded = append(st.Degraded, "audit log: "+st.Audit.Reason)
	}
	if pl.Version > 0 && !pl.InForce {
		st.Degraded = append(st.Degraded, "policy: version "+fmt.Sprint(pl.Version)+" not in force: "+pl.LastError)
	}
	return st
}
