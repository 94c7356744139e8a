package testutil

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// LabEnv is set to "1" by vmlab inside the virtual machine. There, a missing
// kernel feature is a failure, never a skip.
const LabEnv = "FORTRESS_VMLAB"

// InLab reports whether the test runs inside the vmlab virtual machine.
func InLab() bool { return os.Getenv(LabEnv) == "1" }

// UnprivilegedEnv set to "1" makes RequireRoot skip even as root. The race
// detector run uses it: it covers every test that runs without root, while
// the privileged tests run once, without the race detector, in the host run
// and in the lab.
const UnprivilegedEnv = "FORTRESS_TEST_UNPRIVILEGED"

// RequireRoot skips (or fails in the lab) when the test lacks root, or when
// the run is marked unprivileged.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Getenv(UnprivilegedEnv) == "1" && !InLab() {
		t.Skipf("skipped: needs root, and this run is unprivileged (%s=1); the privileged run covers it", UnprivilegedEnv)
	}
	if os.Geteuid() != 0 {
		MissingFeature(t, "needs root (CAP_BPF, CAP_NET_ADMIN)")
	}
}

// LSMReason is why a BPF LSM test skips on a host.
const LSMReason = "BPF LSM runs only inside vmlab (host kernel refuses LSM loads)"

// RequireLab is RequireRoot for a test that runs only inside the lab: on a
// host it skips with the reason (where the kernel feature it needs is
// absent, KERNEL-LAB.md).
func RequireLab(t testing.TB, reason string) {
	t.Helper()
	RequireRoot(t)
	if !InLab() {
		MissingFeature(t, reason)
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

// TempBPFFS mounts a private bpffs on a temporary directory for the test's
// pins and unmounts it afterwards, so tests never touch the production pin
// root.
func TempBPFFS(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		MissingFeature(t, "mount bpffs: "+err.Error())
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount test bpffs: %v", err)
		}
	})
	return dir
}
