//go:build linux

package fortress

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/carverauto/fortress/internal/sentinel"
)

// guardPinned asks Sentinel to guard every map and link pinned in dir, so
// that only the agent may update or detach them.
func guardPinned(s *sentinel.Sentinel, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		if strings.HasSuffix(e.Name(), ".new") {
			continue
		}
		if strings.HasPrefix(e.Name(), "link_") {
			l, err := link.LoadPinnedLink(path, nil)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", path, err))
				continue
			}
			errs = append(errs, s.GuardLink(l))
			l.Close()
			continue
		}
		m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			continue // a program pin
		}
		errs = append(errs, s.GuardMap(m))
		m.Close()
	}
	return errors.Join(errs...)
}
