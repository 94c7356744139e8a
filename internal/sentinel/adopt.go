package sentinel

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/carverauto/fortress/internal/pins"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// adopt takes over the pinned Sentinel. The pinned programs must be the
// embedded ones: the embedded set is loaded (not attached) against the
// pinned maps and the kernel tags compared. On any mismatch Sentinel fails
// closed: a critical event is raised, the embedded programs are attached
// next to the pinned ones (so both enforce), and only then the old ones are
// detached and their pins replaced.
func (l *loader) adopt(spec *ebpf.CollectionSpec) error {
	var fresh []string
	for name, ms := range spec.Maps {
		m, err := ebpf.LoadPinnedMap(l.k.pin("map", name), nil)
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
		l.k.maps[name] = m
		if err := ms.Compatible(m); err != nil {
			return fmt.Errorf("adopt map %s: pinned map differs from the embedded one: %w", name, err)
		}
	}
	// Bound before anything is written: guarding the new maps writes
	// sentinel_guarded.
	if err := l.k.bindMaps(); err != nil {
		return err
	}
	slices.Sort(fresh)
	for _, name := range fresh {
		path := l.k.pin("map", name)
		err := l.k.maps[name].Pin(path)
		l.rec("pin", path, err, nil)
		if err != nil {
			return fmt.Errorf("pin map %s: %w", name, err)
		}
		if err := l.guard.GuardMap(l.k.maps[name]); err != nil {
			return err
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, l.collectionOptions(l.k.maps))
	if err != nil {
		return fmt.Errorf("load embedded sentinel for comparison: %w", err)
	}
	defer coll.Close()

	var mismatch []string
	for name, fresh := range coll.Programs {
		if err := l.adoptProgram(name, fresh); err != nil {
			mismatch = append(mismatch, fmt.Sprintf("%s: %v", name, err))
		}
	}
	if len(mismatch) == 0 {
		l.k.adopted = true
		l.rec("adopt", "sentinel", nil, map[string]any{"programs": len(l.k.links)})
		l.log.Info("sentinel adopted", "programs", len(l.k.links))
		return l.checkExtraPins(spec)
	}
	slices.Sort(mismatch)
	l.ev.raise(fmt.Sprintf("pinned sentinel is not the embedded one, replacing it with enforcement kept on: %v", mismatch))
	l.rec("adopt", "sentinel", errors.New("integrity mismatch"), map[string]any{"mismatch": mismatch})
	return l.replace(coll)
}

// adoptProgram opens the pinned program and link of name and checks them
// against fresh, the embedded program loaded for comparison.
func (l *loader) adoptProgram(name string, fresh *ebpf.Program) error {
	want, err := fresh.Info()
	if err != nil {
		return err
	}
	lk, err := link.LoadPinnedLink(l.k.pin("link", name), nil)
	if err != nil {
		return fmt.Errorf("pinned link: %w", err)
	}
	l.k.links[name] = lk
	li, err := lk.Info()
	if err != nil {
		return fmt.Errorf("link info: %w", err)
	}
	p, err := ebpf.NewProgramFromID(li.Program)
	if err != nil {
		return fmt.Errorf("linked program: %w", err)
	}
	l.k.progs[name] = p
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
func (l *loader) checkExtraPins(spec *ebpf.CollectionSpec) error {
	entries, err := os.ReadDir(l.k.root.Dir(pins.Sentinel))
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
			l.ev.raise("pinned sentinel link " + e.Name() + " is not part of the embedded programs; left attached")
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
func (l *loader) replace(coll *ebpf.Collection) error {
	old := l.k.links
	oldProgs := l.k.progs
	l.k.links, l.k.progs = map[string]link.Link{}, map[string]*ebpf.Program{}
	for name, p := range coll.Programs {
		l.k.progs[name] = p
	}
	// The Collection no longer owns the programs.
	for name := range coll.Programs {
		delete(coll.Programs, name)
	}
	for name, lk := range old {
		l.k.links["old_"+name] = lk // closed below, after the new ones are in
	}
	if _, err := l.attachAll("replace"); err != nil {
		return err
	}
	for name, lk := range old {
		path := l.k.pin("link", name)
		err := lk.Unpin()
		if err != nil {
			err = os.Remove(path)
		}
		l.rec("unpin", path, err, nil)
		lk.Close()
		delete(l.k.links, "old_"+name)
	}
	for _, p := range oldProgs {
		p.Close()
	}
	for name := range l.k.progs {
		for kind, obj := range map[string]interface{ Pin(string) error }{"prog": l.k.progs[name], "link": l.k.links[name]} {
			path := l.k.pin(kind, name)
			os.Remove(path)
			err := obj.Pin(path)
			l.rec("pin", path, err, nil)
			if err != nil {
				return fmt.Errorf("pin %s %s: %w", kind, name, err)
			}
		}
	}
	return nil
}
