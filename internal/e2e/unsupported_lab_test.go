package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"

	"github.com/carverauto/fortress/internal/probe"
	"github.com/carverauto/fortress/internal/testutil"
	"github.com/carverauto/fortress/pkg/fortress"
)

// expectSentinelUnavailable ends a test of the installed agent on a kernel
// where Sentinel cannot run (testutil.SentinelUnsupported: arm64 before
// 6.4), after checking what the installed binaries say there:
// "fortressctl probe" reports bpf_trampoline and lsm as not usable and
// why, and the agent starts with Sentinel unavailable for that reason.
// Elsewhere it does nothing.
func (r *rig) expectSentinelUnavailable() {
	t := r.t
	t.Helper()
	if testutil.SentinelUnsupported() == "" {
		return
	}
	out, err := exec.Command(ctlBin, "probe", "--json").Output()
	var rep probe.Report
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		t.Fatalf("fortressctl probe --json: %v, %v: %s", err, jerr, out)
	}
	for _, name := range []string{probe.Trampoline, probe.LSM} {
		c, ok := rep.Get(name)
		if !ok || c.OK || !strings.Contains(c.Reason, "cannot attach BPF trampolines") {
			t.Fatalf("fortressctl probe: %s = %+v, want not usable for want of trampolines", name, c)
		}
	}
	r.writeConfig("", "")
	r.startAgent(fortress.SentinelUnavailable)
	st, err := r.status()
	r.stopAgent(syscall.SIGTERM)
	r.everStarted = false // nothing to remove: Sentinel never loaded
	if err != nil {
		t.Fatalf("agent status: %v", err)
	}
	testutil.ExpectSentinelStatusUnavailable(t, st.Sentinel.State, st.Sentinel.Reason)
}
