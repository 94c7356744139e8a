package probe

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf/rlimit"

	"github.com/carverauto/fortress/internal/caps"
	"github.com/carverauto/fortress/internal/testutil"
)

const childEnv = "FORTRESS_PROBE_CHILD"

// TestMain runs the probe and prints its report when the test binary is
// TestNonRootWithCapabilitySet's child.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := json.NewEncoder(os.Stdout).Encode(Run()); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestNonRootWithCapabilitySet runs the probe as nobody holding only
// ambient capabilities, as the systemd unit grants them: with the
// required set every Shield trial passes (XDP load, native and generic
// attach through a bpf_link in a namespace of its own); with CAP_BPF alone
// they fail and the probe names what is missing. In the lab, where BPF LSM
// works, the trial LSM program must load, attach and fire with the set too.
func TestNonRootWithCapabilitySet(t *testing.T) {
	testutil.RequireRoot(t)
	exe := copyExecutable(t)
	full := caps.Required(caps.Shield, caps.Sentinel)
	// What LimitMEMLOCK=infinity does in the unit: 5.10 charges maps to
	// RLIMIT_MEMLOCK, and the child may not raise it.
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}

	r := probeAs(t, exe, full)
	for _, name := range []string{CapsShield, CapsSentinel, XDP, XDPNative, XDPGeneric, BPFLink, RingBuf, LPMTrie, MapInMap} {
		if c, _ := r.Get(name); !c.OK {
			t.Errorf("as nobody with %s: %s: %s", caps.Names(full), name, c.Reason)
		}
	}

	if testutil.InLab() && r.OK(Trampoline) {
		if c, _ := r.Get(LSM); !c.OK {
			t.Errorf("as nobody with %s, in the lab: %s: %s", caps.Names(full), LSM, c.Reason)
		}
	}

	r = probeAs(t, exe, []caps.Capability{caps.BPF})
	c, _ := r.Get(CapsShield)
	if c.OK || !strings.Contains(c.Reason, caps.NetAdmin.Name) || strings.Contains(c.Reason, caps.BPF.Name) {
		t.Errorf("as nobody with CAP_BPF only: %s ok=%v %q; want it to name CAP_NET_ADMIN and not CAP_BPF", CapsShield, c.OK, c.Reason)
	}
	if r.OK(XDPNative) || r.OK(XDP) {
		t.Errorf("as nobody with CAP_BPF only, XDP loaded: the kernel asks for CAP_NET_ADMIN, so the test proves nothing")
	}
	if r.OK(LSM) {
		t.Errorf("as nobody with CAP_BPF only, the LSM trial passed: the kernel asks for CAP_PERFMON")
	}
}

func probeAs(t *testing.T, exe string, set []caps.Capability) Report {
	t.Helper()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	ambient := make([]uintptr, len(set))
	for i, c := range set {
		ambient[i] = uintptr(c.Bit)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
		AmbientCaps: ambient,
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe as nobody with %s: %v\n%s", caps.Names(set), err, out)
	}
	var r Report
	line, _, _ := strings.Cut(string(out), "\n")
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatalf("probe output: %v\n%s", err, out)
	}
	eff := strings.Join(func() []string {
		var s []string
		for _, c := range r.Checks {
			if c.Name == CapsShield || c.Name == CapsSentinel {
				s = append(s, c.Name+"="+c.Reason)
			}
		}
		return s
	}(), "; ")
	t.Logf("as nobody with %s: %s", caps.Names(set), eff)
	return r
}

// copyExecutable puts the test binary where nobody can run it: the build
// cache and t.TempDir are root's alone.
func copyExecutable(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "fortress-probe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "probe.test")
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, src); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}
