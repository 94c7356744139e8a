package testutil

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// SentinelUnsupported returns why Sentinel cannot run on the running
// kernel and architecture, or "" where it must run (every amd64 lab
// kernel, arm64 from 6.4). arm64 kernels attach BPF trampolines to kernel
// functions, which every LSM and fentry program needs, only from 6.4
// (ftrace direct calls); before, the attach fails with ENOTSUPP. The lab's
// arm64 6.1 kernel is such a kernel.
func SentinelUnsupported() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return sentinelUnsupported(runtime.GOARCH, unix.ByteSliceToString(u.Release[:]))
}

func sentinelUnsupported(goarch, release string) string {
	if goarch != "arm64" {
		return ""
	}
	f := strings.SplitN(release, ".", 3)
	if len(f) < 2 {
		return ""
	}
	major, err1 := strconv.Atoi(f[0])
	minor, err2 := strconv.Atoi(strings.TrimRightFunc(f[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil || major > 6 || major == 6 && minor >= 4 {
		return ""
	}
	return fmt.Sprintf("arm64 kernel %s cannot attach BPF trampolines to kernel functions (LSM, fentry: 6.4+, ftrace direct calls)", release)
}

// ExpectSentinelUnavailable is for lab tests of Sentinel, after they tried
// to start it. Where Sentinel must run (SentinelUnsupported is empty) it
// does nothing. Where the kernel cannot run it, err (what the start
// returned) must pass CheckSentinelUnavailable, and the test then ends as
// skipped, naming the reason and the error; otherwise the test fails.
func ExpectSentinelUnavailable(t testing.TB, err, unavailable error) {
	t.Helper()
	reason := SentinelUnsupported()
	if reason == "" {
		return
	}
	if cerr := CheckSentinelUnavailable(err, unavailable); cerr != nil {
		t.Fatal(cerr)
	}
	t.Skipf("Sentinel is unavailable here, as it must be: %s; start said: %v", reason, err)
}

// CheckSentinelUnavailable says whether err, what starting Sentinel
// returned on a kernel that cannot run it (SentinelUnsupported), is right:
// it must wrap unavailable (sentinel.ErrUnavailable, which this package
// cannot import) and carry the kernel's refusal of the attach (ENOTSUPP,
// "not supported"). A Sentinel that started there, or failed for another
// reason, is wrong: it must never claim to protect, and must say why it
// cannot.
func CheckSentinelUnavailable(err, unavailable error) error {
	reason := SentinelUnsupported()
	switch {
	case reason == "":
		return errors.New("sentinel can run on this kernel")
	case err == nil:
		return fmt.Errorf("%s, yet Sentinel started", reason)
	case !errors.Is(err, unavailable):
		return fmt.Errorf("%s, and Sentinel failed otherwise than unavailable: %w", reason, err)
	case !strings.Contains(err.Error(), "not supported"):
		return fmt.Errorf("%s, and Sentinel is unavailable, but not for the kernel's refusal (ENOTSUPP): %w", reason, err)
	}
	return nil
}

// ExpectSentinelStatusUnavailable is ExpectSentinelUnavailable for code
// that reports Sentinel by a state and a reason (fortress.Status, the
// agent's status socket). Where the kernel cannot run Sentinel, the state
// must be "unavailable" and the reason must say the BPF LSM is unusable,
// that the kernel cannot attach trampolines (the probe's verdict) and how
// the attach failed (ENOTSUPP); the test then ends as skipped.
func ExpectSentinelStatusUnavailable(t testing.TB, state, reason string) {
	t.Helper()
	why := SentinelUnsupported()
	if why == "" {
		return
	}
	if state != "unavailable" {
		t.Fatalf("%s, yet Sentinel is %q (%s)", why, state, reason)
	}
	for _, want := range []string{"BPF LSM unusable", "cannot attach BPF trampolines", "not supported"} {
		if !strings.Contains(reason, want) {
			t.Fatalf("%s; Sentinel is unavailable, but its reason lacks %q: %s", why, want, reason)
		}
	}
	t.Skipf("Sentinel is unavailable here, as it must be: %s; status says: %s", why, reason)
}
