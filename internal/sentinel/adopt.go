package sentinel

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// adopt takes over the pinned Sentinel. The pinned programs must be the
// embedded ones: the embedded set is loaded (not attached) against the
// pinned maps and the kernel tags compared. On any mismatch Sentinel fails
// closed: a critical event is raised, the embedded programs are attached
// next to the pinned ones (so both enforce), and only then the old ones are
// detached and their pins replaced.
func (s *Sentinel) adopt(spec *ebpf.CollectionSpec) error {
	var fresh []string
	for name, ms := range spec.Maps {
		m, err := ebpf.LoadPinnedMap(s.pin("map", name), nil)
		if errors.Is(err, os.ErrNotExist) && newInRelease[name] {
			// Pinned by an earlier release without this map. The filter
			// starts full, which is trivially a superset of
			// sentinel_objects; the others start empty.
			if name == mapListed {
				m, err = newFullListed(ms)
			} else {
				m, err = ebpf.NewMap(ms)
			}
			if err == nil {
				fresh = append(fresh, name)
			}
		}
		if err != nil {
			return fmt.Errorf("adopt map %s: %w", name, err)
		}
		s.maps[name] = m
		if err := ms.Compatible(m); err != nil {
			return fmt.Errorf("adopt map %s: pinned map differs from the embedded one: %w", name, err)
		}
	}
	slices.Sort(fresh)
	for _, name := range fresh {
		path := s.pin("map", name)
		err := s.maps[name].Pin(path)
		s.record("pin", path, err, nil)
		if err != nil {
			return fmt.Errorf("pin map %s: %w", name, err)
		}
		if err := s.GuardMap(s.maps[name]); err != nil {
			return err
		}
	}
	if err := s.bindMaps(); err != nil {
		return err
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, s.collectionOptions(s.maps))
	if err != nil {
		return fmt.Errorf("load embedded sentinel for comparison: %w", err)
	}
	defer coll.Close()

	var mismatch []string
	for name, fresh := range coll.Programs {
		if err := s.adoptProgram(name, fresh); err != nil {
			mismatch = append(mismatch, fmt.Sprintf("%s: %v", name, err))
		}
	}
	if len(mismatch) == 0 {
		s.adopted = true
		s.record("adopt", "sentinel", nil, map[string]any{"programs": len(s.links)})
		s.log.Info("sentinel adopted", "programs", len(s.links))
		return s.checkExtraPins(spec)
	}
	slices.Sort(mismatch)
	s.raise(fmt.Sprintf("pinned sentinel is not the embedded one, replacing it with enforcement kept on: %v", mismatch))
	s.record("adopt", "sentinel", errors.New("integrity mismatch"), map[string]any{"mismatch": mismatch})
	return s.replace(coll)
}

// adoptProgram opens the pinned program and link of name and checks them
// against fresh, the embedded program loaded for comparison.
func (s *Sentinel) adoptProgram(name string, fresh *ebpf.Program) error {
	want, err := fresh.Info()
	if err != nil {
		return err
	}
	l, err := link.LoadPinnedLink(s.pin("link", name), nil)
	if err != nil {
		return fmt.Errorf("pinned link: %w", err)
	}
	s.links[name] = l
	li, err := l.Info()
	if err != nil {
		return fmt.Errorf("link info: %w", err)
	}
	p, err := ebpf.NewProgramFromID(li.Program)
	if err != nil {
		return fmt.Errorf("linked program: %w", err)
	}
	s.progs[name] = p
	got, err := p.Info()
	if err != nil {
		return err
	}
	if got.Tag != want.Tag {
		return fmt.Errorf("linked program tag %s, embedded %s", got.Tag, want.Tag)
	}
	return nil
}

// checkExtraPins fails closed on links pinned for programs this binary does
// not embed: they stay attached, and the operator is told.
func (s *Sentinel) checkExtraPins(spec *ebpf.CollectionSpec) error {
	entries, err := os.ReadDir(s.cfg.PinRoot.Dir("sentinel"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		var name string
		if n, ok := cutPrefix(e.Name(), "link_"); ok {
			name = n
		} else {
			continue
		}
		if _, ok := spec.Programs[name]; !ok {
			s.raise("pinned sentinel link " + e.Name() + " is not part of the embedded programs; left attached")
		}
	}
	return nil
}

// newFullListed creates sentinel_listed with every slot set.
func newFullListed(spec *ebpf.MapSpec) (*ebpf.Map, error) {
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, err
	}
	keys := make([]uint32, spec.MaxEntries)
	values := make([]uint8, spec.MaxEntries)
	for i := range keys {
		keys[i], values[i] = uint32(i), 1
	}
	if _, err := m.BatchUpdate(keys, values, nil); err != nil {
		m.Close()
		return nil, fmt.Errorf("fill: %w", err)
	}
	return m, nil
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return s, false
}

// replace attaches the programs of coll, then drops the old links.
func (s *Sentinel) replace(coll *ebpf.Collection) error {
	old := s.links
	oldProgs := s.progs
	s.links, s.progs = map[string]link.Link{}, map[string]*ebpf.Program{}
	for name, p := range coll.Programs {
		s.progs[name] = p
	}
	// The Collection no longer owns the programs.
	for name := range coll.Programs {
		delete(coll.Programs, name)
	}
	for name, l := range old {
		s.links["old_"+name] = l // closed below, after the new ones are in
	}
	if _, err := s.attachAll("replace"); err != nil {
		return err
	}
	for name, l := range old {
		path := s.pin("link", name)
		err := l.Unpin()
		if err != nil {
			err = os.Remove(path)
		}
		s.record("unpin", path, err, nil)
		l.Close()
		delete(s.links, "old_"+name)
	}
	for _, p := range oldProgs {
		p.Close()
	}
	for name := range s.progs {
		for kind, obj := range map[string]interface{ Pin(string) error }{"prog": s.progs[name], "link": s.links[name]} {
			path := s.pin(kind, name)
			os.Remove(path)
			err := obj.Pin(path)
			s.record("pin", path, err, nil)
			if err != nil {
				return fmt.Errorf("pin %s %s: %w", kind, name, err)
			}
		}
	}
	return nil
}
