package probe

import (
	"strings"
	"testing"

	"github.com/carverauto/fortress/internal/testutil"
)

func TestReportConsistent(t *testing.T) {
	testutil.RequireRoot(t)
	r := Run()
	for _, c := range r.Checks {
		t.Logf("%-20s ok=%-5v %s", c.Name, c.OK, c.Reason)
		if c.Reason == "" {
			t.Errorf("check %s has no reason", c.Name)
		}
	}
	for _, name := range []string{BTF, XDP, RingBuf, LPMTrie, MapInMap, CapsShield, CapsSentinel, Memlock, Trampoline, LSMListed, LSM} {
		if _, ok := r.Get(name); !ok {
			t.Errorf("report lacks check %s", name)
		}
	}
	if !r.OK(BTF) {
		t.Errorf("btf: %+v", r)
	}
	// Root holds every capability, and raises RLIMIT_MEMLOCK where needed.
	for _, name := range []string{CapsShield, CapsSentinel, Memlock} {
		if c, _ := r.Get(name); !c.OK {
			t.Errorf("%s as root: %s", name, c.Reason)
		}
	}
	if testutil.InLab() {
		if !r.OK(Trampoline) {
			// arm64 before 6.4: the probe must say why LSM cannot work.
			if c, _ := r.Get(LSM); c.OK || !strings.Contains(c.Reason, "cannot attach BPF trampolines") {
				t.Fatalf("no trampolines on this kernel, yet lsm ok=%v: %s", c.OK, c.Reason)
			}
			return
		}
		if !r.OK(LSM) {
			c, _ := r.Get(LSM)
			t.Fatalf("BPF LSM not usable inside vmlab: %s", c.Reason)
		}
		return
	}
	lsm, _ := r.Get(LSM)
	if r.OK(LSMListed) && !lsm.OK {
		// bpf is listed but the trial failed: the reason must be the
		// kernel's error from the load (EPERM on the 6.18 hosts).
		if _, err := loadLsmprobe(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(lsm.Reason, "load lsm program") {
			t.Errorf("lsm reason %q does not carry the load error", lsm.Reason)
		}
		if strings.Contains(lsm.Reason, "operation not permitted") {
			t.Logf("host refuses BPF LSM with EPERM, as documented in KERNEL-LAB.md")
		}
	}
	if lsm.OK && !r.OK(LSMListed) {
		t.Errorf("lsm usable but bpf not listed: %+v", r)
	}
}

func TestLSMUnusableNamesEPERM(t *testing.T) {
	testutil.RequireRoot(t)
	if testutil.InLab() {
		t.Skip("the lab kernels allow BPF LSM; TestReportConsistent asserts it works there")
	}
	err := trialLSM()
	if err == nil {
		t.Skip("this host allows BPF LSM loads; nothing to assert about refusal")
	}
	r := Run()
	lsm, _ := r.Get(LSM)
	if lsm.OK {
		t.Fatalf("trial failed with %v but report says usable", err)
	}
	if r.OK(LSMListed) && !strings.Contains(lsm.Reason, Reason(err)) {
		t.Errorf("reason %q does not contain the load error %q", lsm.Reason, err)
	}
	if strings.Contains(lsm.Reason, "MEMLOCK") {
		t.Errorf("reason %q carries the misleading memlock hint", lsm.Reason)
	}
}
