package testutil

import (
	"os"
	"testing"
)

// LabEnv is set to "1" by vmlab inside the virtual machine. There, a missing
// kernel feature is a failure, never a skip.
const LabEnv = "FORTRESS_VMLAB"

// InLab reports whether the test runs inside the vmlab virtual machine.
func InLab() bool { return os.Getenv(LabEnv) == "1" }

// RequireRoot skips (or fails in the lab) when the test lacks root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		MissingFeature(t, "needs root (CAP_BPF, CAP_NET_ADMIN)")
	}
}

// MissingFeature skips the test with the reason on a host, and fails it
// inside the lab, where every feature the tests need must be present.
func MissingFeature(t testing.TB, reason string) {
	t.Helper()
	if InLab() {
		t.Fatalf("kernel feature missing inside vmlab: %s", reason)
	}
	t.Skipf("skipped: %s", reason)
}
