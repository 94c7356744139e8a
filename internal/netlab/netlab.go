package netlab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Side is one end of a Pair.
type Side struct {
	NSName string // name under /run/netns
	NS     netns.NsHandle
	Iface  string
	// Addrs are the addresses configured on Iface.
	Addrs []netip.Prefix
	h     *netlink.Handle
}

// Pair is two namespaces, A and B, joined by a veth pair.
type Pair struct {
	A, B *Side
}

// Config names the pair and its addresses.
type Config struct {
	// Name is a short unique tag; namespaces are fortress-NAME-a/-b and the
	// interfaces fNAMEa / fNAMEb (at most 15 bytes).
	Name string
	// AddrsA and AddrsB are the addresses of each side. The first IPv4 and
	// IPv6 addresses of each side get a permanent neighbour entry on the
	// other side, so no ARP/ND exchange is needed.
	AddrsA, AddrsB []netip.Prefix
}

// New creates the namespaces and the veth pair.
func New(cfg Config) (p *Pair, err error) {
	ifA, ifB := "f"+cfg.Name+"a", "f"+cfg.Name+"b"
	if len(ifA) > 15 {
		return nil, fmt.Errorf("netlab: name %q too long", cfg.Name)
	}
	pair := &Pair{}
	p = pair
	defer func() {
		if err != nil {
			pair.Close()
			p = nil
		}
	}()
	if pair.A, err = newSide("fortress-"+cfg.Name+"-a", ifA, cfg.AddrsA); err != nil {
		return nil, err
	}
	if pair.B, err = newSide("fortress-"+cfg.Name+"-b", ifB, cfg.AddrsB); err != nil {
		return nil, err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ifA}, PeerName: ifB, PeerNamespace: netlink.NsFd(int(p.B.NS))}
	if err := p.A.h.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("netlab: create veth %s/%s: %w", ifA, ifB, err)
	}
	for _, s := range []*Side{p.A, p.B} {
		if err := s.configure(); err != nil {
			return nil, err
		}
	}
	if err := p.A.neighbours(p.B); err != nil {
		return nil, err
	}
	if err := p.B.neighbours(p.A); err != nil {
		return nil, err
	}
	return p, nil
}

func newSide(name, iface string, addrs []netip.Prefix) (*Side, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("netlab: current netns: %w", err)
	}
	defer orig.Close()
	// A leftover from a run that did not finish goes first.
	if err := RemoveNamed(name); err != nil {
		return nil, fmt.Errorf("netlab: leftover netns %s: %w", name, err)
	}
	ns, err := createNamed(name)
	if err != nil {
		if serr := netns.Set(orig); serr != nil {
			runtime.LockOSThread() // never unlocked: the runtime discards the thread
		}
		return nil, fmt.Errorf("netlab: create netns %s: %w", name, err)
	}
	if err := netns.Set(orig); err != nil {
		return nil, fmt.Errorf("netlab: restore netns: %w", err)
	}
	// Route netlink only: minimal kernels lack the xfrm family.
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		RemoveNamed(name)
		return nil, fmt.Errorf("netlab: netlink in %s: %w", name, err)
	}
	return &Side{NSName: name, NS: ns, Iface: iface, Addrs: addrs, h: h}, nil
}

func (s *Side) configure() error {
	lo, err := s.h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("netlab: %s lo: %w", s.NSName, err)
	}
	if err := s.h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("netlab: %s lo up: %w", s.NSName, err)
	}
	l, err := s.h.LinkByName(s.Iface)
	if err != nil {
		return fmt.Errorf("netlab: %s %s: %w", s.NSName, s.Iface, err)
	}
	for _, a := range s.Addrs {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}}
		if a.Addr().Is6() {
			addr.Flags = 0x02 // IFA_F_NODAD: usable at once
		}
		if err := s.h.AddrAdd(l, addr); err != nil {
			return fmt.Errorf("netlab: %s add %s: %w", s.Iface, a, err)
		}
	}
	if err := s.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("netlab: %s up: %w", s.Iface, err)
	}
	return nil
}

// neighbours adds permanent neighbour entries on s for every address of
// the other side, with the other side's MAC.
func (s *Side) neighbours(other *Side) error {
	ol, err := other.h.LinkByName(other.Iface)
	if err != nil {
		return err
	}
	l, err := s.h.LinkByName(s.Iface)
	if err != nil {
		return err
	}
	for _, a := range other.Addrs {
		n := &netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: a.Addr().AsSlice(), HardwareAddr: ol.Attrs().HardwareAddr}
		if err := s.h.NeighSet(n); err != nil {
			return fmt.Errorf("netlab: neighbour %s on %s: %w", a.Addr(), s.Iface, err)
		}
	}
	return nil
}

// Do runs f with the calling goroutine's thread inside the side's namespace.
// Sockets and links created by f belong to that namespace.
func (s *Side) Do(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(s.NS); err != nil {
		return fmt.Errorf("netlab: enter %s: %w", s.NSName, err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// The thread is unusable; never unlock it so the runtime discards it.
		runtime.LockOSThread()
		return errors.Join(ferr, fmt.Errorf("netlab: leave %s: %w", s.NSName, err))
	}
	return ferr
}

// IfIndex returns the index of the side's interface.
func (s *Side) IfIndex() (int, error) {
	l, err := s.h.LinkByName(s.Iface)
	if err != nil {
		return 0, err
	}
	return l.Attrs().Index, nil
}

// Close deletes both namespaces, which removes the veth pair.
func (p *Pair) Close() error {
	var errs []error
	for _, s := range []*Side{p.A, p.B} {
		if s == nil {
			continue
		}
		if s.h != nil {
			s.h.Close()
		}
		s.NS.Close()
		if err := RemoveNamed(s.NSName); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
