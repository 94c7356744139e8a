package shield

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/carverauto/fortress/internal/pins"
)

// AttachMode selects how the program is attached to an interface.
type AttachMode int

const (
	// Native runs the program in the driver (the default).
	Native AttachMode = iota
	// Generic runs it in the stack after the driver (works everywhere,
	// slower); only used when asked for explicitly.
	Generic
)

func (m AttachMode) String() string {
	if m == Generic {
		return "generic"
	}
	return "native"
}

// Attach attaches Shield to an interface through a BPF link, so that
// `ip link set dev IF xdp off` cannot remove it.
func (s *Shield) Attach(iface string, mode AttachMode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.links.attach(iface, mode, s.objs.XdpShield)
	s.cfg.Audit.Record("attach", "shield "+iface, err, map[string]any{"mode": mode.String()})
	if err != nil {
		return err
	}
	s.cfg.Logger.Info("shield attached", "iface", iface, "mode", mode.String())
	if mode == Generic {
		s.cfg.Logger.Warn("shield attached in generic mode: slower than native", "iface", iface)
	}
	return nil
}

// Link pins are named after the interface; bpffs refuses dots in names,
// which interface names (eth0.100) may hold, so they are escaped.
var (
	pinEscape   = strings.NewReplacer("%", "%25", ".", "%2e")
	pinUnescape = strings.NewReplacer("%2e", ".", "%25", "%")
)

func linkPin(iface string) string { return "link_" + pinEscape.Replace(iface) }

func ifaceOfPin(name string) (string, bool) {
	esc, ok := strings.CutPrefix(name, "link_")
	return pinUnescape.Replace(esc), ok
}

type pinner interface {
	Pin(string) error
}

// pinReplace pins obj at path, atomically replacing what is pinned there.
// (bpffs refuses names with dots, hence the prefix.)
func pinReplace(obj pinner, path string) error {
	tmp := filepath.Join(filepath.Dir(path), "new_"+filepath.Base(path))
	_ = os.Remove(tmp)
	if err := obj.Pin(tmp); err != nil {
		return fmt.Errorf("pin %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pin %s: %w", path, err)
	}
	return nil
}

// pinObjects pins program and maps under root, replacing older pins.
func pinObjects(root pins.Root, audit Recorder, o *shieldObjects) error {
	if root == "" {
		return nil
	}
	if err := root.Ensure(pins.Shield); err != nil {
		return err
	}
	objs := map[string]pinner{
		programPin:       o.XdpShield,
		"shield_state":   o.ShieldState,
		"shield_stats":   o.ShieldStats,
		"shield_samples": o.ShieldSamples,
		"rule_hits":      o.RuleHits,
		"v4_dir":         o.V4Dir,
		"v4_blocks":      o.V4Blocks,
		"v6_dir":         o.V6Dir,
		"v6_keys":        o.V6Keys,
		"v6_vals":        o.V6Vals,
	}
	var errs []error
	for name, o := range objs {
		err := pinReplace(o, root.Path(pins.Shield, name))
		audit.Record("pin", "shield "+name, err, nil)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
