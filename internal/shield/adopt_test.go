package shield

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
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
	cfg := Config{PinRoot: root, Management: []netip.Addr{netip.MustParseAddr("10.66.2.2")}}

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
	progInfo, _ := s1.Info().Program.Info()
	progID, _ := progInfo.ID()
	// The agent dies: file descriptors close, pins remain.
	s1.objs.Close()
	s1.links.close()
	s1.rcu.close()
	s1.counters.close()

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
	linkProg, err := ebpf.LoadPinnedProgram(root.Path(pins.Shield, programPin), nil)
	if err != nil {
		t.Fatal(err)
	}
	li, _ := linkProg.Info()
	linkProg.Close()
	if id, _ := li.ID(); id != progID {
		t.Fatalf("pinned program replaced (id %d, was %d) although it is the embedded one", id, progID)
	}
	if !s2.Info().Adopted || s2.Applied().Rules != 2 || s2.Applied().DryRun {
		t.Fatalf("adopted %v, applied %+v", s2.Info().Adopted, s2.Applied())
	}
	if act, err := s2.Counters().ActiveRuleStats(); err != nil || len(act) != 1 || act[0].Packets != 20 {
		t.Fatalf("active rule stats %+v, %v: want the one rule that matched", act, err)
	}
	if got := s2.Info().Interfaces; len(got) != 1 || got[0] != lab.B.Iface {
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
	cfg := Config{PinRoot: root, Management: []netip.Addr{a("10.66.2.2")}}
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
	s1.links.close()
	cfg.Management = []netip.Addr{a("10.66.3.2")}
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
	before := s.Info().Capacity
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
	if !res.Reloaded || s.Info().Capacity == before {
		t.Fatalf("set of %d rules did not grow the maps (capacity %+v)", len(rules), s.Info().Capacity)
	}
	if got := rx.Count(a("10.66.1.2")); got != 0 {
		t.Fatalf("%d blocked datagrams passed while the maps grew", got)
	}
	if c := countsByRule(t, s)["10.66.1.0/24"]; c.Packets < 7 {
		t.Fatalf("counter of a kept rule lost across growth: %d", c.Packets)
	}
}

// TestRestartReusesNamedSet: a set applied under a name is found in the
// pinned tables by a restarted process, which then neither compiles nor
// swaps when told to apply it again; another mode or name is applied.
func TestRestartReusesNamedSet(t *testing.T) {
	newShield(t, Config{}) // root and rlimit
	root := pins.Root(testutil.TempBPFFS(t))
	cfg := Config{PinRoot: root}
	s1, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rules := []lpm.Rule{rule("10.0.0.0/8", lpm.Drop, false), rule("2001:db8::/32", lpm.Drop, false)}
	id := SetIDForList("00ff", false)
	first, err := s1.ApplyAs(rules, false, id)
	if err != nil || first.Reused {
		t.Fatalf("first apply: %+v, %v", first, err)
	}
	if again, err := s1.ApplyAs(rules, false, id); err != nil || !again.Reused || again.Generation != first.Generation {
		t.Fatalf("same named set again: %+v, %v; want reused, generation %d", again, err, first.Generation)
	}
	s1.Close() // the agent exits; pins stay

	s2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if !s2.Info().Adopted || !s2.Holds(id) || s2.Holds(SetIDForList("00ff", true)) || s2.Applied().Rules != 2 {
		t.Fatalf("adopted %v, holds %v, applied %+v", s2.Info().Adopted, s2.Holds(id), s2.Applied())
	}
	res, err := s2.ApplyAs(rules, false, id)
	if err != nil || !res.Reused || res.Generation != first.Generation {
		t.Fatalf("re-apply after restart: %+v, %v; want reused in generation %d", res, err, first.Generation)
	}
	if got := run(t, s2, Frame(netip.MustParseAddr("10.1.2.3"), dst)); got != xdpDrop {
		t.Fatal("adopted set does not drop")
	}
	if st, err := s2.RuleStats(); err != nil || len(st) != 2 {
		t.Fatalf("rule stats after reuse: %+v, %v; want both rules named", st, err)
	}
	res, err = s2.ApplyAs(rules, true, SetIDForList("00ff", true))
	if err != nil || res.Reused || res.Generation == first.Generation || !s2.Holds(SetIDForList("00ff", true)) {
		t.Fatalf("other mode: %+v, %v; want a swap", res, err)
	}
}

// TestOlderPinsMigrate: pins of an older layout (per-CPU counters by
// slot, a shorter control word) are not adopted; the pinned link is
// switched to a fresh program and the pins replaced, and the reason is
// recorded.
func TestOlderPinsMigrate(t *testing.T) {
	s0 := newShield(t, Config{}) // root and rlimit
	root := pins.Root(testutil.TempBPFFS(t))
	if err := root.Ensure(pins.Shield); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 16, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	stats, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer stats.Close()
	for name, o := range map[string]pinner{"xdp_shield": s0.Info().Program, "shield_state": old, "rule_stats": stats} {
		if err := o.Pin(root.Path(pins.Shield, name)); err != nil {
			t.Fatal(err)
		}
	}
	var rec recorder
	s, err := Open(Config{PinRoot: root, Audit: &rec})
	if err != nil {
		t.Fatalf("open over older pins: %v", err)
	}
	defer s.Close()
	if s.Info().Adopted {
		t.Fatal("older pins adopted")
	}
	if _, err := os.Stat(root.Path(pins.Shield, "rule_stats")); !os.IsNotExist(err) {
		t.Fatalf("older counter pin left behind: %v", err)
	}
	if _, err := os.Stat(root.Path(pins.Shield, "rule_hits")); err != nil {
		t.Fatalf("new pins missing: %v", err)
	}
	if !rec.has("replace", "another layout") {
		t.Fatalf("no audit record of the replacement with its reason: %+v", rec.records)
	}
	if _, err := s.Apply([]lpm.Rule{rule("10.0.0.0/8", lpm.Drop, false)}, false); err != nil {
		t.Fatal(err)
	}
}

type recorder struct {
	records []string
}

func (r *recorder) Record(action, object string, err error, details map[string]any) {
	r.records = append(r.records, fmt.Sprintf("%s %s %v %v", action, object, err, details))
}

func (r *recorder) has(action, text string) bool {
	for _, x := range r.records {
		if strings.HasPrefix(x, action+" ") && strings.Contains(x, text) {
			return true
		}
	}
	return false
}
