package sentinel

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Event is one file-integrity or violation event.
type Event struct {
	Time    time.Time `json:"time"`
	PID     uint32    `json:"pid"`
	TGID    uint32    `json:"tgid"`
	UID     uint32    `json:"uid"`
	Comm    string    `json:"comm"`
	Exe     string    `json:"exe"`
	ExeNode Inode     `json:"exe_inode"`
	Path    string    `json:"path"`
	Object  Inode     `json:"object"`
	Op      string    `json:"op"`
	Verdict string    `json:"verdict"`
	Arg     uint64    `json:"arg,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// Verdicts.
const (
	VerdictAllowed  = "allowed"
	VerdictDenied   = "denied"
	VerdictAudited  = "audited" // would have been denied; audit mode
	VerdictCritical = "critical"
)

var opNames = map[uint32]string{
	1: "open", 2: "open_write", 3: "setattr", 4: "unlink", 5: "rmdir", 6: "rename_from", 7: "rename_to",
	8: "link", 9: "create", 10: "symlink", 11: "mkdir", 12: "mknod", 13: "setxattr", 14: "removexattr",
	15: "set_acl", 16: "ioctl_setflags", 17: "mount", 18: "umount", 19: "map_write", 20: "link_modify",
	21: "ptrace", 22: "identity_learned", 23: "truncate", 24: "map_mmap", 25: "prog_load",
	26: "clone", 27: "link_fd", 28: "prog_fd", 29: "prog_use", 30: "netlink", 31: "lockdown",
	32: OpRoleRefused, 33: OpPrctlExe, 34: OpTraceme,
}

// Ops of the identity model: a role binary that ran without earning its
// role, an exe_file switch to or from a role binary, PTRACE_TRACEME by a
// role process. Their events' Detail names the vector.
const (
	OpRoleRefused = "role_refused"
	OpPrctlExe    = "prctl_exe"
	OpTraceme     = "traceme"
)

// Ops that are not from the kernel.
const (
	OpEventsLost = "events_lost"
	OpIntegrity  = "integrity"
)

func bootNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return ts.Nano()
}

func cstr(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

func (e *events) decode(raw []byte) (Event, error) {
	var c sentinelSentinelEvent
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &c); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	ev := Event{
		Time:    time.Now().Add(-time.Duration(bootNow() - int64(c.TimeNs))),
		PID:     c.Pid,
		TGID:    c.Tgid,
		UID:     c.Uid,
		Comm:    cstr(c.Comm[:]),
		ExeNode: Inode{Dev: c.Exe.Dev, Ino: c.Exe.Ino},
		Object:  Inode{Dev: c.Object.Dev, Ino: c.Object.Ino},
		Op:      opNames[c.Op],
		Arg:     c.Arg,
	}
	if ev.Op == "" {
		ev.Op = "op" + strconv.Itoa(int(c.Op))
	}
	switch sentinelSentinelVerdict(c.Verdict) {
	case sentinelSentinelVerdictSENTINEL_DENIED:
		ev.Verdict = VerdictDenied
	case sentinelSentinelVerdictSENTINEL_AUDITED:
		ev.Verdict = VerdictAudited
	default:
		ev.Verdict = VerdictAllowed
	}
	name := cstr(c.Name[:])
	e.mu.Lock()
	if p, ok := e.names[ev.Object]; ok && ev.Object.Ino != 0 {
		ev.Path = p
	} else if p, ok := e.names[Inode{Dev: c.Parent.Dev, Ino: c.Parent.Ino}]; ok && name != "" {
		ev.Path = filepath.Join(p, name)
	} else {
		ev.Path = name
	}
	e.mu.Unlock()
	switch ev.Op {
	case "lockdown":
		ev.Detail = lockdownReason(ev.Arg)
	case OpRoleRefused:
		ev.Detail = refusalDetail(ev.Arg)
	case OpPrctlExe:
		ev.Detail = prctlDetail(ev.Arg)
	case OpTraceme:
		ev.Detail = "ptrace traceme by a role process"
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", c.Tgid)); err == nil {
		ev.Exe = exe
	} else {
		ev.Exe = cstr(c.ExeName[:])
	}
	return ev, nil
}

// events owns what Sentinel tells: the event ring and the kernel's
// counters, the path of every inode the policy names (to name an event's
// object), and the critical conditions raised in user space.
type events struct {
	k   *kernelSet
	log *slog.Logger

	mu       sync.Mutex
	names    map[Inode]string
	critical []string
	crit     chan Event
}

func newEvents(k *kernelSet, log *slog.Logger) *events {
	return &events{k: k, log: log, names: map[Inode]string{}, crit: make(chan Event, 16)}
}

// setNames replaces the paths of the policy's inodes.
func (e *events) setNames(entries []Entry) {
	names := make(map[Inode]string, len(entries))
	for _, en := range entries {
		names[en.Inode] = en.Path
	}
	e.mu.Lock()
	e.names = names
	e.mu.Unlock()
}

// addName names one more inode (Protect, Watch).
func (e *events) addName(in Inode, path string) {
	e.mu.Lock()
	e.names[in] = path
	e.mu.Unlock()
}

// criticals returns the critical conditions raised so far.
func (e *events) criticals() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.critical)
}

// Stats are the kernel-side counters.
type Stats struct {
	Lost    uint64 `json:"lost"` // events that found no room in the ring buffer
	Denied  uint64 `json:"denied"`
	Audited uint64 `json:"audited"`
	Events  uint64 `json:"events"`
}

// Stats reads the kernel-side counters.
func (e *events) Stats() (Stats, error) {
	v, err := e.k.counters(mapStats, int(sentinelSentinelStatSENTINEL_STAT_MAX))
	if err != nil {
		return Stats{}, fmt.Errorf("read stats: %w", err)
	}
	return Stats{Lost: v[sentinelSentinelStatSENTINEL_STAT_LOST], Denied: v[sentinelSentinelStatSENTINEL_STAT_DENIED],
		Audited: v[sentinelSentinelStatSENTINEL_STAT_AUDITED], Events: v[sentinelSentinelStatSENTINEL_STAT_EVENTS]}, nil
}

// ReadEvents delivers events to fn until ctx ends. Lost events are never
// silent: when the kernel's lost counter grows, fn gets an events_lost event
// with the number in Arg. Critical events raised in user space (integrity
// failures) are delivered too.
func (e *events) ReadEvents(ctx context.Context, fn func(Event)) error {
	ring := e.k.eventRing()
	if ring == nil {
		return fmt.Errorf("read events: %w", errClosed)
	}
	rd, err := ringbuf.NewReader(ring)
	if err != nil {
		return fmt.Errorf("open event ring: %w", err)
	}
	defer rd.Close()
	st, _ := e.Stats()
	lost := st.Lost
	var rec ringbuf.Record
	for ctx.Err() == nil {
		select {
		case ev := <-e.crit:
			fn(ev)
		default:
		}
		rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
		err := rd.ReadInto(&rec)
		if err == nil {
			if ev, err := e.decode(rec.RawSample); err == nil {
				fn(ev)
			}
		} else if !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("read events: %w", err)
		}
		if err != nil || rd.AvailableBytes() == 0 {
			if st, err := e.Stats(); err == nil && st.Lost > lost {
				fn(Event{Time: time.Now(), Op: OpEventsLost, Verdict: VerdictCritical, Arg: st.Lost - lost,
					Detail: fmt.Sprintf("%d events found no room in the ring buffer", st.Lost-lost)})
				lost = st.Lost
			}
		}
	}
	return nil
}

// raise reports a critical condition: logged, kept for Status, and sent as
// an event.
func (e *events) raise(detail string) {
	e.log.Error("sentinel critical", "detail", detail)
	e.mu.Lock()
	e.critical = append(e.critical, detail)
	e.mu.Unlock()
	select {
	case e.crit <- Event{Time: time.Now(), Op: OpIntegrity, Verdict: VerdictCritical, Detail: detail}:
	default:
	}
}

// Status is what Sentinel reports about itself.
type Status struct {
	Enforcing bool      `json:"enforcing"`
	Mode      string    `json:"mode"`
	AuditEnd  time.Time `json:"audit_end,omitzero"`
	Adopted   bool      `json:"adopted"`
	Programs  []string  `json:"programs"`
	Notes     []string  `json:"notes,omitempty"`
	Critical  []string  `json:"critical,omitempty"`
	Stats     Stats     `json:"stats"`
	// Roles counts the identity model's refusals and grants.
	Roles RoleStats `json:"roles"`
}

// Unavailable is the status to report when Start failed with
// ErrUnavailable: loud, and claiming no protection.
func Unavailable(err error) Status {
	return Status{Mode: "unavailable", Critical: []string{"sentinel: BPF LSM unusable, nothing is protected: " + err.Error()}}
}

var lockdownReasons = sync.OnceValue(func() map[uint64]string {
	names := map[uint64]string{}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return names
	}
	var e *btf.Enum
	if err := spec.TypeByName("lockdown_reason", &e); err != nil {
		return names
	}
	for _, v := range e.Values {
		names[v.Value] = v.Name
	}
	return names
})

// lockdownReason names a kernel lockdown reason of the running kernel (the
// enum's values differ between kernels), e.g. "LOCKDOWN_DEV_MEM".
func lockdownReason(v uint64) string {
	if name, ok := lockdownReasons()[v]; ok {
		return name
	}
	return "lockdown reason " + strconv.FormatUint(v, 10)
}
