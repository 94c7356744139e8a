package sentinel

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/carverauto/fortress/internal/pins"
)

// loader loads, attaches, adopts and replaces Sentinel's programs. It fills
// the kernelSet and has the other owners write their maps on the way: the
// policy before anything is attached, the guard as each object appears.
type loader struct {
	cfg    Config
	log    *slog.Logger
	rec    record
	k      *kernelSet
	guard  *guard
	modes  *modes
	policy *policyWriter
	ev     *events
}

func (l *loader) ensureDirs() error {
	for _, layer := range []pins.Layer{pins.Sentinel, pins.Shield} {
		if err := l.cfg.PinRoot.Ensure(layer); err != nil {
			return err
		}
	}
	if l.cfg.StagingDir == "" {
		return nil
	}
	if err := os.MkdirAll(l.cfg.StagingDir, 0o700); err != nil {
		return fmt.Errorf("create staging dir: %w", err)
	}
	return nil
}

// embeddedSpec returns the embedded programs that fit this kernel, checked
// against the helper allowlist.
func (l *loader) embeddedSpec() (*ebpf.CollectionSpec, error) {
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
	l.k.notes = notes
	// The .bss section only carries the event type into BTF; no program
	// uses it, so it is not created (and not pinned).
	delete(spec.Maps, ".bss")
	for name := range spec.Variables {
		if strings.HasPrefix(name, "unused_") {
			delete(spec.Variables, name)
		}
	}
	if err := checkAllowlist(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// load loads spec (reusing the maps in replace, if any), attaches every
// program and pins maps, programs and links. The policy maps are filled
// before anything is attached, so protection is complete from the first
// hook on.
func (l *loader) load(spec *ebpf.CollectionSpec, replace map[string]*ebpf.Map) error {
	coll, err := ebpf.NewCollectionWithOptions(spec, l.collectionOptions(replace))
	l.rec("load", "sentinel", err, map[string]any{"programs": len(spec.Programs)})
	if err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("%w: load: %v", ErrUnavailable, err)
		}
		return fmt.Errorf("load sentinel: %w", err)
	}
	for name, m := range coll.Maps {
		if old, ok := l.k.maps[name]; ok && old != m {
			old.Close()
		}
		l.k.maps[name] = m
	}
	if err := l.k.bindMaps(); err != nil {
		return err
	}
	for name, p := range coll.Programs {
		l.k.progs[name] = p
	}
	if replace == nil {
		if err := l.modes.setMode(l.cfg.Mode, time.Time{}); err != nil {
			return err
		}
		if err := l.policy.apply(); err != nil {
			return err
		}
	}
	for name, m := range l.k.maps {
		if replace[name] != nil {
			continue
		}
		path := l.k.pin("map", name)
		err := m.Pin(path)
		l.rec("pin", path, err, nil)
		if err != nil {
			return fmt.Errorf("pin map %s: %w", name, err)
		}
		if err := l.guard.GuardMap(m); err != nil {
			return err
		}
	}
	names, err := l.attachAll("")
	if err != nil {
		return err
	}
	for _, name := range names {
		for kind, pin := range map[string]interface{ Pin(string) error }{"prog": l.k.progs[name], "link": l.k.links[name]} {
			path := l.k.pin(kind, name)
			os.Remove(path) // a stale pin from a replaced program
			err := pin.Pin(path)
			l.rec("pin", path, err, nil)
			if err != nil {
				return fmt.Errorf("pin %s %s: %w", kind, name, err)
			}
		}
	}
	l.log.Info("sentinel loaded", "programs", len(names), "notes", strings.Join(l.k.notes, "; "))
	return nil
}

// attachAll attaches every program of l.k.progs and guards its link, the
// claim program first: the loader claims its role (claim) before any other
// hook can ask for it. reason, if set, goes into the audit log. It returns
// the program names, sorted.
func (l *loader) attachAll(reason string) ([]string, error) {
	names := make([]string, 0, len(l.k.progs))
	for name := range l.k.progs {
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
		lk, err := attach(l.k.progs[name])
		var details map[string]any
		if reason != "" {
			details = map[string]any{"reason": reason}
		}
		l.rec("attach", "lsm/"+name, err, details)
		if err != nil {
			if runtime.GOARCH == "arm64" && errors.Is(err, ebpf.ErrNotSupported) {
				// arm64 attaches BPF trampolines to kernel functions
				// only from 6.4 (ftrace direct calls).
				return nil, fmt.Errorf("%w: attach %s: %v (arm64 kernels before 6.4 cannot attach BPF trampolines to kernel functions)", ErrUnavailable, name, err)
			}
			return nil, fmt.Errorf("%w: attach %s: %v", ErrUnavailable, name, err)
		}
		if err := l.guard.GuardLink(lk); err != nil {
			lk.Close()
			return nil, err
		}
		l.k.links[name] = lk
		if i == 0 {
			if err := l.claim(); err != nil {
				return nil, err
			}
		}
	}
	sort.Strings(names)
	return names, nil
}
