package probe

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/testutil"
)

// The lab tests expect Sentinel to be unavailable exactly where the probe
// finds no BPF trampolines for kernel functions (arm64 before 6.4).
func TestSentinelExpectationMatchesProbe(t *testing.T) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	noTrampolines := trampolineCheck(runtime.GOARCH, release) != nil
	if unsupported := testutil.SentinelUnsupported(); (unsupported != "") != noTrampolines {
		t.Errorf("%s on %s: lab tests expect Sentinel unsupported=%q, probe finds no trampolines=%v", release, runtime.GOARCH, unsupported, noTrampolines)
	}
}
