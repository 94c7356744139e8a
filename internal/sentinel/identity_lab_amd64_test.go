package sentinel

// The x86-64 parts of the identity lab tests (identity_lab_test.go): the
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
//go:embed testdata/setexe_amd64
var setexeBin []byte

// syscallInsn is x86-64's syscall.
var syscallInsn = []byte{0x0f, 0x05}

// setSyscall puts the system call number and its arguments where the
// kernel takes them (rax; rdi, rsi, rdx, r10), with no system call to
// restart (orig_rax -1).
func setSyscall(regs *unix.PtraceRegs, nr uint64, args []uint64) {
	a := append(slices.Clone(args), 0, 0, 0, 0)
	regs.Rax, regs.Orig_rax = nr, ^uint64(0)
	regs.Rdi, regs.Rsi, regs.Rdx, regs.R10 = a[0], a[1], a[2], a[3]
}

// syscallResult is the result of a system call (rax).
func syscallResult(regs *unix.PtraceRegs) int64 { return int64(regs.Rax) }

// stackPointer is the tracee's stack pointer in regs.
func stackPointer(regs *unix.PtraceRegs) uint64 { return regs.Rsp }
