package sentinel

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"

	"github.com/carverauto/fortress/internal/pins"
)

func TestParseStartTicks(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
	got, err := parseStartTicks([]byte(stat))
	if err != nil || got != 987654 {
		t.Fatalf("parseStartTicks = %d, %v; want 987654", got, err)
	}
	for _, bad := range []string{"", "1 (x S 1 2", "1 (x) S 1 2 3", "1 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 notanumber"} {
		if v, err := parseStartTicks([]byte(bad)); err == nil {
			t.Errorf("parseStartTicks(%q) = %d, want an error", bad, v)
		}
	}
	// Our own: a real /proc file parses, and the value does not change.
	a, err := startTicks("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := startTicks("/proc/self/stat")
	if a != b {
		t.Errorf("start time moved: %d then %d", a, b)
	}
}

// TestRefusalNamesMatchKernelEnum checks the Go names against the enum in
// the embedded object's BTF: every refusal bit the C code can set has a
// name, and every name is a bit the C code knows.
func TestRefusalNamesMatchKernelEnum(t *testing.T) {
	spec, err := loadSentinel()
	if err != nil {
		t.Fatal(err)
	}
	var e *btf.Enum
	if err := spec.Types.TypeByName("sentinel_refusal", &e); err != nil {
		t.Fatal(err)
	}
	var all uint64
	for _, v := range e.Values {
		all |= v.Value
		d := refusalDetail(v.Value)
		if strings.Contains(d, "unknown") {
			t.Errorf("%s (%#x) has no name: %q", v.Name, v.Value, d)
		}
	}
	for _, r := range refusalNames {
		if all&uint64(r.bit) == 0 {
			t.Errorf("name %q for bit %#x, which the C enum lacks", r.name, r.bit)
		}
	}
	if got := refusalDetail(1 | 2); got != "role refused: traced exec, seccomp filter at exec" {
		t.Errorf("refusalDetail(3) = %q", got)
	}
	if got := refusalDetail(1 << 20); !strings.Contains(got, "unknown reason 0x100000") {
		t.Errorf("refusalDetail of an unknown bit = %q", got)
	}
}

// TestIdentityOpsNamed: every op of the C enum has a name in opNames.
func TestIdentityOpsNamed(t *testing.T) {
	spec, err := loadSentinel()
	if err != nil {
		t.Fatal(err)
	}
	var e *btf.Enum
	if err := spec.Types.TypeByName("sentinel_op", &e); err != nil {
		t.Fatal(err)
	}
	for _, v := range e.Values {
		name := opNames[uint32(v.Value)]
		want := strings.ToLower(strings.TrimPrefix(v.Name, "SENTINEL_OP_"))
		if name != want {
			t.Errorf("op %s = %d is named %q in Go, want %q", v.Name, v.Value, name, want)
		}
	}
}

// TestClaimProgramFirst: the claim program exists, may read user memory,
// and no other program may.
func TestClaimProgramFirst(t *testing.T) {
	allow := Allowlist()
	p, ok := allow[claimProgram]
	if !ok {
		t.Fatalf("no %s program in the embedded Sentinel", claimProgram)
	}
	if !slices.Contains(p.Helpers, asm.FnProbeReadUser) {
		t.Errorf("%s may not read the PR_SET_MM_MAP request", claimProgram)
	}
	for name, p := range allow {
		if name != claimProgram && slices.Contains(p.Helpers, asm.FnProbeReadUser) {
			t.Errorf("%s may read user memory", name)
		}
	}
	spec, err := loadSentinel()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bprm_committing_creds", "task_prctl", "ptrace_traceme"} {
		if spec.Programs[want] == nil || spec.Programs[want].AttachTo != want {
			t.Errorf("no program for lsm/%s", want)
		}
	}
	for name := range newInRelease {
		if spec.Maps[name] == nil {
			t.Errorf("newInRelease names %s, which the object lacks", name)
		}
	}
}

// TestReadInputUnchecked: with nothing pinned, ReadInput reads the file
// and says it could not check it; the size limit holds.
func TestReadInputUnchecked(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/trust.pem"
	if err := os.WriteFile(path, []byte("key material"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := pins.Root(dir + "/bpf")
	data, checked, err := ReadInput(root, path, 64)
	if err != nil || checked || string(data) != "key material" {
		t.Fatalf("ReadInput = %q, %v, %v; want the content, unchecked", data, checked, err)
	}
	if _, _, err := ReadInput(root, path, 4); err == nil || !strings.Contains(err.Error(), "larger than 4 bytes") {
		t.Errorf("ReadInput over the limit: %v", err)
	}
	if _, _, err := ReadInput(root, dir+"/missing", 64); err == nil {
		t.Errorf("ReadInput of a missing file succeeded")
	}
}
