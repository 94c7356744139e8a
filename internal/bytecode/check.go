package bytecode

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Kinds of call a Violation can name.
const (
	KindHelper = "helper"
	KindKfunc  = "kfunc"
)

// Reasons a call or program fails the check, for Violation.Reason.
const (
	ReasonNotAllowed       = "not on the program's allowlist"
	ReasonMissingAllowlist = "not on the allowlist"
	ReasonMalformedCall    = "call instruction of unknown kind"
)

// Violation is one failure of the allowlist check.
type Violation struct {
	// Object names the embedded object or file checked.
	Object string
	// Program is the program's name in the CollectionSpec.
	Program string
	// Offset is the raw instruction offset (8-byte slots, as the verifier
	// and llvm-objdump count) of the call within the linked program, or -1
	// when the violation is not about one call.
	Offset int
	// Kind is KindHelper or KindKfunc; empty when Call is empty.
	Kind string
	// Call is the helper's or kfunc's name, empty when the violation is not
	// about one call.
	Call string
	// Reason says why it fails: "always forbidden: ..." for the forbidden
	// set, ReasonNotAllowed, ReasonMissingAllowlist or ReasonMalformedCall.
	Reason string
}

func (v *Violation) Error() string {
	switch {
	case v.Call == "" && v.Offset < 0:
		return fmt.Sprintf("check %s: program %s: %s", v.Object, v.Program, v.Reason)
	case v.Call == "":
		return fmt.Sprintf("check %s: program %s: insn %d: %s", v.Object, v.Program, v.Offset, v.Reason)
	case v.Offset < 0:
		return fmt.Sprintf("check %s: program %s: allowlist admits %s %s: %s", v.Object, v.Program, v.Kind, v.Call, v.Reason)
	default:
		return fmt.Sprintf("check %s: program %s calls forbidden %s %s at insn %d: %s", v.Object, v.Program, v.Kind, v.Call, v.Offset, v.Reason)
	}
}

// Violations returns every *Violation in err, which may be a single
// violation or an errors.Join of several.
func Violations(err error) []*Violation {
	var out []*Violation
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if v, ok := err.(*Violation); ok {
			out = append(out, v)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		walk(errors.Unwrap(err))
	}
	walk(err)
	return out
}

// Report is what Check found in one object.
type Report struct {
	// Object names the object, as passed to Check.
	Object string `json:"object"`
	// Programs are sorted by name.
	Programs []ProgramReport `json:"programs"`
}

// ProgramReport is what one program calls.
type ProgramReport struct {
	Name       string
	Section    string
	Type       ebpf.ProgramType
	AttachType ebpf.AttachType
	AttachTo   string
	// Insns is the number of raw instructions (8-byte slots) of the program
	// with its subprograms linked in.
	Insns int
	// Helpers are the helpers called anywhere in the program, sorted by id,
	// without duplicates.
	Helpers []asm.BuiltinFunc
	// Kfuncs are the kfuncs called, sorted, without duplicates.
	Kfuncs []string
	// FunctionCalls counts BPF-to-BPF call sites (not helper calls).
	FunctionCalls int
}

// HelperNames returns the kernel names of r.Helpers, in the same order.
func (r ProgramReport) HelperNames() []string {
	names := make([]string, len(r.Helpers))
	for i, fn := range r.Helpers {
		names[i] = HelperName(fn)
	}
	return names
}

// MarshalJSON writes helpers by name and types as strings, for fortressctl
// allowlist --json.
func (r ProgramReport) MarshalJSON() ([]byte, error) {
	kfuncs := r.Kfuncs
	if kfuncs == nil {
		kfuncs = []string{}
	}
	return json.Marshal(struct {
		Name          string   `json:"name"`
		Section       string   `json:"section"`
		Type          string   `json:"type"`
		AttachType    string   `json:"attach_type,omitempty"`
		AttachTo      string   `json:"attach_to,omitempty"`
		Insns         int      `json:"insns"`
		Helpers       []string `json:"helpers"`
		Kfuncs        []string `json:"kfuncs"`
		FunctionCalls int      `json:"function_calls"`
	}{
		Name:          r.Name,
		Section:       r.Section,
		Type:          r.Type.String(),
		AttachType:    attachTypeString(r.AttachType),
		AttachTo:      r.AttachTo,
		Insns:         r.Insns,
		Helpers:       r.HelperNames(),
		Kfuncs:        kfuncs,
		FunctionCalls: r.FunctionCalls,
	})
}

func attachTypeString(a ebpf.AttachType) string {
	if a == ebpf.AttachNone {
		return ""
	}
	return a.String()
}

// Check checks every program of spec against allow. object names the
// embedded object (or file) in errors. The report covers every program even
// when the check fails; the error is nil, a *Violation, or an errors.Join of
// *Violation (see Violations).
func Check(object string, spec *ebpf.CollectionSpec, allow Allowlist) (Report, error) {
	rep := Report{Object: object}
	if spec == nil {
		return rep, fmt.Errorf("check %s: no collection spec", object)
	}

	names := make([]string, 0, len(spec.Programs))
	for name := range spec.Programs {
		names = append(names, name)
	}
	sort.Strings(names)

	var errs []error
	for _, name := range names {
		pr, violations := checkProgram(object, name, spec.Programs[name], allow)
		rep.Programs = append(rep.Programs, pr)
		for _, v := range violations {
			errs = append(errs, v)
		}
	}
	return rep, errors.Join(errs...)
}

func checkProgram(object, name string, p *ebpf.ProgramSpec, allow Allowlist) (ProgramReport, []*Violation) {
	pr := ProgramReport{
		Name:       name,
		Section:    p.SectionName,
		Type:       p.Type,
		AttachType: p.AttachType,
		AttachTo:   p.AttachTo,
	}
	var vs []*Violation
	violate := func(off int, kind, call, reason string) {
		vs = append(vs, &Violation{Object: object, Program: name, Offset: off, Kind: kind, Call: call, Reason: reason})
	}

	pa, listed := allow[name]
	if !listed {
		violate(-1, "", "", ReasonMissingAllowlist)
	}
	// An allowlist that admits a forbidden call is itself a defect, even if
	// the program does not (yet) make that call.
	for _, fn := range pa.Helpers {
		if why, bad := Forbidden(fn); bad {
			violate(-1, KindHelper, HelperName(fn), "always forbidden: "+why)
		}
	}
	for _, k := range pa.Kfuncs {
		if why, bad := ForbiddenKfunc(k); bad {
			violate(-1, KindKfunc, k, "always forbidden: "+why)
		}
	}

	helpers := map[asm.BuiltinFunc]bool{}
	kfuncs := map[string]bool{}
	iter := p.Instructions.Iterate()
	for iter.Next() {
		ins := iter.Ins
		off := int(iter.Offset)
		pr.Insns += int(ins.Size() / asm.InstructionSize)
		if !ins.OpCode.Class().IsJump() || ins.OpCode.JumpOp() != asm.Call {
			continue
		}
		switch {
		case ins.IsFunctionCall():
			// BPF-to-BPF: the callee is linked into this program and checked
			// with it.
			pr.FunctionCalls++

		case ins.IsBuiltinCall():
			fn := asm.BuiltinFunc(ins.Constant)
			helpers[fn] = true
			if why, bad := Forbidden(fn); bad {
				violate(off, KindHelper, HelperName(fn), "always forbidden: "+why)
			} else if listed && !slices.Contains(pa.Helpers, fn) {
				violate(off, KindHelper, HelperName(fn), ReasonNotAllowed)
			}

		case ins.IsKfuncCall():
			k := ins.Reference()
			if k == "" {
				// Only a spec built by hand lacks the relocation's symbol.
				k = fmt.Sprintf("kfunc#%d", ins.Constant)
			}
			kfuncs[k] = true
			if why, bad := ForbiddenKfunc(k); bad {
				violate(off, KindKfunc, k, "always forbidden: "+why)
			} else if listed && !slices.Contains(pa.Kfuncs, k) {
				violate(off, KindKfunc, k, ReasonNotAllowed)
			}

		default:
			// A call the kernel would reject anyway (src or dst set to
			// something else); refuse rather than guess.
			violate(off, "", "", fmt.Sprintf("%s: %v", ReasonMalformedCall, *ins))
		}
	}

	for fn := range helpers {
		pr.Helpers = append(pr.Helpers, fn)
	}
	slices.Sort(pr.Helpers)
	for k := range kfuncs {
		pr.Kfuncs = append(pr.Kfuncs, k)
	}
	sort.Strings(pr.Kfuncs)
	return pr, vs
}
