// Package bytecode checks BPF programs against a per-program allowlist of
// helpers and kfuncs before anything reaches the kernel.
//
// [Check] walks the instructions of every program in an
// [ebpf.CollectionSpec] and sorts each call into one of three kinds:
//
//   - helper calls (BPF_CALL, src 0, imm = helper id), named after the
//     kernel's helper (bpf_map_lookup_elem);
//   - kfunc calls (src BPF_PSEUDO_KFUNC_CALL), named by the symbol the ELF
//     relocation refers to (bpf_rcu_read_lock);
//   - BPF-to-BPF calls (src BPF_PSEUDO_CALL), which are calls into the same
//     object and never helpers. They are counted but need no allowance; the
//     callee's own calls are checked because the spec links subprograms into
//     each program that uses them.
//
// A call fails the check when it is not on the program's allowlist, when the
// program has no allowlist entry at all, or when it is in the always-forbidden
// set ([Forbidden], [ForbiddenKfunc]) which no allowlist can admit. Any other
// call instruction (an unknown src) fails as malformed. Every failure is a
// [*Violation]; several are joined with [errors.Join].
//
// Embedded objects carry hand-written allowlists ([Embedded]); arbitrary
// objects (fortressctl allowlist --object) are checked against
// [DefaultForType], a tight allowlist per program type.
//
// The check is static: it proves which helpers a program can reach, not what
// it does with them. It complements the verifier, it does not replace it.
package bytecode
