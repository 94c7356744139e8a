package sentinel

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

func (s *Sentinel) decode(raw []byte) (Event, error) {
	var e sentinelSentinelEvent
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &e); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	ev := Event{
		Time:    time.Now().Add(-time.Duration(bootNow() - int64(e.TimeNs))),
		PID:     e.Pid,
		TGID:    e.Tgid,
		UID:     e.Uid,
		Comm:    cstr(e.Comm[:]),
		ExeNode: Inode{Dev: e.Exe.Dev, Ino: e.Exe.Ino},
		Object:  Inode{Dev: e.Object.Dev, Ino: e.Object.Ino},
		Op:      opNames[e.Op],
		Arg:     e.Arg,
	}
	if ev.Op == "" {
		ev.Op = "op" + strconv.Itoa(int(e.Op))
	}
	switch sentinelSentinelVerdict(e.Verdict) {
	case sentinelSentinelVerdictSENTINEL_DENIED:
		ev.Verdict = VerdictDenied
	case sentinelSentinelVerdictSENTINEL_AUDITED:
		ev.Verdict = VerdictAudited
	default:
		ev.Verdict = VerdictAllowed
	}
	name := cstr(e.Name[:])
	s.mu.Lock()
	if p, ok := s.names[ev.Object]; ok && ev.Object.Ino != 0 {
		ev.Path = p
	} else if p, ok := s.names[Inode{Dev: e.Parent.Dev, Ino: e.Parent.Ino}]; ok && name != "" {
		ev.Path = filepath.Join(p, name)
	} else {
		ev.Path = name
	}
	s.mu.Unlock()
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
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", e.Tgid)); err == nil {
		ev.Exe = exe
	} else {
		ev.Exe = cstr(e.ExeName[:])
	}
	return ev, nil
}

// Stats are the kernel-side counters.
type Stats struct {
	Lost    uint64 `json:"lost"` // events that found no room in the ring buffer
	Denied  uint64 `json:"denied"`
	Audited uint64 `json:"audited"`
	Events  uint64 `json:"events"`
}

// Stats reads the kernel-side counters.
func (s *Sentinel) Stats() (Stats, error) {
	v, err := s.counters(mapStats, int(sentinelSentinelStatSENTINEL_STAT_MAX))
	if err != nil {
		return Stats{}, fmt.Errorf("read stats: %w", err)
	}
	return Stats{Lost: v[sentinelSentinelStatSENTINEL_STAT_LOST], Denied: v[sentinelSentinelStatSENTINEL_STAT_DENIED],
		Audited: v[sentinelSentinelStatSENTINEL_STAT_AUDITED], Events: v[sentinelSentinelStatSENTINEL_STAT_EVENTS]}, nil
}

// counters reads the first n slots of the counter array map name.
func (s *Sentinel) counters(name string, n int) ([]uint64, error) {
	s.mu.Lock()
	m := s.maps[name]
	s.mu.Unlock()
	if m == nil {
		return nil, errors.New("sentinel closed")
	}
	v := make([]uint64, n)
	for i := range v {
		if err := m.Lookup(uint32(i), &v[i]); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// ReadEvents delivers events to fn until ctx ends. Lost events are never
// silent: when the kernel's lost counter grows, fn gets an events_lost event
// with the number in Arg. Critical events raised in user space (integrity
// failures) are delivered too.
func (s *Sentinel) ReadEvents(ctx context.Context, fn func(Event)) error {
	s.mu.Lock()
	events := s.m.SentinelEvents
	s.mu.Unlock()
	if events == nil {
		return errors.New("read events: sentinel closed")
	}
	rd, err := ringbuf.NewReader(events)
	if err != nil {
		return fmt.Errorf("open event ring: %w", err)
	}
	defer rd.Close()
	st, _ := s.Stats()
	lost := st.Lost
	var rec ringbuf.Record
	for ctx.Err() == nil {
		select {
		case ev := <-s.crit:
			fn(ev)
		default:
		}
		rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
		err := rd.ReadInto(&rec)
		if err == nil {
			if ev, err := s.decode(rec.RawSample); err == nil {
				fn(ev)
			}
		} else if !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("read events: %w", err)
		}
		if err != nil || rd.AvailableBytes() == 0 {
			if st, err := s.Stats(); err == nil && st.Lost > lost {
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
func (s *Sentinel) raise(detail string) {
	s.log.Error("sentinel critical", "detail", detail)
	s.mu.Lock()
	s.critical = append(s.critical, detail)
	s.mu.Unlock()
	select {
	case s.crit <- Event{Time: time.Now(), Op: OpIntegrity, Verdict: VerdictCritical, Detail: detail}:
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

// Status reports the mode, the attached programs and the counters.
func (s *Sentinel) Status() Status {
	st := Status{Adopted: s.adopted, Programs: s.Programs(), Notes: s.notes}
	m, end, err := s.Mode()
	if err != nil {
		st.Critical = append(st.Critical, err.Error())
	}
	st.Mode, st.AuditEnd = m.String(), end
	st.Enforcing = err == nil && m == Enforce && len(st.Programs) > 0
	st.Stats, _ = s.Stats()
	st.Roles, _ = s.roleStats()
	s.mu.Lock()
	st.Critical = append(st.Critical, s.critical...)
	s.mu.Unlock()
	return st
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
