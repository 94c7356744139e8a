package bytecode

import (
	"strings"
	"unicode"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// ProgramAllow is what one program may call.
type ProgramAllow struct {
	// Helpers the program may call.
	Helpers []asm.BuiltinFunc
	// Kfuncs the program may call, by kernel symbol name.
	Kfuncs []string
}

// Allowlist maps a program name in a CollectionSpec to what it may call. A
// program without an entry fails the check; entries for programs the spec
// does not hold are ignored.
type Allowlist map[string]ProgramAllow

// forbiddenHelpers can never be admitted by an allowlist. A security product
// has no legitimate use for them, and each gives a compromised or buggy
// program a way to act outside the enforcement Fortress is meant to provide.
var forbiddenHelpers = map[asm.BuiltinFunc]string{
	// Writes into the memory of the current user process: turns an observer
	// into a tamperer (the kernel prints a warning for it for that reason).
	asm.FnProbeWriteUser: "writes user process memory",
	// Error injection: makes a kernel function return an arbitrary value,
	// e.g. skip a permission check.
	asm.FnOverrideReturn: "overrides kernel function return values",
	// Kill or stop processes from BPF context. Sentinel enforces through LSM
	// return codes; a signal can take down anything, including the agent's
	// own supervisors.
	asm.FnSendSignal:       "sends signals to processes",
	asm.FnSendSignalThread: "sends signals to threads",
	// Runs bpf(2) commands from BPF: loads programs and rewrites maps
	// outside the control plane, so nothing of it reaches the audit log.
	asm.FnSysBpf: "runs bpf(2) commands from BPF, bypassing the control plane",
	// Closes descriptors in the loading process's fd table.
	asm.FnSysClose: "closes file descriptors of the loading process",
	// Resolves kernel symbol addresses: a KASLR bypass with no use here.
	asm.FnKallsymsLookupName: "discloses kernel addresses",
}

// forbiddenKfuncs are the kfunc counterparts of forbiddenHelpers.
var forbiddenKfuncs = map[string]string{
	// kfunc form of bpf_send_signal (Linux 6.13+).
	"bpf_send_signal_task": "sends signals to tasks",
	// KF_DESTRUCTIVE: panics into the crash kernel.
	"crash_kexec": "crashes the machine",
}

// Forbidden reports whether helper fn is always forbidden, and why.
func Forbidden(fn asm.BuiltinFunc) (reason string, ok bool) {
	reason, ok = forbiddenHelpers[fn]
	return reason, ok
}

// ForbiddenKfunc reports whether the kfunc name is always forbidden, and why.
func ForbiddenKfunc(name string) (reason string, ok bool) {
	reason, ok = forbiddenKfuncs[name]
	return reason, ok
}

// Helper groups for DefaultForType. They never contain a forbidden helper
// (TestDefaultsAvoidForbidden).
var (
	// mapOps reads and writes maps the program declares. It is the whole
	// default for program types Fortress does not use.
	mapOps = []asm.BuiltinFunc{
		asm.FnMapLookupElem,
		asm.FnMapUpdateElem,
		asm.FnMapDeleteElem,
	}
	// ringbuf reports events to user space.
	ringbuf = []asm.BuiltinFunc{
		asm.FnRingbufOutput,
		asm.FnRingbufReserve,
		asm.FnRingbufSubmit,
		asm.FnRingbufDiscard,
	}
	// clock timestamps events and rate limits.
	clock = []asm.BuiltinFunc{
		asm.FnKtimeGetNs,
		asm.FnKtimeGetBootNs,
		asm.FnKtimeGetCoarseNs,
	}
	// xdpBasics filters packets in place. Deliberately absent: redirects
	// (bpf_redirect*, bpf_fib_lookup), packet rewriting and resizing
	// (bpf_xdp_adjust_*, bpf_xdp_store_bytes), which a filter does not need.
	xdpBasics = []asm.BuiltinFunc{
		asm.FnGetSmpProcessorId,
		asm.FnTailCall,
		asm.FnGetPrandomU32,
		asm.FnXdpGetBuffLen,
		asm.FnXdpLoadBytes,
		asm.FnLoop,
	}
	// taskContext identifies the current task and reads kernel memory, which
	// LSM hooks and tracing need to attribute an event. Reading user memory
	// (bpf_probe_read_user*, bpf_copy_from_user*) is not in the default.
	taskContext = []asm.BuiltinFunc{
		asm.FnGetCurrentTask,
		asm.FnGetCurrentTaskBtf,
		asm.FnGetCurrentPidTgid,
		asm.FnGetCurrentUidGid,
		asm.FnGetCurrentComm,
		asm.FnGetCurrentCgroupId,
		asm.FnProbeReadKernel,
		asm.FnProbeReadKernelStr,
		asm.FnDPath,
		asm.FnGetSmpProcessorId,
		asm.FnLoop,
	}
	// localStorage keeps per-task and per-inode state (LSM only).
	localStorage = []asm.BuiltinFunc{
		asm.FnTaskStorageGet,
		asm.FnTaskStorageDelete,
		asm.FnInodeStorageGet,
		asm.FnInodeStorageDelete,
	}
)

// DefaultForType is the allowlist used for programs of type t when checking
// an object that carries no allowlist of its own (fortressctl allowlist
// --object). It is deliberately tight: a helper outside it is not
// necessarily harmful, but it needs a reviewed, per-program allowlist.
//
//   - XDP: map operations, ring buffer, clocks, processor id, tail calls,
//     random numbers, multi-buffer reads and bpf_loop. No redirects.
//   - LSM: the tracing set plus task and inode local storage.
//   - Kprobe, TracePoint, RawTracepoint, Tracing (fentry/fexit/tp_btf):
//     map operations, ring buffer, clocks, the current task's identity
//     (pid/tgid, uid/gid, comm, cgroup, task and its BTF pointer), kernel
//     memory reads, bpf_d_path and bpf_loop.
//   - any other type: map operations only.
//
// No default admits a kfunc: kfuncs are unstable kernel interfaces and each
// one needs an explicit allowance.
func DefaultForType(t ebpf.ProgramType) ProgramAllow {
	var groups [][]asm.BuiltinFunc
	switch t {
	case ebpf.XDP:
		groups = [][]asm.BuiltinFunc{mapOps, ringbuf, clock, xdpBasics}
	case ebpf.LSM:
		groups = [][]asm.BuiltinFunc{mapOps, ringbuf, clock, taskContext, localStorage}
	case ebpf.Kprobe, ebpf.TracePoint, ebpf.RawTracepoint, ebpf.Tracing:
		groups = [][]asm.BuiltinFunc{mapOps, ringbuf, clock, taskContext}
	default:
		groups = [][]asm.BuiltinFunc{mapOps}
	}
	seen := map[asm.BuiltinFunc]bool{}
	var helpers []asm.BuiltinFunc
	for _, g := range groups {
		for _, fn := range g {
			if !seen[fn] {
				seen[fn] = true
				helpers = append(helpers, fn)
			}
		}
	}
	return ProgramAllow{Helpers: helpers}
}

// DefaultAllowlist gives every program of spec its DefaultForType allowlist.
func DefaultAllowlist(spec *ebpf.CollectionSpec) Allowlist {
	allow := Allowlist{}
	for name, p := range spec.Programs {
		allow[name] = DefaultForType(p.Type)
	}
	return allow
}

// HelperName returns the kernel's name of a Linux helper, such as
// bpf_probe_write_user for asm.FnProbeWriteUser. It derives the name from
// fn.String(); a helper the library does not know keeps that string
// (BuiltinFunc(250)).
func HelperName(fn asm.BuiltinFunc) string {
	s := fn.String()
	camel, ok := strings.CutPrefix(s, "Fn")
	if !ok || camel == "" {
		return s
	}
	rs := []rune(camel)
	var b strings.Builder
	b.WriteString("bpf_")
	for i, r := range rs {
		if i > 0 && unicode.IsUpper(r) {
			prev := rs[i-1]
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			// Word boundary: "GetNs" -> get_ns, "Tcp6Sock" -> tcp6_sock,
			// "DPath" -> d_path. Digits stay with the word before them
			// ("Ipv4", "L3Csum" -> l3_csum).
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}
