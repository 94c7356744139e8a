package shield

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/carverauto/fortress/internal/pins"
)

// linkSet is Shield's XDP links, one per interface, each pinned under the
// pin root (when there is one) so that it outlives the agent. It is used
// with Shield.mu held.
type linkSet struct {
	root pins.Root
	m    map[string]link.Link // by interface name
}

func newLinkSet(root pins.Root) linkSet { return linkSet{root: root, m: map[string]link.Link{}} }

// attach attaches prog to iface through a BPF link and pins the link.
func (ls *linkSet) attach(iface string, mode AttachMode, prog *ebpf.Program) error {
	if _, ok := ls.m[iface]; ok {
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
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: flags})
	if err != nil {
		return fmt.Errorf("attach xdp %s (%s): %w", iface, mode, err)
	}
	if ls.root != "" {
		if err := pinReplace(l, ls.root.Path(pins.Shield, linkPin(iface))); err != nil {
			l.Close()
			return err
		}
	}
	ls.m[iface] = l
	return nil
}

// names lists the interfaces with a link.
func (ls *linkSet) names() []string {
	out := make([]string, 0, len(ls.m))
	for i := range ls.m {
		out = append(out, i)
	}
	return out
}

// adopt opens every pinned link.
func (ls *linkSet) adopt() error {
	dir := ls.root.Dir(pins.Shield)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("adopt shield links: %w", err)
	}
	for _, e := range ents {
		iface, ok := ifaceOfPin(e.Name())
		if !ok {
			continue
		}
		l, err := link.LoadPinnedLink(filepath.Join(dir, e.Name()), nil)
		if err != nil {
			return fmt.Errorf("adopt shield link %s: %w", iface, err)
		}
		ls.m[iface] = l
	}
	return nil
}

// update switches every link to prog, each in one step; on error it names
// the interface that failed (those switched before keep prog).
func (ls *linkSet) update(prog *ebpf.Program) (iface string, err error) {
	for iface, l := range ls.m {
		if err := l.Update(prog); err != nil {
			return iface, err
		}
	}
	return "", nil
}

// close releases the links; pinned ones stay attached.
func (ls *linkSet) close() []error {
	var errs []error
	for _, l := range ls.m {
		errs = append(errs, l.Close())
	}
	return errs
}

// rcuSync waits for RCU grace periods: updating a map-in-map makes the
// kernel wait until every program run that started before has finished.
type rcuSync struct {
	outer, inner *ebpf.Map
}

func newRCUSync() (*rcuSync, error) {
	in, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("create rcu sync map: %w", err)
	}
	outer, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.ArrayOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 1,
		InnerMap: &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}})
	if err != nil {
		in.Close()
		return nil, fmt.Errorf("create rcu sync map: %w", err)
	}
	return &rcuSync{outer: outer, inner: in}, nil
}

// wait returns once every XDP program run that started before it has
// finished.
func (r *rcuSync) wait() error {
	if err := r.outer.Put(uint32(0), r.inner); err != nil {
		return fmt.Errorf("rcu sync: %w", err)
	}
	return nil
}

func (r *rcuSync) close() []error { return []error{r.outer.Close(), r.inner.Close()} }
