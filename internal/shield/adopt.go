package shield

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/carverauto/fortress/internal/pins"
)

// tableMaps are the pinned maps a Shield is made of.
// The first two tell the layout.
var tableMaps = []string{"shield_state", "rule_hits", "shield_stats", "shield_samples",
	"v4_dir", "v4_blocks", "v6_dir", "v6_keys", "v6_vals"}

// ErrPinnedLayout says the pinned Shield maps have another layout than this
// release's (an older release's per-CPU counters by slot, for example).
var ErrPinnedLayout = errors.New("pinned shield maps have another layout")

// Open returns a Shield for cfg. When cfg.PinRoot holds a pinned Shield, it
// is adopted: its maps (rule set, counters) and links stay as they are, so
// filtering never stops across an agent restart. The pinned program is
// checked against the embedded one (same instructions and same load-time
// settings, such as the management addresses); if it differs, it is replaced atomically
// on every link. Without pins, Open loads a fresh Shield and pins it.
func Open(cfg Config) (*Shield, error) {
	cfg.defaults()
	if cfg.PinRoot != "" {
		if _, err := os.Stat(cfg.PinRoot.Path(pins.Shield, programPin)); err == nil {
			s, err := adopt(cfg)
			cfg.Audit.Record("adopt", "shield", err, nil)
			if errors.Is(err, ErrPinnedLayout) {
				return migrate(cfg, err)
			}
			return s, err
		}
	}
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := pinObjects(cfg.PinRoot, cfg.Audit, s.objs); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func adopt(cfg Config) (_ *Shield, err error) {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("possible cpus: %w", err)
	}
	s := &Shield{cfg: cfg, ncpu: ncpu, links: newLinkSet(cfg.PinRoot)}
	maps := map[string]*ebpf.Map{}
	defer func() {
		for _, m := range maps {
			m.Close()
		}
		if err != nil {
			s.links.close()
		}
	}()
	for _, name := range tableMaps {
		m, err := ebpf.LoadPinnedMap(cfg.PinRoot.Path(pins.Shield, name), nil)
		if errors.Is(err, os.ErrNotExist) && name == "rule_hits" {
			return nil, fmt.Errorf("%w: no rule_hits map (an older release's pins)", ErrPinnedLayout)
		}
		if err != nil {
			return nil, fmt.Errorf("adopt shield map %s: %w", name, err)
		}
		maps[name] = m
		if vs := m.ValueSize(); name == "shield_state" && vs != controlBytes {
			return nil, fmt.Errorf("%w: shield_state holds %d bytes, this release %d", ErrPinnedLayout, vs, controlBytes)
		}
	}
	var ctl control
	if err := maps["shield_state"].Lookup(uint32(0), &ctl); err != nil {
		return nil, fmt.Errorf("adopt shield state: %w", err)
	}
	if ctl.Layout != layoutVersion {
		return nil, fmt.Errorf("%w: layout %d, this release %d", ErrPinnedLayout, ctl.Layout, layoutVersion)
	}
	s.cap = Capacity{
		V4Blocks: maps["v4_blocks"].MaxEntries() / 2,
		V6Ranges: maps["v6_keys"].MaxEntries() / 2,
		Tracked:  maps["rule_hits"].MaxEntries(),
	}
	// Load the embedded program over the pinned maps; the map specs must be
	// compatible, which also checks the layout of every pinned map.
	objs, err := loadObjects(cfg, ncpu, s.cap, maps)
	if err != nil {
		return nil, fmt.Errorf("adopt shield: pinned maps do not fit the embedded program: %w", err)
	}
	s.objs = objs
	if err := s.objs.ShieldState.Lookup(uint32(0), &s.ctl); err != nil {
		objs.Close()
		return nil, fmt.Errorf("adopt shield state: %w", err)
	}
	if s.counters, s.rcu, err = sideObjects(objs, cfg.Logger); err != nil {
		objs.Close()
		return nil, err
	}
	same, why, err := sameProgram(cfg.PinRoot.Path(pins.Shield, programPin), objs.XdpShield)
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.links.adopt(); err != nil {
		s.Close()
		return nil, err
	}
	if !same {
		// Not the embedded program (another build, other management addresses, or
		// tampering): switch every link to the embedded one in one step.
		cfg.Logger.Warn("shield: pinned program differs from the embedded one; replacing it", "reason", why)
		if iface, err := s.links.update(objs.XdpShield); err != nil {
			s.Close()
			return nil, fmt.Errorf("replace pinned shield program on %s: %w", iface, err)
		}
		if err := pinReplace(objs.XdpShield, cfg.PinRoot.Path(pins.Shield, programPin)); err != nil {
			s.Close()
			return nil, err
		}
		cfg.Audit.Record("replace", "shield xdp_shield", nil, map[string]any{"reason": why, "links": len(s.links.m)})
	}
	s.adopted = true
	s.applied = ApplyResult{Rules: int(s.ctl.Rules), Generation: s.ctl.Gen, Serial: s.ctl.Serial,
		DryRun: s.ctl.Flags&modeDryRun != 0, MapBytes: s.cap.MapBytes(s.ncpu), Digest: hex.EncodeToString(s.ctl.Digest[:])}
	cfg.Logger.Info("shield adopted", "links", len(s.links.m), "rules", s.ctl.Rules,
		"generation", s.ctl.Gen, "serial", s.ctl.Serial, "replaced_program", !same)
	return s, nil
}

// sameProgram compares the pinned program with a freshly loaded embedded
// one: the kernel's instruction tag and the load-time constants.
func sameProgram(path string, fresh *ebpf.Program) (bool, string, error) {
	pinned, err := ebpf.LoadPinnedProgram(path, nil)
	if err != nil {
		return false, "", fmt.Errorf("adopt shield program: %w", err)
	}
	defer pinned.Close()
	pi, err := pinned.Info()
	if err != nil {
		return false, "", fmt.Errorf("pinned program info: %w", err)
	}
	fi, err := fresh.Info()
	if err != nil {
		return false, "", fmt.Errorf("program info: %w", err)
	}
	if pi.Tag != fi.Tag {
		return false, fmt.Sprintf("instruction tag %s, embedded %s", pi.Tag, fi.Tag), nil
	}
	pr, err := rodata(pi)
	if err != nil {
		return false, "", err
	}
	fr, err := rodata(fi)
	if err != nil {
		return false, "", err
	}
	if !bytes.Equal(pr, fr) {
		return false, "load-time settings (management addresses, table strides) differ", nil
	}
	return true, "", nil
}

// rodata returns the contents of a program's read-only data map.
func rodata(pi *ebpf.ProgramInfo) ([]byte, error) {
	ids, _ := pi.MapIDs()
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return nil, fmt.Errorf("open map %d: %w", id, err)
		}
		info, err := m.Info()
		if err == nil && strings.HasSuffix(info.Name, ".rodata") {
			var b []byte
			err = m.Lookup(uint32(0), &b)
			m.Close()
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", info.Name, err)
			}
			return b, nil
		}
		m.Close()
	}
	return nil, nil
}

// Unpin removes Shield's pins; the program stays attached only as long as
// this process holds it. Used by maintenance (removal) only.
func (s *Shield) Unpin() error {
	if s.cfg.PinRoot == "" {
		return nil
	}
	err := os.RemoveAll(s.cfg.PinRoot.Dir(pins.Shield))
	s.cfg.Audit.Record("unpin", "shield", err, nil)
	return err
}

// migrate takes over the pins of a Shield whose maps have another layout:
// it loads a fresh Shield, switches every pinned link to it in one step and
// pins it in place of the old one. The old rule set cannot be read into the
// new layout, so the fresh Shield starts empty and passes traffic (Shield
// fails open) until the caller applies its policy again; the old counters
// are gone.
func migrate(cfg Config, why error) (*Shield, error) {
	cfg.Logger.Warn("shield: pinned maps are not this release's; replacing them, traffic passes unfiltered until the policy is applied again", "reason", why)
	s, err := New(cfg)
	if err != nil {
		return nil, fmt.Errorf("migrate shield (%v): %w", why, err)
	}
	if err := s.links.adopt(); err != nil {
		s.Close()
		return nil, fmt.Errorf("migrate shield (%v): %w", why, err)
	}
	if iface, err := s.links.update(s.objs.XdpShield); err != nil {
		s.Close()
		return nil, fmt.Errorf("migrate shield (%v): switch %s: %w", why, iface, err)
	}
	dir := cfg.PinRoot.Dir(pins.Shield)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if _, isLink := ifaceOfPin(e.Name()); !isLink {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	if err := pinObjects(cfg.PinRoot, cfg.Audit, s.objs); err != nil {
		s.Close()
		return nil, fmt.Errorf("migrate shield (%v): %w", why, err)
	}
	cfg.Audit.Record("replace", "shield", nil, map[string]any{"reason": why.Error(), "links": len(s.links.m)})
	return s, nil
}
