package sentinel

// The arm64 parts of the identity lab tests (identity_lab_test.go): the
// exe-swap program and system call injection through ptrace.

import (
	_ "embed"
	"fmt"

	"golang.org/x/sys/unix"
)

// setexeBin is testdata/setexe.c: it unmaps its own image and switches its
// exe_file with prctl(PR_SET_MM_EXE_FILE), as a root attacker's static
// program would.
//
//go:embed testdata/setexe_arm64
var setexeBin []byte

// injectSyscall makes the stopped tracee pid run one system call at its
// current instruction: it writes svc #0 there, sets the registers (number
// in x8, arguments in x0-x5), single-steps, and puts text and registers
// back. It returns the call's result from x0 (-errno on failure).
//
// The tracee must be in a signal-delivery stop, outside any system call
// (the callers' exec SIGTRAP, or the stop after stepping out of execve):
// at a stop inside a system call, that call's return value would be
// written over x0 on resume.
func injectSyscall(pid int, nr uint64, args ...uint64) (int64, error) {
	var saved unix.PtraceRegs
	if err := unix.PtraceGetRegs(pid, &saved); err != nil {
		return 0, fmt.Errorf("getregs: %w", err)
	}
	orig := make([]byte, 8)
	if _, err := unix.PtracePeekText(pid, uintptr(saved.Pc), orig); err != nil {
		return 0, fmt.Errorf("peektext: %w", err)
	}
	code := append([]byte{0x01, 0x00, 0x00, 0xd4}, orig[4:]...) // svc #0
	if _, err := unix.PtracePokeText(pid, uintptr(saved.Pc), code); err != nil {
		return 0, fmt.Errorf("poketext: %w", err)
	}
	regs := saved
	regs.Regs[8] = nr
	a := append(args, 0, 0, 0, 0, 0, 0)
	copy(regs.Regs[0:6], a)
	if err := unix.PtraceSetRegs(pid, &regs); err != nil {
		return 0, fmt.Errorf("setregs: %w", err)
	}
	if err := unix.PtraceSingleStep(pid); err != nil {
		return 0, fmt.Errorf("singlestep: %w", err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		return 0, fmt.Errorf("wait singlestep: %w", err)
	}
	if !ws.Stopped() {
		return 0, fmt.Errorf("tracee did not stop after the syscall: %v", ws)
	}
	var after unix.PtraceRegs
	if err := unix.PtraceGetRegs(pid, &after); err != nil {
		return 0, fmt.Errorf("getregs: %w", err)
	}
	if after.Pc != saved.Pc+4 {
		return 0, fmt.Errorf("tracee stopped at %#x, not after the svc at %#x (%v)", after.Pc, saved.Pc, ws)
	}
	if _, err := unix.PtracePokeText(pid, uintptr(saved.Pc), orig); err != nil {
		return 0, fmt.Errorf("restore text: %w", err)
	}
	if err := unix.PtraceSetRegs(pid, &saved); err != nil {
		return 0, fmt.Errorf("restore regs: %w", err)
	}
	return int64(after.Regs[0]), nil
}

// stackPointer is the tracee's stack pointer in regs.
func stackPointer(regs *unix.PtraceRegs) uint64 { return regs.Sp }
