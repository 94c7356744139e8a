package probe

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// checkXDPAttach attaches the trial XDP program in driver and in generic
// mode to a veth pair inside a network namespace created for the purpose and
// dropped afterwards. No host interface is touched. linkErr is nil when an
// attach through a bpf_link worked.
func checkXDPAttach() (native, generic, linkErr error) {
	spec, err := loadSpec()
	if err != nil {
		return err, err, err
	}
	prog, err := ebpf.NewProgram(spec.Programs[lsmprobeProgProbeXdp])
	if err != nil {
		err = fmt.Errorf("load xdp program: %w", err)
		return err, err, err
	}
	defer prog.Close()

	type result struct{ native, generic error }
	done := make(chan result, 1)
	go func() {
		// If switching back to the original namespace fails, the thread stays
		// locked and exits with the goroutine instead of serving others.
		runtime.LockOSThread()
		n, g, restored := attachInTempNetns(prog)
		if restored {
			runtime.UnlockOSThread()
		}
		done <- result{n, g}
	}()
	res := <-done
	switch {
	case res.native == nil || res.generic == nil:
		linkErr = nil
	default:
		linkErr = fmt.Errorf("no xdp link attached: %w", errors.Join(res.native, res.generic))
	}
	return res.native, res.generic, linkErr
}

func attachInTempNetns(prog *ebpf.Program) (native, generic error, restored bool) {
	orig, err := netns.Get()
	if err != nil {
		err = fmt.Errorf("get netns: %w", err)
		return err, err, true
	}
	defer orig.Close()
	tmp, err := netns.New() // creates and enters the new namespace
	if err != nil {
		err = fmt.Errorf("create netns: %w", err)
		return err, err, true
	}
	defer func() {
		restored = netns.Set(orig) == nil
		tmp.Close() // last reference: the namespace and its veths go away
	}()

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "fprobe0"}, PeerName: "fprobe1"}
	if err := netlink.LinkAdd(veth); err != nil {
		err = fmt.Errorf("create veth pair: %w", err)
		return err, err, false
	}
	for _, name := range []string{"fprobe0", "fprobe1"} {
		l, err := netlink.LinkByName(name)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			err = fmt.Errorf("bring up %s: %w", name, err)
			return err, err, false
		}
	}
	l, err := netlink.LinkByName("fprobe0")
	if err != nil {
		err = fmt.Errorf("find veth: %w", err)
		return err, err, false
	}
	attach := func(mode link.XDPAttachFlags, what string) error {
		xl, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: l.Attrs().Index, Flags: mode})
		if err != nil {
			return fmt.Errorf("attach xdp %s to veth: %w", what, err)
		}
		return xl.Close()
	}
	return attach(link.XDPDriverMode, "native"), attach(link.XDPGenericMode, "generic"), false
}
