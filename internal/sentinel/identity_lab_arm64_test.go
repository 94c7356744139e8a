package sentinel

// The arm64 parts of the identity lab tests (identity_lab_test.go): the
// exe-swap program and the registers of system call injection through
// ptrace.

import (
	_ "embed"
	"slices"

	"golang.org/x/sys/unix"
)

// setexeBin is testdata/setexe.c: it unmaps its own image and switches its
// exe_file with prctl(PR_SET_MM_EXE_FILE), as a root attacker's static
// program would.
//
//go:embed testdata/setexe_arm64
var setexeBin []byte

// syscallInsn is arm64's svc #0.
var syscallInsn = []byte{0x01, 0x00, 0x00, 0xd4}

// setSyscall puts the system call number and its arguments where the
// kernel takes them (x8; x0-x5).
func setSyscall(regs *unix.PtraceRegs, nr uint64, args []uint64) {
	regs.Regs[8] = nr
	copy(regs.Regs[0:6], append(slices.Clone(args), 0, 0, 0, 0, 0, 0))
}

// syscallResult is the result of a system call (x0).
func syscallResult(regs *unix.PtraceRegs) int64 { return int64(regs.Regs[0]) }

// stackPointer is the tracee's stack pointer in regs.
func stackPointer(regs *unix.PtraceRegs) uint64 { return regs.Sp }
