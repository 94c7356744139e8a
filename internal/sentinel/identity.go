package sentinel

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrRoleRefused says the kernel did not give this process the agent role:
// it runs under outside control (a tracer, a seccomp filter, an fs_struct
// shared with another process, a foreign root) or is not the agent binary.
var ErrRoleRefused = errors.New("sentinel: the kernel refused this process the agent role")

// Maps of the identity model (bpf/lib/sentinel.h).
const (
	mapGrants    = sentinelMapSentinelGrants
	mapClaims    = sentinelMapSentinelClaims
	mapRoleStats = sentinelMapSentinelRoleStats
	mapStacks    = sentinelMapSentinelStacks
	mapScratch   = sentinelMapSentinelScratch
	mapLayout    = sentinelMapSentinelLayout
)

// claimProgram is attached before every other program so that the loader
// can claim its role before any hook asks for it.
const claimProgram = "task_prctl"

// newInRelease lists maps that a pinned Sentinel of an earlier release may
// lack. Adoption creates them (sentinel_listed full, the others empty).
var newInRelease = map[string]bool{mapListed: true, mapGrants: true, mapClaims: true, mapRoleStats: true, mapStacks: true, mapScratch: true, mapLayout: true}

// refusalNames name the bits of enum sentinel_refusal, in bit order.
var refusalNames = []struct {
	bit  sentinelSentinelRefusal
	name string
}{
	{sentinelSentinelRefusalSENTINEL_REFUSE_TRACED, "traced exec"},
	{sentinelSentinelRefusalSENTINEL_REFUSE_SECCOMP, "seccomp filter at exec"},
	{sentinelSentinelRefusalSENTINEL_REFUSE_SHARED_FS, "fs shared with another process"},
	{sentinelSentinelRefusalSENTINEL_REFUSE_FOREIGN_ROOT, "foreign root"},
	{sentinelSentinelRefusalSENTINEL_REFUSE_NO_ROOM, "grant table full"},
	{sentinelSentinelRefusalSENTINEL_REFUSE_CLAIM, "claim by a process that is not the loader"},
}

// refusalDetail names the reasons of a role_refused event, e.g.
// "role refused: traced exec, seccomp filter at exec".
func refusalDetail(bits uint64) string {
	var names []string
	for _, r := range refusalNames {
		if bits&uint64(r.bit) != 0 {
			names = append(names, r.name)
			bits &^= uint64(r.bit)
		}
	}
	if bits != 0 {
		names = append(names, fmt.Sprintf("unknown reason %#x", bits))
	}
	return "role refused: " + strings.Join(names, ", ")
}

// prctlDetail names the PR_SET_MM sub-option of a prctl_exe event.
func prctlDetail(arg uint64) string {
	switch arg {
	case unix.PR_SET_MM_EXE_FILE:
		return "prctl exe_file (PR_SET_MM_EXE_FILE)"
	case unix.PR_SET_MM_MAP:
		return "prctl exe_file (PR_SET_MM_MAP)"
	}
	return "prctl exe_file"
}

// claim asks the kernel for the agent role of this process: Sentinel never
// saw the exec of the process that loads it (see struct sentinel_claim).
// A process that already holds the role (it was exec'd under Sentinel) gets
// it confirmed; one without it cannot even open the claim, since the claims
// map is guarded.
func (l *loader) claim() error {
	m := l.k.m.SentinelClaims
	if m == nil {
		return errors.New("claim role: no claims map")
	}
	start, err := startTicks("/proc/self/stat")
	if err != nil {
		return fmt.Errorf("claim role: %w", err)
	}
	pid := uint32(os.Getpid())
	var got sentinelSentinelClaim
	// A thread of this process being created counts as a second user of
	// the fs_struct for an instant; a share that persists is refused.
	for try := 0; try < 5; try++ {
		if err := m.Put(uint32(0), sentinelSentinelClaim{Tgid: pid, StartTicks: start}); err != nil {
			return fmt.Errorf("%w: open claim: %v", ErrRoleRefused, err)
		}
		// The kernel answers the unknown option with EINVAL; the verdict
		// is in the map.
		_ = unix.Prctl(int(sentinelSentinelPrctlSENTINEL_PRCTL_CLAIM), 0, 0, 0, 0)
		if err := m.Lookup(uint32(0), &got); err != nil {
			return fmt.Errorf("claim role: read verdict: %w", err)
		}
		if got.Claimed == pid || got.Refused != uint32(sentinelSentinelRefusalSENTINEL_REFUSE_SHARED_FS) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	clearErr := m.Put(uint32(0), sentinelSentinelClaim{})
	if got.Claimed != pid {
		reason := "the claim was never answered (task_prctl not attached?)"
		if got.Refused != 0 {
			reason = refusalDetail(uint64(got.Refused))
		}
		l.rec("claim", "sentinel", ErrRoleRefused, map[string]any{"reason": reason})
		return fmt.Errorf("%w: %s", ErrRoleRefused, reason)
	}
	l.rec("claim", "sentinel", nil, map[string]any{"pid": pid})
	if clearErr != nil {
		return fmt.Errorf("claim role: close claim: %w", clearErr)
	}
	return nil
}

// startTicks reads a process's start time (field 22 of /proc/PID/stat, in
// clock ticks since boot), the kernel's start_boottime / (NSEC_PER_SEC /
// USER_HZ).
func startTicks(statPath string) (uint64, error) {
	b, err := os.ReadFile(statPath)
	if err != nil {
		return 0, fmt.Errorf("read process start time: %w", err)
	}
	return parseStartTicks(b)
}

func parseStartTicks(stat []byte) (uint64, error) {
	// The command name (field 2) is in parentheses and may hold anything,
	// also spaces and ')': the fields resume after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("parse process start time: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("parse process start time: %d fields after the command name, want at least 20", len(f))
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse process start time: %w", err)
	}
	return v, nil
}

// RoleStats are the identity hooks' counters.
type RoleStats struct {
	// Refused counts processes that ran a role binary without earning the
	// role, and refused exe_file switches and PTRACE_TRACEME by role
	// processes.
	Refused uint64 `json:"refused"`
	// Granted counts roles earned at an exec or by the loader's claim.
	Granted uint64 `json:"granted"`
}

func (e *events) roleStats() (RoleStats, error) {
	v, err := e.k.counters(mapRoleStats, int(sentinelSentinelRoleStatSENTINEL_ROLE_STAT_MAX))
	if err != nil {
		return RoleStats{}, fmt.Errorf("read role stats: %w", err)
	}
	return RoleStats{
		Refused: v[sentinelSentinelRoleStatSENTINEL_ROLE_STAT_REFUSED],
		Granted: v[sentinelSentinelRoleStatSENTINEL_ROLE_STAT_GRANTED],
	}, nil
}
