package shield

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/carverauto/fortress/internal/pins"
)

// SetManagement changes the management addresses. They are load-time constants of
// the program, so a new program is loaded over the same maps and swapped in
// on every interface through its link: there is no moment without a program
// and the rule set and counters are untouched.
func (s *Shield) SetManagement(addrs []netip.Addr) error {
	if _, _, _, _, err := managementConsts(addrs); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cfg.Management
	s.cfg.Management = slices.Clone(addrs)
	err := s.replaceProgram()
	if err != nil {
		s.cfg.Management = old
	}
	s.cfg.Audit.Record("replace", "shield xdp_shield", err, map[string]any{"gateways": fmt.Sprint(addrs)})
	return err
}

// replaceProgram loads the embedded program for the current settings over
// the current maps and switches every link to it.
func (s *Shield) replaceProgram() error {
	keep := map[string]*ebpf.Map{}
	for _, name := range tableMaps {
		keep[name] = objectMap(s.objs, name)
	}
	keep["sample_last"] = s.objs.SampleLast
	objs, err := loadObjects(s.cfg, s.ncpu, s.cap, keep)
	if err != nil {
		return err
	}
	if iface, err := s.links.update(objs.XdpShield); err != nil {
		objs.Close()
		return fmt.Errorf("switch %s to the new shield program: %w", iface, err)
	}
	old := s.objs
	s.objs = objs
	if s.cfg.PinRoot != "" {
		if err := pinReplace(objs.XdpShield, s.cfg.PinRoot.Path(pins.Shield, programPin)); err != nil {
			return err
		}
	}
	return old.Close()
}

// objectMap is the map of objs named name in the object.
func objectMap(objs *shieldObjects, name string) *ebpf.Map {
	return map[string]*ebpf.Map{
		"shield_state": objs.ShieldState, "shield_stats": objs.ShieldStats,
		"shield_samples": objs.ShieldSamples, "rule_hits": objs.RuleHits,
		"v4_dir": objs.V4Dir, "v4_blocks": objs.V4Blocks,
		"v6_dir": objs.V6Dir, "v6_keys": objs.V6Keys, "v6_vals": objs.V6Vals,
	}[name]
}
