package shield

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/carverauto/fortress/internal/lpm"
	"github.com/carverauto/fortress/internal/testutil"
)

const (
	xdpDrop = 1
	xdpPass = 2
)

func newShield(t *testing.T, cfg Config) *Shield {
	t.Helper()
	testutil.RequireRoot(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg)
	if errors.Is(err, ebpf.ErrNotSupported) {
		testutil.MissingFeature(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rule(cidr string, a lpm.Action, logOnly bool) lpm.Rule {
	return lpm.Rule{Prefix: netip.MustParsePrefix(cidr), Action: a, LogOnly: logOnly}
}

func run(t *testing.T, s *Shield, frame []byte) uint32 {
	t.Helper()
	ret, err := s.Info().Program.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return ret
}

func countsByRule(t *testing.T, s *Shield) map[string]RuleStat {
	t.Helper()
	st, err := s.RuleStats()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]RuleStat{}
	for _, r := range st {
		m[r.Rule.Prefix.String()] = r
	}
	return m
}

var (
	gw4 = netip.MustParseAddr("198.51.100.7")
	gw6 = netip.MustParseAddr("2001:db8:ffff::7")
	dst = netip.MustParseAddr("192.0.2.1")
	d6  = netip.MustParseAddr("2001:db8::1")
)

func TestVerdicts(t *testing.T) {
	s := newShield(t, Config{Management: []netip.Addr{gw4, gw6}})
	rules := []lpm.Rule{
		rule("0.0.0.0/0", lpm.Drop, false),
		rule("10.0.0.0/8", lpm.Allow, false),
		rule("10.1.0.0/16", lpm.Drop, false),
		rule("10.1.2.0/24", lpm.Drop, true),
		rule("::/0", lpm.Drop, false),
		rule("2001:db8:1::/48", lpm.Allow, false),
		rule("2001:db8:1:2::/64", lpm.Drop, false),
	}
	if _, err := s.Apply(rules, false); err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	cases := []struct {
		name  string
		frame []byte
		want  uint32
		rule  string // rule whose counter must rise, "" for none
	}{
		{"v4 default drop", Frame(a("203.0.113.9"), dst), xdpDrop, "0.0.0.0/0"},
		{"v4 allow exception", Frame(a("10.9.9.9"), dst), xdpPass, "10.0.0.0/8"},
		{"v4 drop inside allow", Frame(a("10.1.9.9"), dst), xdpDrop, "10.1.0.0/16"},
		{"v4 log-only inside drop", Frame(a("10.1.2.3"), dst), xdpPass, "10.1.2.0/24"},
		{"v4 gateway inside 0/0", Frame(gw4, dst), xdpPass, ""},
		{"v4 802.1Q", Frame(a("10.1.9.9"), dst, 100), xdpDrop, "10.1.0.0/16"},
		{"v4 QinQ", Frame(a("10.1.9.9"), dst, 100, 200), xdpDrop, "10.1.0.0/16"},
		{"v4 QinQ gateway", Frame(gw4, dst, 100, 200), xdpPass, ""},
		{"v6 default drop", Frame(a("2001:db8:5::1"), d6), xdpDrop, "::/0"},
		{"v6 allow", Frame(a("2001:db8:1:3::1"), d6), xdpPass, "2001:db8:1::/48"},
		{"v6 drop inside allow", Frame(a("2001:db8:1:2::1"), d6), xdpDrop, "2001:db8:1:2::/64"},
		{"v6 gateway inside ::/0", Frame(gw6, d6), xdpPass, ""},
		{"v6 QinQ", Frame(a("2001:db8:1:2::1"), d6, 7, 8), xdpDrop, "2001:db8:1:2::/64"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := countsByRule(t, s)
			if got := run(t, s, c.frame); got != c.want {
				t.Fatalf("verdict %d, want %d", got, c.want)
			}
			after := countsByRule(t, s)
			for p, r := range after {
				d := r.Packets - before[p].Packets
				db := r.Bytes - before[p].Bytes
				switch {
				case p == c.rule && (d != 1 || db != uint64(len(c.frame))):
					t.Errorf("rule %s: +%d packets +%d bytes, want +1 and +%d", p, d, db, len(c.frame))
				case p != c.rule && d != 0:
					t.Errorf("rule %s counted a packet it did not match", p)
				}
			}
		})
	}
}

func TestMalformedFramesPass(t *testing.T) {
	s := newShield(t, Config{})
	if _, err := s.Apply([]lpm.Rule{rule("0.0.0.0/0", lpm.Drop, false), rule("::/0", lpm.Drop, false)}, false); err != nil {
		t.Fatal(err)
	}
	full := Frame(netip.MustParseAddr("1.2.3.4"), dst)
	full6 := Frame(netip.MustParseAddr("2001::1"), d6)
	arp := append([]byte{}, full...)
	arp[12], arp[13] = 0x08, 0x06
	badVer := append([]byte{}, full...)
	badVer[14] = 0x65
	shortIHL := append([]byte{}, full...)
	shortIHL[14] = 0x44
	frames := map[string][]byte{
		"empty-ish":              make([]byte, 14)[:14],
		"eth only":               full[:14],
		"ipv4 truncated":         full[:14+19],
		"ipv6 truncated":         full6[:14+39],
		"vlan truncated":         Frame(netip.MustParseAddr("1.2.3.4"), dst, 5)[:16],
		"qinq truncated":         Frame(netip.MustParseAddr("1.2.3.4"), dst, 5, 6)[:20],
		"arp ethertype":          arp,
		"ip version 6 in 0x0800": badVer,
		"ihl below 5":            shortIHL,
	}
	for name, f := range frames {
		if got := run(t, s, f); got != xdpPass {
			t.Errorf("%s: verdict %d, want pass", name, got)
		}
	}
	if got := run(t, s, full); got != xdpDrop {
		t.Fatalf("well-formed frame from a blocked source: verdict %d, want drop", got)
	}
	st, err := s.Counters().Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Unparsed < 7 || st.NonIP < 1 || st.Drop != 1 {
		t.Fatalf("stats %+v: want >=7 unparsed, >=1 non-IP, 1 drop", st)
	}
}

func TestDryRun(t *testing.T) {
	s := newShield(t, Config{})
	if _, err := s.Apply([]lpm.Rule{rule("10.0.0.0/8", lpm.Drop, false)}, true); err != nil {
		t.Fatal(err)
	}
	f := Frame(netip.MustParseAddr("10.2.3.4"), dst)
	if got := run(t, s, f); got != xdpPass {
		t.Fatalf("dry run: verdict %d, want pass", got)
	}
	st, _ := s.Counters().Stats()
	if st.WouldDrop != 1 || st.Drop != 0 {
		t.Fatalf("dry run stats %+v", st)
	}
	if r := countsByRule(t, s)["10.0.0.0/8"]; r.Packets != 1 || r.Kind(true) != "would-drop" {
		t.Fatalf("dry run rule counter %+v", r)
	}
	// Enforce: the same rule keeps its counter and now drops.
	if _, err := s.Apply([]lpm.Rule{rule("10.0.0.0/8", lpm.Drop, false)}, false); err != nil {
		t.Fatal(err)
	}
	if got := run(t, s, f); got != xdpDrop {
		t.Fatalf("enforce: verdict %d, want drop", got)
	}
	if r := countsByRule(t, s)["10.0.0.0/8"]; r.Packets != 2 {
		t.Fatalf("counter not kept across update: %+v", r)
	}
}

func TestCountersKeptAndRetired(t *testing.T) {
	s := newShield(t, Config{})
	a, b := rule("10.0.0.0/8", lpm.Drop, false), rule("11.0.0.0/8", lpm.Drop, false)
	if _, err := s.Apply([]lpm.Rule{a, b}, false); err != nil {
		t.Fatal(err)
	}
	run(t, s, Frame(netip.MustParseAddr("10.0.0.1"), dst))
	run(t, s, Frame(netip.MustParseAddr("11.0.0.1"), dst))
	// b leaves, c arrives and may reuse b's slot: it must start at zero.
	c := rule("12.0.0.0/8", lpm.Drop, false)
	if _, err := s.Apply([]lpm.Rule{a, c}, false); err != nil {
		t.Fatal(err)
	}
	m := countsByRule(t, s)
	if m["10.0.0.0/8"].Packets != 1 {
		t.Fatalf("kept rule lost its counter: %+v", m["10.0.0.0/8"])
	}
	if m["12.0.0.0/8"].Packets != 0 {
		t.Fatalf("new rule inherited counts: %+v", m["12.0.0.0/8"])
	}
	if _, ok := m["11.0.0.0/8"]; ok {
		t.Fatal("removed rule still listed")
	}
	if got := run(t, s, Frame(netip.MustParseAddr("11.0.0.1"), dst)); got != xdpPass {
		t.Fatal("removed rule still drops")
	}
}

func TestInvalidPolicyKeepsRunningSet(t *testing.T) {
	s := newShield(t, Config{})
	if _, err := s.Apply([]lpm.Rule{rule("10.0.0.0/8", lpm.Drop, false)}, false); err != nil {
		t.Fatal(err)
	}
	_, err := s.Apply([]lpm.Rule{rule("11.0.0.0/8", lpm.Drop, false), rule("11.0.0.0/8", lpm.Allow, false)}, false)
	if err == nil {
		t.Fatal("duplicate prefix accepted")
	}
	if got := run(t, s, Frame(netip.MustParseAddr("10.0.0.1"), dst)); got != xdpDrop {
		t.Fatal("running set changed by a refused policy")
	}
	if got := run(t, s, Frame(netip.MustParseAddr("11.0.0.1"), dst)); got != xdpPass {
		t.Fatal("refused policy took effect")
	}
}
