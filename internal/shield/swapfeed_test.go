package shield

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/lpm"
	"github.com/carverauto/fortress/internal/netlab"
)

// packetSocket opens a raw packet socket on the side's interface, inside
// its namespace.
func packetSocket(t *testing.T, side *netlab.Side) (fd, ifindex int) {
	t.Helper()
	err := side.Do(func() error {
		ifi, err := net.InterfaceByName(side.Iface)
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd, ifindex
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// frameSource is the source address of an IPv4 or IPv6 Ethernet frame.
func frameSource(f []byte) (netip.Addr, bool) {
	if len(f) < 14 {
		return netip.Addr{}, false
	}
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0800:
		if len(f) >= 14+20 {
			return netip.AddrFrom4([4]byte(f[26:30])), true
		}
	case 0x86dd:
		if len(f) >= 14+40 {
			return netip.AddrFrom16([16]byte(f[22:38])), true
		}
	}
	return netip.Addr{}, false
}

// TestFeedSwapUnderTraffic applies one feed-sized set, then another, while
// frames from addresses of both sets hit the interface. An observer behind
// Shield (a packet socket on the receiving interface sees only what XDP
// passed) shows that no address dropped by both sets ever passes, that an
// address dropped by the first set only passes only once the swap began,
// and that one dropped by the second set only never passes once the swap
// returned.
func TestFeedSwapUnderTraffic(t *testing.T) {
	s := newShield(t, Config{})
	n4, n6 := 1000000, 100000
	if testing.Short() {
		n4, n6 = 20000, 2000
	}
	setA := lpm.GenerateFeed(21, n4, n6)
	setB := lpm.GenerateFeed(22, n4, n6)
	// Feeds share entries: some rules are in both sets.
	shared := lpm.GenerateFeed(23, 50, 50)
	inA := map[netip.Prefix]bool{}
	for _, r := range setA {
		inA[r.Prefix] = true
	}
	inB := map[netip.Prefix]bool{}
	for _, r := range setB {
		inB[r.Prefix] = true
	}
	for _, r := range shared {
		if !inA[r.Prefix] && !inB[r.Prefix] {
			setA, setB = append(setA, r), append(setB, r)
		}
	}
	drops := func(ref *lpm.Reference, rules []lpm.Rule, a netip.Addr) bool {
		i, ok := ref.Lookup(a)
		return ok && rules[i].Action == lpm.Drop && !rules[i].LogOnly
	}
	refA, refB := lpm.NewReference(setA), lpm.NewReference(setB)
	const (
		both = iota
		onlyA
		onlyB
		neither
		classes
	)
	names := [classes]string{"dropped by both", "dropped by A only", "dropped by B only", "dropped by neither"}
	class := map[netip.Addr]int{}
	var sources [classes][]netip.Addr
	var candidates []netip.Addr
	for _, rules := range [][]lpm.Rule{shared, setA[:2000], setB[:2000]} {
		for _, r := range rules {
			candidates = append(candidates, r.Prefix.Addr())
		}
	}
	candidates = append(candidates, lpm.RandomAddrs(5, nil, 4, 200)...)
	candidates = append(candidates, lpm.RandomAddrs(6, nil, 6, 200)...)
	for _, a := range candidates {
		if _, seen := class[a]; seen {
			continue
		}
		c := neither
		switch da, db := drops(refA, setA, a), drops(refB, setB, a); {
		case da && db:
			c = both
		case da:
			c = onlyA
		case db:
			c = onlyB
		}
		if len(sources[c]) < 100 {
			class[a] = c
			sources[c] = append(sources[c], a)
		}
	}
	for c := range sources {
		if len(sources[c]) < 20 {
			t.Fatalf("only %d sources %s", len(sources[c]), names[c])
		}
	}
	// Markers: frames from addresses no set drops, sent between phases.
	// veth delivers one sender's frames in order, so what the observer sees
	// before a marker went through XDP before that marker.
	var marker [2]netip.Addr
	markers := 0
	for _, m := range lpm.RandomAddrs(7, nil, 4, 100) {
		if _, used := class[m]; !used && markers < 2 && !drops(refA, setA, m) && !drops(refB, setB, m) {
			marker[markers] = m
			markers++
		}
	}
	if markers < 2 {
		t.Fatal("no marker addresses outside both sets")
	}
	refA, refB = nil, nil

	if _, err := s.Apply(setA, false); err != nil {
		t.Fatal(err)
	}
	lab := newLab(t)
	attachIn(t, s, lab.B)
	txFd, txIf := packetSocket(t, lab.A)
	rxFd, _ := packetSocket(t, lab.B)
	_ = unix.SetsockoptInt(rxFd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	_ = unix.SetsockoptTimeval(rxFd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})

	dst4, dst6 := netip.MustParseAddr("10.66.0.2"), netip.MustParseAddr("fd66::2")
	frameTo := func(src netip.Addr) []byte {
		if src.Is4() {
			return Frame(src, dst4)
		}
		return Frame(src, dst6)
	}
	var frames [][]byte
	var all []netip.Addr
	for c := range sources {
		for _, a := range sources[c] {
			frames = append(frames, frameTo(a))
			all = append(all, a)
		}
	}
	send := func(f []byte) {
		if err := unix.Sendto(txFd, f, 0, &unix.SockaddrLinklayer{Ifindex: txIf}); err != nil && err != unix.ENOBUFS {
			t.Error(err)
		}
	}

	// Phase p counts what the observer saw between marker p-1 and marker p.
	var seen [3][classes]atomic.Int64
	var phase atomic.Int32
	markerSeen := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	stopRx := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			select {
			case <-stopRx:
				return
			default:
			}
			n, _, err := unix.Recvfrom(rxFd, buf, 0)
			if err != nil {
				continue
			}
			src, ok := frameSource(buf[:n])
			if !ok {
				continue
			}
			p := phase.Load()
			if p < 2 && src == marker[p] {
				close(markerSeen[p])
				phase.Add(1)
				continue
			}
			if c, ok := class[src]; ok {
				seen[p][c].Add(1)
			}
		}
	}()
	stopTx := make(chan struct{})
	wg.Add(1)
	var sent atomic.Int64
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stopTx:
				return
			default:
			}
			send(frames[i%len(frames)])
			sent.Add(1)
			if i%64 == 63 {
				time.Sleep(200 * time.Microsecond)
			}
		}
	}()
	waitMarker := func(p int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; {
			send(frameTo(marker[p]))
			select {
			case <-markerSeen[p]:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("marker %d never arrived", p)
			}
		}
	}

	time.Sleep(500 * time.Millisecond) // set A in force
	waitMarker(0)
	res, err := s.Apply(setB, false)
	if err != nil {
		t.Fatal(err)
	}
	waitMarker(1)
	time.Sleep(500 * time.Millisecond) // set B in force
	close(stopTx)
	time.Sleep(50 * time.Millisecond)
	close(stopRx)
	wg.Wait()

	t.Logf("swap of %d rules: compile %v, swap %v; %d frames sent from %d sources", res.Rules, res.Compile, res.Swap, sent.Load(), len(all))
	for p, what := range []string{"before the swap", "during the swap", "after the swap"} {
		t.Logf("%s: passed %d / %d / %d / %d (%s / %s / %s / %s)", what, seen[p][both].Load(), seen[p][onlyA].Load(),
			seen[p][onlyB].Load(), seen[p][neither].Load(), names[both], names[onlyA], names[onlyB], names[neither])
	}
	for p := range seen {
		if n := seen[p][both].Load(); n != 0 {
			t.Errorf("phase %d: %d frames from addresses both sets drop passed", p, n)
		}
	}
	if n := seen[0][onlyA].Load(); n != 0 {
		t.Errorf("%d frames from addresses set A drops passed while A was in force", n)
	}
	if n := seen[2][onlyB].Load(); n != 0 {
		t.Errorf("%d frames from addresses set B drops passed after the swap to B", n)
	}
	// The observer works and the sets differ: what one set drops and the
	// other does not passes where it should.
	if seen[0][neither].Load() == 0 || seen[2][neither].Load() == 0 || seen[0][onlyB].Load() == 0 || seen[2][onlyA].Load() == 0 {
		t.Errorf("expected passes missing: the observer or the swap did not work")
	}
}
