//go:build linux

package fortress

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/carverauto/fortress/internal/pins"
	"github.com/carverauto/fortress/internal/sentinel"
	"github.com/carverauto/fortress/internal/shield"
)

// guardPinned asks Sentinel to guard every map and link Shield pinned
// under root, so that only the agent may update or detach them. Shield
// names its pins; this only opens them.
func guardPinned(s *sentinel.Sentinel, root pins.Root) error {
	maps, links, err := shield.PinnedObjects(root)
	if err != nil {
		return err
	}
	var errs []error
	for _, path := range links {
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		errs = append(errs, s.GuardLink(l))
		l.Close()
	}
	for _, path := range maps {
		m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		errs = append(errs, s.GuardMap(m))
		m.Close()
	}
	return errors.Join(errs...)
}
