package caps

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n", 0x1ffffffffff, true},
		{"CapEff:\t000000c000201004\n", 1<<39 | 1<<38 | 1<<21 | 1<<12 | 1<<2, true},
		{"CapPrm:\t0\n", 0, false},
		{"CapEff:\tzz\n", 0, false},
	} {
		got, err := ParseStatus(strings.NewReader(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseStatus(%q) = %#x, %v; want %#x, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestMissing(t *testing.T) {
	var set uint64
	for _, c := range Required(Shield, Sentinel) {
		set |= 1 << c.Bit
	}
	if m := Missing(set, Shield); len(m) != 0 {
		t.Fatalf("the full set misses %s for Shield", Describe(m))
	}
	m := Missing(set, Sentinel)
	if len(m) != 1 || m[0].Cap != SysPtrace || !m[0].Optional {
		t.Fatalf("the full set misses %q for Sentinel; want only the optional CAP_SYS_PTRACE", Describe(m))
	}
	noNet := set &^ (1 << NetAdmin.Bit)
	if m := Missing(noNet, Shield); len(m) != 1 || m[0].Cap != NetAdmin {
		t.Fatalf("without CAP_NET_ADMIN Shield misses %q", Describe(m))
	}
	if m := Missing(noNet, Sentinel); len(m) != 1 {
		t.Fatalf("Sentinel does not need CAP_NET_ADMIN, yet misses %q", Describe(m))
	}
	if m := Missing(1<<BPF.Bit, Sentinel); !strings.Contains(Describe(m), "CAP_PERFMON") || strings.Contains(Describe(m), "CAP_NET_ADMIN") {
		t.Fatalf("CAP_BPF alone: Sentinel misses %q", Describe(m))
	}
}

// TestUnitGrantsRequired keeps the shipped unit in step with the table:
// it grants exactly the required set, ambient and bounding, to a user
// that is not root.
func TestUnitGrantsRequired(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "systemd", "fortress-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	want := strings.Fields(Names(Required(Shield, Sentinel)))
	for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		if got := strings.Fields(keys[k]); !reflect.DeepEqual(got, want) {
			t.Errorf("%s=%s; want %s", k, keys[k], strings.Join(want, " "))
		}
	}
	if u := keys["User"]; u == "" || u == "root" || u == "0" {
		t.Errorf("User=%q: the agent must not run as root", u)
	}
	if keys["LimitMEMLOCK"] != "infinity" {
		t.Errorf("LimitMEMLOCK=%q: 5.10 charges maps to RLIMIT_MEMLOCK and the set has no CAP_SYS_RESOURCE", keys["LimitMEMLOCK"])
	}
}

func TestEffective(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc here")
	}
	set, err := Effective()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 && !Has(set, SysAdmin) {
		t.Fatalf("root without CAP_SYS_ADMIN (CapEff %#x)", set)
	}
}
