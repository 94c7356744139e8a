package probe

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/carverauto/fortress/internal/caps"
)

// Names of the checks of what this process and architecture allow.
const (
	CapsShield   = "caps_shield"
	CapsSentinel = "caps_sentinel"
	Memlock      = "memlock"
	Trampoline   = "bpf_trampoline"
)

// capsCheck says which capabilities a layer needs that the effective set
// eff lacks (err: the set could not be read). Optional ones missing only
// show in the reason of a passing check.
func capsCheck(eff uint64, err error, layer string) (string, error) {
	if err != nil {
		return "", err
	}
	var required, optional []caps.Need
	for _, n := range caps.Missing(eff, layer) {
		if n.Optional {
			optional = append(optional, n)
		} else {
			required = append(required, n)
		}
	}
	if len(required) > 0 {
		return "", fmt.Errorf("this process lacks %s", caps.Describe(required))
	}
	reason := "holds " + caps.Names(caps.Required(layer))
	if len(optional) > 0 {
		reason += "; lacks " + caps.Describe(optional)
	}
	return reason, nil
}

// memlockCheck turns the result of raising RLIMIT_MEMLOCK into the check:
// it fails only on a kernel that charges maps to the limit (before 5.11)
// when the limit could not be raised.
func memlockCheck(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("this kernel charges BPF maps to RLIMIT_MEMLOCK (before 5.11) and it cannot be raised: "+
		"start the agent with LimitMEMLOCK=infinity or grant %s: %w", caps.SysResource.Name, err)
}

// trampolineCheck says whether the architecture's kernel can attach BPF
// trampolines to kernel functions, which LSM and fentry programs (all of
// Sentinel) need: x86-64 since 5.5. arm64 got BPF trampolines in 6.0 but
// can attach them to kernel functions only since 6.4 (ftrace direct
// calls); before, the attach fails with ENOTSUPP (measured on Debian's
// 6.1 arm64 cloud kernel).
func trampolineCheck(goarch, release string) error {
	var major, minor int
	switch goarch {
	case "amd64":
		major, minor = 5, 5
	case "arm64":
		major, minor = 6, 4
	default:
		return fmt.Errorf("fortress knows of no BPF trampoline on %s", goarch)
	}
	maj, min, ok := parseRelease(release)
	if !ok {
		return fmt.Errorf("kernel release %q: cannot tell whether %s has BPF trampolines (%d.%d+)", release, goarch, major, minor)
	}
	if maj < major || maj == major && min < minor {
		return fmt.Errorf("kernel %s on %s cannot attach BPF trampolines to kernel functions (%s: %d.%d+): LSM and fentry programs cannot attach, so Sentinel cannot run",
			release, goarch, goarch, major, minor)
	}
	return nil
}

// parseRelease reads major and minor from a release like 6.1.0-32-cloud-arm64.
func parseRelease(release string) (major, minor int, ok bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return major, minor, err1 == nil && err2 == nil
}
