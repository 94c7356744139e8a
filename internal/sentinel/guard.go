package sentinel

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// guard owns sentinel_guarded, the BPF objects (maps and links, by kernel
// id) that only the agent may change.
type guard struct{ k *kernelSet }

const (
	guardMap  = uint32(sentinelSentinelGuardKindSENTINEL_GUARD_MAP)
	guardLink = uint32(sentinelSentinelGuardKindSENTINEL_GUARD_LINK)
)

func (g *guard) guardID(kind, id uint32) error {
	m, err := g.k.live()
	if err == nil {
		err = m.SentinelGuarded.Put(sentinelSentinelGuard{Kind: kind, Id: id}, uint32(1))
	}
	if err != nil {
		return fmt.Errorf("guard bpf object %d: %w", id, err)
	}
	return nil
}

// GuardMap makes m writable only by the agent: every other process gets a
// read-only descriptor (dumps keep working, updates fail with EPERM).
func (g *guard) GuardMap(m *ebpf.Map) error {
	info, err := m.Info()
	if err != nil {
		return fmt.Errorf("guard map: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return errors.New("guard map: kernel reports no map id")
	}
	return g.guardID(guardMap, uint32(id))
}

// GuardLink lets only the agent detach or update l.
func (g *guard) GuardLink(l link.Link) error {
	info, err := l.Info()
	if err != nil {
		return fmt.Errorf("guard link: %w", err)
	}
	return g.guardID(guardLink, uint32(info.ID))
}
