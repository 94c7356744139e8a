package sentinel

import (
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/carverauto/fortress/internal/bytecode"
)

// helpers is what every Sentinel program may call: map access, the ring
// buffer, the boot clock, the current task's identity, and kernel reads for
// CO-RE walks from bpf_get_current_task() (5.10 has no task BTF pointer).
var helpers = []asm.BuiltinFunc{
	asm.FnMapLookupElem, asm.FnMapUpdateElem, asm.FnMapDeleteElem,
	asm.FnRingbufReserve, asm.FnRingbufSubmit,
	asm.FnKtimeGetBootNs,
	asm.FnGetCurrentPidTgid, asm.FnGetCurrentUidGid, asm.FnGetCurrentComm, asm.FnGetCurrentTask,
	asm.FnProbeReadKernel, asm.FnProbeReadKernelStr,
}

// Allowlist is the reviewed allowlist of every embedded Sentinel program.
func Allowlist() bytecode.Allowlist {
	allow := bytecode.Allowlist{}
	spec, err := loadSentinel()
	if err != nil {
		return allow
	}
	for name := range spec.Programs {
		allow[name] = bytecode.ProgramAllow{Helpers: helpers}
	}
	// task_prctl reads the exe_fd of a PR_SET_MM_MAP request from the
	// caller's memory (to name the refusal; the grant is what enforces).
	if _, ok := allow[claimProgram]; ok {
		allow[claimProgram] = bytecode.ProgramAllow{Helpers: append(slices.Clone(helpers), asm.FnProbeReadUser)}
	}
	return allow
}

// Embedded describes the Sentinel object for fortressctl allowlist.
func Embedded() bytecode.Embedded {
	return bytecode.Embedded{Name: "sentinel", Load: loadSentinel, Allow: Allowlist()}
}

// checkAllowlist walks every program before it reaches the kernel; a helper
// outside the allowlist refuses the load.
func checkAllowlist(spec *ebpf.CollectionSpec) error {
	if _, err := bytecode.Check("sentinel", spec, Allowlist()); err != nil {
		return fmt.Errorf("sentinel allowlist check: %w", err)
	}
	return nil
}
