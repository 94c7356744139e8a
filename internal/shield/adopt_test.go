package shield

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/carverauto/fortress/internal/lpm"
	"github.com/carverauto/fortress/internal/pins"
	"github.com/carverauto/fortress/internal/testutil"
)

// TestAdoptAfterRestart: an agent pins Shield, attaches and filters, then
// dies without cleanup; filtering continues with no process holding
// anything, and a new process adopts the pins with rules and counters
// intact, reloading nothing.
func TestAdoptAfterRestart(t *testing.T) {
	newShield(t, Config{}) // root and rlimit
	root := pins.Root(testutil.TempBPFFS(t))
	lab := newLab(t)
	cfg := Config{PinRoot: root, Gateways: []netip.Addr{netip.MustParseAddr("10.66.2.2")}}

	s1, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.B.Do(func() error { return s1.Attach(lab.B.Iface, Native) }); err != nil {
		t.Fatal(err)
	}
	rules := []lpm.Rule{rule("10.66.0.0/16", lpm.Drop, false), rule("fd66::/64", lpm.Drop, false)}
	if _, err := s1.Apply(rules, false); err != nil {
		t.Fatal(err)
	}
	rx, err := lab.B.ListenUDP(7779)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	a := netip.MustParseAddr
	send := func(n int) {
		t.Helper()
		if err := lab.A.SendUDP(a("10.66.1.2"), a("10.66.0.2"), 7779, n); err != nil {
			t.Fatal(err)
		}
		if err := lab.A.SendUDP(a("10.66.2.2"), a("10.66.0.2"), 7779, n); err != nil {
			t.Fatal(err)
		}
	}
	send(10)
	progInfo, _ := s1.Program().Info()
	progID, _ := progInfo.ID()
	// The agent dies: file descriptors close, pins remain.
	s1.objs.Close()
	for _, l := range s1.links {
		l.Close()
	}
	s1.syncMap.Close()
	s1.syncIn.Close()

	send(10) // nobody holds Shield open: the pinned link keeps it attached
	if !eventually(func() bool { return rx.Count(a("10.66.2.2")) == 20 }) {
		t.Fatalf("gateway traffic: %d of 20 arrived", rx.Count(a("10.66.2.2")))
	}
	if got := rx.Count(a("10.66.1.2")); got != 0 {
		t.Fatalf("%d blocked datagrams passed while no agent ran", got)
	}

	// With no agent running, the CLI's read-only view names rules and counts.
	pinned, st, err := ReadPinned(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(pinned) == 0 || pinned[0].Rule.Prefix.String() != "10.66.0.0/16" || pinned[0].Packets != 20 || st.Drop != 20 {
		t.Fatalf("read pinned stats: %+v totals %+v", pinned, st)
	}

	s2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	// Adoption of an identical program keeps the pinned one running.
	linkProg, err := ebpf.LoadPinnedProgram(root.Path(pins.Shield, "xdp_shield"), nil)
	if err != nil {
		t.Fatal(err)
	}
	li, _ := linkProg.Info()
	linkProg.Close()
	if id, _ := li.ID(); id != progID {
		t.Fatalf("pinned program replaced (id %d, was %d) although it is the embedded one", id, progID)
	}
	if !s2.Adopted() || s2.Applied().Rules != 2 || s2.Applied().DryRun {
		t.Fatalf("adopted %v, applied %+v", s2.Adopted(), s2.Applied())
	}
	if act, err := s2.ActiveRuleStats(); err != nil || len(act) != 1 || act[0].Packets != 20 {
		t.Fatalf("active rule stats %+v, %v: want the one rule that matched", act, err)
	}
	if got := s2.Interfaces(); len(got) != 1 || got[0] != lab.B.Iface {
		t.Fatalf("adopted links %v, want [%s]", got, lab.B.Iface)
	}
	m := countsByRule(t, s2)
	if m["10.66.0.0/16"].Packets != 20 {
		t.Fatalf("adopted counter for 10.66.0.0/16 is %d, want 20 (rule state lost?)", m["10.66.0.0/16"].Packets)
	}
	// Same rules again: slots and counters carry on.
	if _, err := s2.Apply(rules, false); err != nil {
		t.Fatal(err)
	}
	send(5)
	if !eventually(func() bool { return countsByRule(t, s2)["10.66.0.0/16"].Packets == 25 }) {
		t.Fatalf("counter after adoption and re-apply: %d, want 25", countsByRule(t, s2)["10.66.0.0/16"].Packets)
	}
}

// TestAdoptReplacesDifferentProgram: a restart with other gateways (a
// different program) switches the link atomically; traffic from a source
// blocked before and after never passes meanwhile.
func TestAdoptReplacesDifferentProgram(t *testing.T) {
	newShield(t, Config{})
	root := pins.Root(testutil.TempBPFFS(t))
	lab := newLab(t)
	a := netip.MustParseAddr
	cfg := Config{PinRoot: root, Gateways: []netip.Addr{a("10.66.2.2")}}
	s1, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.B.Do(func() error { return s1.Attach(lab.B.Iface, Native) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Apply([]lpm.Rule{rule("10.66.0.0/16", lpm.Drop, false)}, false); err != nil {
		t.Fatal(err)
	}
	rx, err := lab.B.ListenUDP(7780)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	stop := flood(t, lab, a("10.66.1.2"), a("10.66.0.2"), 7780)
	time.Sleep(50 * time.Millisecond)
	s1.objs.Close()
	for _, l := range s1.links {
		l.Close()
	}
	cfg.Gateways = []netip.Addr{a("10.66.3.2")}
	s2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	time.Sleep(50 * time.Millisecond)
	sent := stop()
	if rx.Count(a("10.66.1.2")) != 0 || sent == 0 {
		t.Fatalf("blocked source: %d of %d datagrams passed during program replacement", rx.Count(a("10.66.1.2")), sent)
	}
	// The new gateway passes, the old one is now blocked.
	if err := lab.A.SendUDP(a("10.66.3.2"), a("10.66.0.2"), 7780, 5); err != nil {
		t.Fatal(err)
	}
	if err := lab.A.SendUDP(a("10.66.2.2"), a("10.66.0.2"), 7780, 5); err != nil {
		t.Fatal(err)
	}
	if !eventually(func() bool { return rx.Count(a("10.66.3.2")) == 5 }) {
		t.Fatalf("new gateway: %d of 5 arrived", rx.Count(a("10.66.3.2")))
	}
	if rx.Count(a("10.66.2.2")) != 0 {
		t.Fatal("old gateway still bypasses the rules")
	}
}

// TestGrowUnderTraffic: a set larger than the maps forces new maps and a
// new program; the switch happens through the link with no gap.
func TestGrowUnderTraffic(t *testing.T) {
	s := newShield(t, Config{})
	lab := newLab(t)
	attachIn(t, s, lab.B)
	a := netip.MustParseAddr
	block := rule("10.66.1.0/24", lpm.Drop, false)
	if _, err := s.Apply([]lpm.Rule{block}, false); err != nil {
		t.Fatal(err)
	}
	before := s.Capacity()
	rx, err := lab.B.ListenUDP(7781)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if err := lab.A.SendUDP(a("10.66.1.2"), a("10.66.0.2"), 7781, 7); err != nil {
		t.Fatal(err)
	}
	stop := flood(t, lab, a("10.66.1.2"), a("10.66.0.2"), 7781)
	big := lpm.Generate(9, 30000, 5000)
	var rules []lpm.Rule
	for _, r := range big {
		if !r.Prefix.Overlaps(netip.MustParsePrefix("10.66.0.0/16")) {
			rules = append(rules, r)
		}
	}
	rules = append(rules, block)
	res, err := s.Apply(rules, false)
	stop()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reloaded || s.Capacity() == before {
		t.Fatalf("set of %d rules did not grow the maps (capacity %+v)", len(rules), s.Capacity())
	}
	if got := rx.Count(a("10.66.1.2")); got != 0 {
		t.Fatalf("%d blocked datagrams passed while the maps grew", got)
	}
	if c := countsByRule(t, s)["10.66.1.0/24"]; c.Packets < 7 {
		t.Fatalf("counter of a kept rule lost across growth: %d", c.Packets)
	}
}
