package sentinel

// The x86-64 parts of the identity lab tests (identity_lab_test.go): the
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
//go:embed testdata/setexe_amd64
var setexeBin []byte

// injectSyscall makes the stopped tracee pid run one system call at its
// current instruction: it writes a syscall instruction there, sets the
// registers, single-steps, and puts text and registers back. It returns
// the call's result (-errno on failure).
func injectSyscall(pid int, nr uint64, args ...uint64) (int64, error) {
	var saved unix.PtraceRegs
	if err := unix.PtraceGetRegs(pid, &saved); err != nil {
		return 0, fmt.Errorf("getregs: %w", err)
	}
	orig := make([]byte, 8)
	if _, err := unix.PtracePeekText(pid, uintptr(saved.Rip), orig); err != nil {
		return 0, fmt.Errorf("peektext: %w", err)
	}
	code := append([]byte{0x0f, 0x05}, orig[2:]...) // syscall
	if _, err := unix.PtracePokeText(pid, uintptr(saved.Rip), code); err != nil {
		return 0, fmt.Errorf("poketext: %w", err)
	}
	regs := saved
	regs.Rax, regs.Orig_rax = nr, ^uint64(0)
	a := append(args, 0, 0, 0, 0)
	regs.Rdi, regs.Rsi, regs.Rdx, regs.R10 = a[0], a[1], a[2], a[3]
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
	if _, err := unix.PtracePokeText(pid, uintptr(saved.Rip), orig); err != nil {
		return 0, fmt.Errorf("restore text: %w", err)
	}
	if err := unix.PtraceSetRegs(pid, &saved); err != nil {
		return 0, fmt.Errorf("restore regs: %w", err)
	}
	return int64(after.Rax), nil
}

// stackPointer is the tracee's stack pointer in regs.
func stackPointer(regs *unix.PtraceRegs) uint64 { return regs.Rsp }
