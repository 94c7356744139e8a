package shield

import (
	"net/netip"
	"testing"

	"github.com/carverauto/fortress/internal/lpm"
)

func TestRuleKeyRoundTrip(t *testing.T) {
	for _, c := range []string{"0.0.0.0/0", "1.2.3.4/32", "::/0", "::ffff:1.2.3.4/128", "2001:db8::1/128", "10.0.0.0/8"} {
		for _, r := range []lpm.Rule{{Prefix: netip.MustParsePrefix(c)}, {Prefix: netip.MustParsePrefix(c), Action: lpm.Allow}, {Prefix: netip.MustParsePrefix(c), LogOnly: true}} {
			if got := keyOf(r).rule(); got != r {
				t.Errorf("round trip of %v gave %v", r, got)
			}
		}
	}
	if keyOf(lpm.Rule{Prefix: netip.MustParsePrefix("1.2.3.4/32")}).prefixKey() == keyOf(lpm.Rule{Prefix: netip.MustParsePrefix("::ffff:1.2.3.4/128")}).prefixKey() {
		t.Fatal("IPv4 and IPv4-mapped IPv6 prefixes share a key")
	}
}

func TestSlotReuse(t *testing.T) {
	var rt ruleTable
	rt.init()
	a := lpm.Rule{Prefix: netip.MustParsePrefix("10.0.0.0/8")}
	b := lpm.Rule{Prefix: netip.MustParsePrefix("11.0.0.0/8")}
	p, _, err := rt.assign([]lpm.Rule{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if got := rt.commit(p); len(got) != 0 {
		t.Fatalf("first commit retired %v", got)
	}
	sa := rt.slots[keyOf(a).prefixKey()].slot
	// Same prefix, now log-only: a new slot, and the old one retires.
	a2 := a
	a2.LogOnly = true
	p, _, err = rt.assign([]lpm.Rule{a2, b})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.fresh) != 1 || p.slotsInUse(&rt) != 3 {
		t.Fatalf("fresh %d in use %d, want 1 and 3", len(p.fresh), p.slotsInUse(&rt))
	}
	retired := rt.commit(p)
	if len(retired) != 1 || retired[0] != sa {
		t.Fatalf("retired %v, want [%d]", retired, sa)
	}
	if rt.slots[keyOf(a2).prefixKey()].slot == sa {
		t.Fatal("mode change kept the slot: would mix drop and would-drop counts")
	}
}

func TestAssignRefusesDuplicates(t *testing.T) {
	var rt ruleTable
	rt.init()
	a := lpm.Rule{Prefix: netip.MustParsePrefix("10.0.0.0/8")}
	b := lpm.Rule{Prefix: netip.MustParsePrefix("11.0.0.0/8")}
	p, _, err := rt.assign([]lpm.Rule{a, b})
	if err != nil {
		t.Fatal(err)
	}
	rt.commit(p)
	aLog := a
	aLog.LogOnly = true
	c := lpm.Rule{Prefix: netip.MustParsePrefix("12.0.0.0/8")}
	for name, rules := range map[string][]lpm.Rule{
		"kept twice":        {a, b, a},
		"kept then changed": {a, aLog},
		"changed then kept": {aLog, a},
		"fresh twice":       {c, b, c},
	} {
		if _, _, err := rt.assign(rules); err == nil {
			t.Errorf("%s: duplicate prefix accepted", name)
		}
	}
	// A refused assignment leaves the table as it was.
	if len(rt.slots) != 2 || rt.next != 3 {
		t.Fatalf("table changed by refused assignments: %d rules, next %d", len(rt.slots), rt.next)
	}
}
