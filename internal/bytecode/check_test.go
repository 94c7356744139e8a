package bytecode

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

func loadTestdata(t *testing.T, name string) *ebpf.CollectionSpec {
	t.Helper()
	spec, err := ebpf.LoadCollectionSpec(filepath.Join("testdata", name+".o"))
	if err != nil {
		t.Fatalf("load testdata %s: %v (run make generate)", name, err)
	}
	return spec
}

// callAt returns the instruction at raw offset off of program prog.
func callAt(t *testing.T, spec *ebpf.CollectionSpec, prog string, off int) asm.Instruction {
	t.Helper()
	iter := spec.Programs[prog].Instructions.Iterate()
	for iter.Next() {
		if int(iter.Offset) == off {
			return *iter.Ins
		}
	}
	t.Fatalf("program %s has no instruction at offset %d", prog, off)
	return asm.Instruction{}
}

func TestCleanObject(t *testing.T) {
	spec := loadTestdata(t, "clean")
	allow := Allowlist{"xdp_clean": {Helpers: []asm.BuiltinFunc{asm.FnMapLookupElem, asm.FnKtimeGetNs}}}

	rep, err := Check("clean", spec, allow)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(rep.Programs) != 1 {
		t.Fatalf("got %d programs, want 1: %+v", len(rep.Programs), rep.Programs)
	}
	p := rep.Programs[0]
	if p.Name != "xdp_clean" || p.Type != ebpf.XDP || p.Section != "xdp" {
		t.Errorf("program = %s %v %s, want xdp_clean XDP xdp", p.Name, p.Type, p.Section)
	}
	// bpf_map_lookup_elem is called from the subprogram count_packet: the
	// check must see it through the BPF-to-BPF call.
	want := []asm.BuiltinFunc{asm.FnMapLookupElem, asm.FnKtimeGetNs}
	if !slices.Equal(p.Helpers, want) {
		t.Errorf("helpers = %v, want %v", p.HelperNames(), want)
	}
	if got := p.HelperNames(); !slices.Equal(got, []string{"bpf_map_lookup_elem", "bpf_ktime_get_ns"}) {
		t.Errorf("helper names = %v", got)
	}
	if p.FunctionCalls != 1 {
		t.Errorf("function calls = %d, want 1 (the call to count_packet)", p.FunctionCalls)
	}
	if len(p.Kfuncs) != 0 {
		t.Errorf("kfuncs = %v, want none", p.Kfuncs)
	}
	if p.Insns == 0 {
		t.Error("insns = 0")
	}

	// The default XDP allowlist admits it too.
	if _, err := Check("clean", spec, DefaultAllowlist(spec)); err != nil {
		t.Errorf("Check with defaults: %v", err)
	}
}

// A BPF-to-BPF call carries the callee's relative offset in imm. Read as a
// helper id it would look like some helper; it must not be reported or
// checked as one.
func TestFunctionCallIsNotAHelper(t *testing.T) {
	spec := loadTestdata(t, "clean")
	var calls int
	iter := spec.Programs["xdp_clean"].Instructions.Iterate()
	for iter.Next() {
		if iter.Ins.IsFunctionCall() {
			calls++
		}
	}
	if calls == 0 {
		t.Fatal("testdata/clean.o has no BPF-to-BPF call; the test object is wrong")
	}
	// An allowlist with exactly the two real helpers passes: the function
	// call needs no allowance.
	allow := Allowlist{"xdp_clean": {Helpers: []asm.BuiltinFunc{asm.FnMapLookupElem, asm.FnKtimeGetNs}}}
	rep, err := Check("clean", spec, allow)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(rep.Programs[0].Helpers) != 2 {
		t.Errorf("helpers = %v, want exactly two", rep.Programs[0].HelperNames())
	}
}

func TestForbiddenObjects(t *testing.T) {
	tests := []struct {
		object  string
		program string
		helper  string
		fn      asm.BuiltinFunc
	}{
		{"write_user", "tp_write_user", "bpf_probe_write_user", asm.FnProbeWriteUser},
		{"override", "kp_override", "bpf_override_return", asm.FnOverrideReturn},
		{"signal", "tp_signal", "bpf_send_signal", asm.FnSendSignal},
		{"signal", "tp_signal_thread", "bpf_send_signal_thread", asm.FnSendSignalThread},
	}
	for _, tt := range tests {
		t.Run(tt.program, func(t *testing.T) {
			spec := loadTestdata(t, tt.object)
			_, err := Check(tt.object, spec, DefaultAllowlist(spec))
			if err == nil {
				t.Fatal("Check passed, want a violation")
			}
			var found *Violation
			for _, v := range Violations(err) {
				if v.Program == tt.program && v.Call == tt.helper {
					found = v
				}
			}
			if found == nil {
				t.Fatalf("no violation for %s in %s: %v", tt.helper, tt.program, err)
			}
			if found.Kind != KindHelper || found.Object != tt.object || !strings.HasPrefix(found.Reason, "always forbidden") {
				t.Errorf("violation = %+v", found)
			}
			ins := callAt(t, spec, tt.program, found.Offset)
			if !ins.IsBuiltinCall() || asm.BuiltinFunc(ins.Constant) != tt.fn {
				t.Errorf("insn %d is %v, want call %v", found.Offset, ins, tt.fn)
			}
			msg := found.Error()
			want := "check " + tt.object + ": program " + tt.program + " calls forbidden helper " + tt.helper + " at insn " + strconv.Itoa(found.Offset)
			if !strings.Contains(msg, want) {
				t.Errorf("message %q does not contain %q", msg, want)
			}
			var v *Violation
			if !errors.As(err, &v) {
				t.Error("errors.As(err, *Violation) = false")
			}
		})
	}
}

func TestForbiddenEvenIfAllowed(t *testing.T) {
	spec := loadTestdata(t, "write_user")
	allow := Allowlist{"tp_write_user": {Helpers: []asm.BuiltinFunc{asm.FnGetCurrentPidTgid, asm.FnProbeWriteUser}}}
	_, err := Check("write_user", spec, allow)
	var atCall bool
	for _, v := range Violations(err) {
		if v.Call == "bpf_probe_write_user" && v.Offset >= 0 {
			atCall = true
		}
	}
	if !atCall {
		t.Fatalf("allowlisted bpf_probe_write_user was admitted: %v", err)
	}

	// The allowlist itself is flagged, even for a program that does not
	// make the call.
	clean := loadTestdata(t, "clean")
	allow = Allowlist{"xdp_clean": {Helpers: []asm.BuiltinFunc{asm.FnMapLookupElem, asm.FnKtimeGetNs, asm.FnProbeWriteUser}}}
	_, err = Check("clean", clean, allow)
	vs := Violations(err)
	if len(vs) != 1 || vs[0].Call != "bpf_probe_write_user" || vs[0].Offset != -1 {
		t.Fatalf("allowlist admitting a forbidden helper: got %v", err)
	}
}

func TestMissingFromAllowlist(t *testing.T) {
	spec := loadTestdata(t, "clean")
	_, err := Check("clean", spec, Allowlist{"other": {}})
	vs := Violations(err)
	if len(vs) != 1 || vs[0].Program != "xdp_clean" || vs[0].Reason != ReasonMissingAllowlist {
		t.Fatalf("got %v, want one missing-allowlist violation", err)
	}
	if !strings.Contains(err.Error(), "xdp_clean") {
		t.Errorf("message %q does not name the program", err)
	}
}

func TestNotOnAllowlist(t *testing.T) {
	spec := loadTestdata(t, "clean")
	_, err := Check("clean", spec, Allowlist{"xdp_clean": {Helpers: []asm.BuiltinFunc{asm.FnKtimeGetNs}}})
	vs := Violations(err)
	if len(vs) != 1 || vs[0].Call != "bpf_map_lookup_elem" || vs[0].Reason != ReasonNotAllowed {
		t.Fatalf("got %v, want bpf_map_lookup_elem not allowed", err)
	}
	// The call sits in the subprogram, linked after the entry point.
	ins := callAt(t, spec, "xdp_clean", vs[0].Offset)
	if asm.BuiltinFunc(ins.Constant) != asm.FnMapLookupElem {
		t.Errorf("insn %d is %v", vs[0].Offset, ins)
	}
}

func TestKfuncs(t *testing.T) {
	spec := loadTestdata(t, "kfunc")
	allow := Allowlist{
		"fentry_rcu": {
			Helpers: []asm.BuiltinFunc{asm.FnGetCurrentPidTgid},
			Kfuncs:  []string{"bpf_rcu_read_lock", "bpf_rcu_read_unlock"},
		},
		"lsm_signal": {Helpers: []asm.BuiltinFunc{asm.FnGetCurrentTaskBtf}},
	}
	rep, err := Check("kfunc", spec, allow)
	vs := Violations(err)
	if len(vs) != 1 || vs[0].Program != "lsm_signal" || vs[0].Kind != KindKfunc || vs[0].Call != "bpf_send_signal_task" {
		t.Fatalf("got %v, want only bpf_send_signal_task forbidden", err)
	}
	if !strings.Contains(vs[0].Error(), "forbidden kfunc bpf_send_signal_task at insn") {
		t.Errorf("message = %q", vs[0].Error())
	}
	for _, p := range rep.Programs {
		if p.Name == "fentry_rcu" {
			if !slices.Equal(p.Kfuncs, []string{"bpf_rcu_read_lock", "bpf_rcu_read_unlock"}) {
				t.Errorf("kfuncs = %v", p.Kfuncs)
			}
			if !slices.Equal(p.Helpers, []asm.BuiltinFunc{asm.FnGetCurrentPidTgid}) {
				t.Errorf("helpers = %v", p.HelperNames())
			}
		}
	}

	// Defaults admit no kfunc.
	_, err = Check("kfunc", spec, DefaultAllowlist(spec))
	var rcu bool
	for _, v := range Violations(err) {
		if v.Call == "bpf_rcu_read_lock" && v.Reason == ReasonNotAllowed {
			rcu = true
		}
	}
	if !rcu {
		t.Errorf("default allowlist admitted a kfunc: %v", err)
	}
}

func TestMalformedCall(t *testing.T) {
	bad := asm.FnKtimeGetNs.Call()
	bad.Src = asm.R5
	spec := &ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{
		"odd": {Name: "odd", Type: ebpf.XDP, Instructions: asm.Instructions{
			bad,
			asm.Return(),
		}},
	}}
	_, err := Check("hand", spec, Allowlist{"odd": DefaultForType(ebpf.XDP)})
	vs := Violations(err)
	if len(vs) != 1 || !strings.HasPrefix(vs[0].Reason, ReasonMalformedCall) || vs[0].Offset != 0 {
		t.Fatalf("got %v, want a malformed call at insn 0", err)
	}
}

func TestDefaultsAvoidForbidden(t *testing.T) {
	for _, pt := range []ebpf.ProgramType{ebpf.XDP, ebpf.LSM, ebpf.Kprobe, ebpf.TracePoint, ebpf.RawTracepoint, ebpf.Tracing, ebpf.SchedCLS, ebpf.Syscall} {
		d := DefaultForType(pt)
		if len(d.Kfuncs) != 0 {
			t.Errorf("%v: default admits kfuncs %v", pt, d.Kfuncs)
		}
		for _, fn := range d.Helpers {
			if _, bad := Forbidden(fn); bad {
				t.Errorf("%v: default admits forbidden %s", pt, HelperName(fn))
			}
		}
	}
	if got := DefaultForType(ebpf.Syscall).Helpers; !slices.Equal(got, mapOps) {
		t.Errorf("Syscall default = %v, want map operations only", got)
	}
	for _, fn := range []asm.BuiltinFunc{asm.FnRedirect, asm.FnRedirectMap, asm.FnXdpAdjustHead} {
		if slices.Contains(DefaultForType(ebpf.XDP).Helpers, fn) {
			t.Errorf("XDP default admits %s", HelperName(fn))
		}
	}
}

func TestForbiddenSet(t *testing.T) {
	for _, fn := range []asm.BuiltinFunc{asm.FnProbeWriteUser, asm.FnOverrideReturn, asm.FnSendSignal, asm.FnSendSignalThread, asm.FnSysBpf} {
		if _, bad := Forbidden(fn); !bad {
			t.Errorf("%s is not forbidden", HelperName(fn))
		}
	}
	if _, bad := Forbidden(asm.FnMapLookupElem); bad {
		t.Error("bpf_map_lookup_elem is forbidden")
	}
}

func TestHelperName(t *testing.T) {
	for fn, want := range map[asm.BuiltinFunc]string{
		asm.FnProbeWriteUser:             "bpf_probe_write_user",
		asm.FnDPath:                      "bpf_d_path",
		asm.FnGetCurrentTaskBtf:          "bpf_get_current_task_btf",
		asm.FnL3CsumReplace:              "bpf_l3_csum_replace",
		asm.FnSkcToTcp6Sock:              "bpf_skc_to_tcp6_sock",
		asm.FnJiffies64:                  "bpf_jiffies64",
		asm.FnTcpRawGenSyncookieIpv4:     "bpf_tcp_raw_gen_syncookie_ipv4",
		asm.BuiltinFunc(100000):          "BuiltinFunc(100000)",
		asm.FnGetSmpProcessorId:          "bpf_get_smp_processor_id",
		asm.FnLwtSeg6StoreBytes:          "bpf_lwt_seg6_store_bytes",
		asm.FnGetCurrentAncestorCgroupId: "bpf_get_current_ancestor_cgroup_id",
	} {
		if got := HelperName(fn); got != want {
			t.Errorf("HelperName(%v) = %q, want %q", fn, got, want)
		}
	}
}

// TestHelperNamesMatchLibbpf checks every helper name against libbpf's
// bpf_helper_defs.h, the names BPF C code uses.
func TestHelperNamesMatchLibbpf(t *testing.T) {
	f, err := os.Open("/usr/include/bpf/bpf_helper_defs.h")
	if err != nil {
		t.Skipf("libbpf-dev headers not installed: %v", err)
	}
	defer f.Close()
	re := regexp.MustCompile(`\(\s*\*\s*(?:const\s+)?(bpf_\w+)\)\s*\(.*=\s*\(void \*\)\s*(\d+);`)
	var n int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		id, _ := strconv.Atoi(m[2])
		fn := asm.BuiltinFunc(id)
		if !strings.HasPrefix(fn.String(), "Fn") {
			continue // newer than the library
		}
		n++
		if got := HelperName(fn); got != m[1] {
			t.Errorf("helper %d: HelperName = %q, libbpf calls it %q", id, got, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 100 {
		t.Fatalf("matched only %d helpers in bpf_helper_defs.h", n)
	}
}
