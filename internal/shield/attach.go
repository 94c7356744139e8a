package shield

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/link"

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
	err := s.attach(iface, mode)
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

func (s *Shield) attach(iface string, mode AttachMode) error {
	if _, ok := s.links[iface]; ok {
		return fmt.Errorf("attach xdp %s: already attached", iface)
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("attach xdp %s: %w", iface, err)
	}
	flags := link.XDPDriverMode
	if mode == Generic {
		flags = link.XDPGenericMode
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: s.objs.XdpShield, Interface: ifi.Index, Flags: flags})
	if err != nil {
		return fmt.Errorf("attach xdp %s (%s): %w", iface, mode, err)
	}
	if s.cfg.PinRoot != "" {
		if err := pinReplace(l, s.cfg.PinRoot.Path(pins.Shield, linkPin(iface))); err != nil {
			l.Close()
			return err
		}
	}
	s.links[iface] = l
	return nil
}

// Detach removes Shield from an interface and deletes the link's pin.
func (s *Shield) Detach(iface string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.links[iface]
	if !ok {
		return fmt.Errorf("detach xdp %s: not attached", iface)
	}
	delete(s.links, iface)
	var errs []error
	if s.cfg.PinRoot != "" {
		if err := os.Remove(s.cfg.PinRoot.Path(pins.Shield, linkPin(iface))); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, l.Close())
	err := errors.Join(errs...)
	s.cfg.Audit.Record("detach", "shield "+iface, err, nil)
	return err
}

// Interfaces lists the interfaces Shield is attached to.
func (s *Shield) Interfaces() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.links))
	for i := range s.links {
		out = append(out, i)
	}
	return out
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

// pinAll pins program and maps under the pin root, replacing older pins.
func (s *Shield) pinAll() error {
	if s.cfg.PinRoot == "" {
		return nil
	}
	if err := s.cfg.PinRoot.Ensure(pins.Shield); err != nil {
		return err
	}
	objs := map[string]pinner{
		programPin:       s.objs.XdpShield,
		"shield_state":   s.objs.ShieldState,
		"shield_stats":   s.objs.ShieldStats,
		"shield_samples": s.objs.ShieldSamples,
		"rule_hits":      s.objs.RuleHits,
		"v4_dir":         s.objs.V4Dir,
		"v4_blocks":      s.objs.V4Blocks,
		"v6_dir":         s.objs.V6Dir,
		"v6_keys":        s.objs.V6Keys,
		"v6_vals":        s.objs.V6Vals,
	}
	var errs []error
	for name, o := range objs {
		err := pinReplace(o, s.cfg.PinRoot.Path(pins.Shield, name))
		s.cfg.Audit.Record("pin", "shield "+name, err, nil)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
