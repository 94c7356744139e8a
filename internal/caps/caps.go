package caps

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Capability is one Linux capability: its name and its bit in the
// capability sets (include/uapi/linux/capability.h).
type Capability struct {
	Name string
	Bit  uint
}

// The capabilities Fortress uses.
var (
	DACReadSearch = Capability{"CAP_DAC_READ_SEARCH", 2}
	NetAdmin      = Capability{"CAP_NET_ADMIN", 12}
	SysPtrace     = Capability{"CAP_SYS_PTRACE", 19}
	SysAdmin      = Capability{"CAP_SYS_ADMIN", 21}
	SysResource   = Capability{"CAP_SYS_RESOURCE", 24}
	Perfmon       = Capability{"CAP_PERFMON", 38}
	BPF           = Capability{"CAP_BPF", 39}
)

// Layers a capability serves.
const (
	Shield   = "shield"
	Sentinel = "sentinel"
)

// Need is one capability a layer needs, and why.
type Need struct {
	Cap    Capability
	Layers []string
	Why    string
	// Optional needs only improve what is reported; Fortress enforces
	// without them.
	Optional bool
}

// Needs is the whole table. The kernel checks cited are those of 5.10 to
// 6.12: CAP_BPF and CAP_PERFMON exist since 5.8. The kernel's bpf(2)
// checks also accept CAP_SYS_ADMIN in place of CAP_BPF, CAP_PERFMON and
// (for loading XDP) CAP_NET_ADMIN, so next to it those add no power; they
// are named so that the set says what each layer uses, and the agent
// refuses to start without any required one (cmd/fortress-agent).
var Needs = []Need{
	{BPF, []string{Shield, Sentinel}, "create maps, load programs, pin and open pins (bpf(2))", false},
	{NetAdmin, []string{Shield}, "load XDP programs and attach them to interfaces", false},
	{Perfmon, []string{Sentinel}, "load LSM and fentry programs and let them read kernel memory (bpf_probe_read_kernel)", false},
	{SysAdmin, []string{Shield, Sentinel}, "get programs, maps and links by id (BPF_*_GET_FD_BY_ID) to adopt and verify pinned state after a restart, and enter an interface's network namespace (setns)", false},
	{DACReadSearch, []string{Shield, Sentinel}, "reach the pins below /sys/fs/bpf (mode 0700, root's) and read root-owned configuration and trust keys", false},
	{SysPtrace, []string{Sentinel}, "give the full path of another user's executable in violation events (/proc/PID/exe); without it events carry its file name as the kernel reports it", true},
}

// MemlockNeed is what a kernel that charges BPF maps to RLIMIT_MEMLOCK
// (before 5.11) needs on top: the limit raised before the agent starts
// (LimitMEMLOCK=infinity in the unit), or this capability to raise it.
var MemlockNeed = Need{SysResource, []string{Shield, Sentinel}, "raise RLIMIT_MEMLOCK on kernels before 5.11 when the unit has not (LimitMEMLOCK=infinity)", true}

// Required returns the capabilities the layers need, in table order,
// without the optional ones: the set a unit grants.
func Required(layers ...string) []Capability {
	var out []Capability
	for _, n := range Needs {
		if !n.Optional && serves(n, layers) {
			out = append(out, n.Cap)
		}
	}
	return out
}

// Missing returns the needs of the layers (optional ones included) that
// the effective set eff lacks.
func Missing(eff uint64, layers ...string) []Need {
	var out []Need
	for _, n := range Needs {
		if serves(n, layers) && !Has(eff, n.Cap) {
			out = append(out, n)
		}
	}
	return out
}

// Has reports whether the set holds c.
func Has(set uint64, c Capability) bool { return set&(1<<c.Bit) != 0 }

// Names lists the capabilities' names, space separated as a unit writes
// them.
func Names(cs []Capability) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Name
	}
	return strings.Join(names, " ")
}

// Describe says what the missing needs cost, one clause each.
func Describe(missing []Need) string {
	parts := make([]string, len(missing))
	for i, n := range missing {
		parts[i] = n.Cap.Name + " (" + n.Why + ")"
		if n.Optional {
			parts[i] = n.Cap.Name + " (optional: " + n.Why + ")"
		}
	}
	return strings.Join(parts, "; ")
}

func serves(n Need, layers []string) bool {
	for _, l := range n.Layers {
		for _, want := range layers {
			if l == want {
				return true
			}
		}
	}
	return false
}

// Effective returns the effective capability set of this process.
func Effective() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read capabilities: %w", err)
	}
	defer f.Close()
	return ParseStatus(f)
}

// ParseStatus reads the CapEff line of a /proc/PID/status file.
func ParseStatus(r io.Reader) (uint64, error) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		v, ok := strings.CutPrefix(s.Text(), "CapEff:")
		if !ok {
			continue
		}
		set, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("parse CapEff %q: %w", strings.TrimSpace(v), err)
		}
		return set, nil
	}
	if err := s.Err(); err != nil {
		return 0, fmt.Errorf("read status: %w", err)
	}
	return 0, fmt.Errorf("no CapEff line in status")
}
