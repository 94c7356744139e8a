package shield

import (
	"fmt"
	"net/netip"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/carverauto/fortress/internal/lpm"
	"github.com/carverauto/fortress/internal/netlab"
)

var labSeq atomic.Int32

// newLab builds two namespaces joined by veth: A sends from several
// addresses, B receives with Shield attached natively on its interface.
func newLab(t *testing.T) *netlab.Pair {
	t.Helper()
	testutil := func(p string) netip.Prefix { return netip.MustParsePrefix(p) }
	name := fmt.Sprintf("s%d%d", time.Now().UnixNano()%10000, labSeq.Add(1))
	p, err := netlab.New(netlab.Config{
		Name: name,
		AddrsA: []netip.Prefix{testutil("10.66.0.1/16"), testutil("10.66.1.2/16"), testutil("10.66.2.2/16"),
			testutil("10.66.3.2/16"), testutil("fd66::1/64"), testutil("fd66::1:2/64"), testutil("fd66::2:2/64")},
		AddrsB: []netip.Prefix{testutil("10.66.0.2/16"), testutil("fd66::2/64")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func attachIn(t *testing.T, s *Shield, side *netlab.Side) {
	t.Helper()
	if err := side.Do(func() error { return s.Attach(side.Iface, Native) }); err != nil {
		t.Fatal(err)
	}
}

// flood sends from src to dst:port in bursts until the returned stop
// function is called; stop returns the number of datagrams sent. A send
// error fails the test.
func flood(t *testing.T, lab *netlab.Pair, src, dst netip.Addr, port int) (stop func() int64) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var sent atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := lab.A.SendUDP(src, dst, port, 20); err != nil {
				t.Error(err)
				return
			}
			sent.Add(20)
		}
	}()
	return func() int64 {
		close(done)
		wg.Wait()
		return sent.Load()
	}
}

// eventually polls cond for up to ten seconds (emulated CPUs in the lab
// are slow).
func eventually(cond func() bool) bool {
	for i := 0; i < 1000; i++ {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

func TestRealTrafficOnVeth(t *testing.T) {
	s := newShield(t, Config{})
	lab := newLab(t)
	attachIn(t, s, lab.B)
	rules := []lpm.Rule{
		rule("10.66.1.0/24", lpm.Drop, false),
		rule("fd66::1:0/112", lpm.Drop, false),
		rule("10.66.3.0/24", lpm.Drop, true), // log-only
	}
	if _, err := s.Apply(rules, false); err != nil {
		t.Fatal(err)
	}
	rx, err := lab.B.ListenUDP(7777)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	a := netip.MustParseAddr
	dst4, dst6 := a("10.66.0.2"), a("fd66::2")
	const n = 200
	send := []struct {
		src, dst netip.Addr
		arrives  bool
	}{
		{a("10.66.1.2"), dst4, false},
		{a("10.66.2.2"), dst4, true},
		{a("10.66.3.2"), dst4, true},
		{a("fd66::1:2"), dst6, false},
		{a("fd66::2:2"), dst6, true},
	}
	for _, x := range send {
		if err := lab.A.SendUDP(x.src, x.dst, 7777, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range send {
		if x.arrives {
			if !eventually(func() bool { return rx.Count(x.src) == n }) {
				t.Errorf("from %s: %d of %d datagrams arrived", x.src, rx.Count(x.src), n)
			}
		}
	}
	for _, x := range send {
		if !x.arrives && rx.Count(x.src) != 0 {
			t.Errorf("from blocked %s: %d datagrams arrived", x.src, rx.Count(x.src))
		}
	}
	m := countsByRule(t, s)
	for p, want := range map[string]uint64{"10.66.1.0/24": n, "fd66::1:0/112": n, "10.66.3.0/24": n} {
		if m[p].Packets != want {
			t.Errorf("rule %s counted %d packets, sent %d", p, m[p].Packets, want)
		}
		if m[p].Bytes < want*40 {
			t.Errorf("rule %s counted %d bytes for %d packets", p, m[p].Bytes, want)
		}
	}
	st, err := s.Counters().Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Drop != 2*n || st.WouldDrop != n {
		t.Errorf("global stats %+v: want %d drops, %d would-drops", st, 2*n, n)
	}
}

// TestSwapUnderTraffic flips between two rule sets while traffic flows. A
// source blocked by both sets must never get through (no empty or mixed
// table is ever live), and sources blocked by one set only get through in
// some phases.
func TestSwapUnderTraffic(t *testing.T) {
	s := newShield(t, Config{})
	lab := newLab(t)
	attachIn(t, s, lab.B)
	a := netip.MustParseAddr
	both, onlyA, onlyB := a("10.66.1.2"), a("10.66.2.2"), a("10.66.3.2")
	// Padding makes each set large enough that a torn update would show.
	n4, n6 := 20000, 2000
	if testing.Short() {
		n4, n6 = 2000, 200 // the lab emulates the CPU
	}
	pad := lpm.Generate(3, n4, n6)
	var setA, setB []lpm.Rule
	for _, r := range pad {
		if !r.Prefix.Overlaps(netip.MustParsePrefix("10.66.0.0/16")) {
			setA = append(setA, r)
			setB = append(setB, r)
		}
	}
	setA = append(setA, rule("10.66.1.0/24", lpm.Drop, false), rule("10.66.2.0/24", lpm.Drop, false))
	setB = append(setB, rule("10.66.1.2/32", lpm.Drop, false), rule("10.66.3.0/24", lpm.Drop, false))
	if _, err := s.Apply(setA, false); err != nil {
		t.Fatal(err)
	}
	rx, err := lab.B.ListenUDP(7778)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()

	var stops []func() int64
	for _, src := range []netip.Addr{both, onlyA, onlyB} {
		stops = append(stops, flood(t, lab, src, a("10.66.0.2"), 7778))
	}
	// At least 10 swaps and 2 seconds of traffic; give up after a minute.
	swaps := 0
	start := time.Now()
	for (swaps < 10 || time.Since(start) < 2*time.Second) && time.Since(start) < time.Minute {
		set := setA
		if swaps%2 == 0 {
			set = setB
		}
		if _, err := s.Apply(set, false); err != nil {
			t.Fatal(err)
		}
		swaps++
	}
	var sent int64
	for _, stop := range stops {
		sent += stop()
	}
	time.Sleep(100 * time.Millisecond)
	t.Logf("%d swaps, %d datagrams sent; arrived: both-blocked %d, A-only %d, B-only %d",
		swaps, sent, rx.Count(both), rx.Count(onlyA), rx.Count(onlyB))
	if swaps < 10 {
		t.Fatalf("only %d swaps in %v", swaps, time.Since(start))
	}
	if rx.Count(both) != 0 {
		t.Fatalf("%d datagrams from a source blocked by every set got through during swaps", rx.Count(both))
	}
	if rx.Count(onlyA) == 0 || rx.Count(onlyB) == 0 {
		t.Fatalf("sources blocked by one set only never passed: swaps had no effect")
	}
}

// TestSetManagementUnderTraffic swaps the bypass list while a blocked source
// keeps sending: it never passes, the new gateway passes at once.
func TestSetManagementUnderTraffic(t *testing.T) {
	a := netip.MustParseAddr
	s := newShield(t, Config{Management: []netip.Addr{a("10.66.2.2")}})
	lab := newLab(t)
	attachIn(t, s, lab.B)
	if _, err := s.Apply([]lpm.Rule{rule("10.66.0.0/16", lpm.Drop, false)}, false); err != nil {
		t.Fatal(err)
	}
	rx, err := lab.B.ListenUDP(7782)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	stop := flood(t, lab, a("10.66.1.2"), a("10.66.0.2"), 7782)
	for i := 0; i < 20; i++ {
		gw := a("10.66.2.2")
		if i%2 == 0 {
			gw = a("10.66.3.2")
		}
		if err := s.SetManagement([]netip.Addr{gw}); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	if n := rx.Count(a("10.66.1.2")); n != 0 {
		t.Fatalf("%d blocked datagrams passed during program swaps", n)
	}
	if err := lab.A.SendUDP(a("10.66.2.2"), a("10.66.0.2"), 7782, 3); err != nil {
		t.Fatal(err)
	}
	if !eventually(func() bool { return rx.Count(a("10.66.2.2")) == 3 }) {
		t.Fatalf("current gateway blocked: %d of 3", rx.Count(a("10.66.2.2")))
	}
	if err := s.SetManagement([]netip.Addr{a("1.1.1.1"), a("1.1.1.2"), a("1.1.1.3"), a("1.1.1.4"), a("1.1.1.5")}); err == nil {
		t.Fatal("five IPv4 gateways accepted")
	}
}

// TestNetlinkDetachRefused: Shield is attached through a bpf_link, so the
// netlink paths (`ip link set dev IF xdp off`, `bpftool net detach`) cannot
// remove it, and blocked traffic stays blocked (ATTACKS row 20).
func TestNetlinkDetachRefused(t *testing.T) {
	s := newShield(t, Config{})
	lab := newLab(t)
	attachIn(t, s, lab.B)
	a := netip.MustParseAddr
	if _, err := s.Apply([]lpm.Rule{rule("10.66.1.0/24", lpm.Drop, false)}, false); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{
		{"ip", "-n", lab.B.NSName, "link", "set", "dev", lab.B.Iface, "xdp", "off"},
		{"ip", "netns", "exec", lab.B.NSName, "bpftool", "net", "detach", "xdp", "dev", lab.B.Iface},
	} {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err == nil {
			t.Errorf("%v succeeded: %s", argv, out)
		}
	}
	rx, err := lab.B.ListenUDP(7783)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if err := lab.A.SendUDP(a("10.66.1.2"), a("10.66.0.2"), 7783, 50); err != nil {
		t.Fatal(err)
	}
	if err := lab.A.SendUDP(a("10.66.2.2"), a("10.66.0.2"), 7783, 5); err != nil {
		t.Fatal(err)
	}
	if !eventually(func() bool { return rx.Count(a("10.66.2.2")) == 5 }) {
		t.Fatalf("allowed source: %d of 5 arrived", rx.Count(a("10.66.2.2")))
	}
	if n := rx.Count(a("10.66.1.2")); n != 0 {
		t.Fatalf("%d blocked datagrams arrived after the detach attempts", n)
	}
	if got := countsByRule(t, s)["10.66.1.0/24"].Packets; got != 50 {
		t.Fatalf("rule counted %d of 50 drops", got)
	}
}
