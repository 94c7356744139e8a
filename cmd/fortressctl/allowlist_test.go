package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/carverauto/fortress/internal/bytecode"
)

const bytecodeTestdata = "../../internal/bytecode/testdata"

func testObject(name string) string { return filepath.Join(bytecodeTestdata, name+".o") }

func TestAllowlistObjectExitCodes(t *testing.T) {
	notELF := filepath.Join(t.TempDir(), "notelf.o")
	if err := os.WriteFile(notELF, []byte("not an ELF object\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		helper string // must appear in the output
	}{
		{"clean", []string{"allowlist", "--object", testObject("clean")}, 0, ""},
		{"write_user", []string{"allowlist", "--object", testObject("write_user")}, 1, "bpf_probe_write_user"},
		{"override", []string{"allowlist", "--object", testObject("override")}, 1, "bpf_override_return"},
		{"signal", []string{"allowlist", "--object", testObject("signal")}, 1, "bpf_send_signal"},
		{"kfunc", []string{"allowlist", "--object", testObject("kfunc")}, 1, "bpf_send_signal_task"},
		{"missing file", []string{"allowlist", "--object", filepath.Join(t.TempDir(), "nope.o")}, 2, ""},
		{"not ELF", []string{"allowlist", "--object", notELF}, 2, ""},
		{"empty object", []string{"allowlist", "--object", ""}, 2, ""},
		{"bad flag", []string{"allowlist", "--bogus"}, 2, ""},
		{"extra argument", []string{"allowlist", "--object", testObject("clean"), "extra"}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The dispatcher's exit code, as the shell sees it.
			if code := run(context.Background(), tt.args); code != tt.code {
				t.Errorf("fortressctl %v exited %d, want %d", tt.args, code, tt.code)
			}
			// The command's own output.
			var stdout, stderr bytes.Buffer
			code, err := allowlistCmd(tt.args[1:], &stdout, &stderr)
			var ue usageError
			if errors.As(err, &ue) {
				code = 2
			}
			if code != tt.code {
				t.Errorf("allowlist exited %d (%v), want %d", code, err, tt.code)
			}
			if tt.helper != "" && !strings.Contains(stderr.String(), tt.helper) {
				t.Errorf("output does not name %s:\n%s", tt.helper, stderr.String())
			}
			if tt.code == 2 && err == nil {
				t.Error("exit 2 without an error message")
			}
		})
	}
}

func TestAllowlistObjectListsHelpers(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code, err := allowlistCmd([]string{"--object", testObject("clean")}, &stdout, &stderr); code != 0 || err != nil {
		t.Fatalf("allowlist = %d, %v\n%s", code, err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"program xdp_clean", "bpf_map_lookup_elem", "bpf_ktime_get_ns", "bpf-to-bpf calls: 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestAllowlistJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code, err := allowlistCmd([]string{"--json", "--object", testObject("write_user")}, &stdout, &stderr)
	if code != 1 || err != nil {
		t.Fatalf("allowlist = %d, %v", code, err)
	}
	var out struct {
		Clean   bool `json:"clean"`
		Objects []struct {
			Object   string `json:"object"`
			Programs []struct {
				Name    string   `json:"name"`
				Helpers []string `json:"helpers"`
			} `json:"programs"`
		} `json:"objects"`
		Violations []struct {
			Call   string `json:"call"`
			Offset int    `json:"offset"`
		} `json:"violations"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, stdout.String())
	}
	if out.Clean || len(out.Violations) != 1 || out.Violations[0].Call != "bpf_probe_write_user" || out.Violations[0].Offset < 0 {
		t.Errorf("violations = %+v", out.Violations)
	}
	if len(out.Objects) != 1 || out.Objects[0].Object != "write_user.o" || len(out.Objects[0].Programs) != 1 ||
		!strings.Contains(strings.Join(out.Objects[0].Programs[0].Helpers, " "), "bpf_probe_write_user") {
		t.Errorf("objects = %+v", out.Objects)
	}
}

// withEmbedded runs f with the embedded list replaced.
func withEmbedded(t *testing.T, list []bytecode.Embedded, f func()) {
	t.Helper()
	saved := embedded
	embedded = list
	defer func() { embedded = saved }()
	f()
}

func loadFile(name string) func() (*ebpf.CollectionSpec, error) {
	return func() (*ebpf.CollectionSpec, error) { return ebpf.LoadCollectionSpec(testObject(name)) }
}

func TestAllowlistEmbedded(t *testing.T) {
	clean := bytecode.Embedded{
		Name:  "clean",
		Load:  loadFile("clean"),
		Allow: bytecode.Allowlist{"xdp_clean": {Helpers: []asm.BuiltinFunc{asm.FnMapLookupElem, asm.FnKtimeGetNs}}},
	}
	writeUser := bytecode.Embedded{
		Name: "write_user",
		Load: loadFile("write_user"),
		// Even an allowlist that lists it cannot admit it.
		Allow: bytecode.Allowlist{"tp_write_user": {Helpers: []asm.BuiltinFunc{asm.FnGetCurrentPidTgid, asm.FnProbeWriteUser}}},
	}
	broken := bytecode.Embedded{Name: "broken", Load: loadFile("does-not-exist")}

	withEmbedded(t, []bytecode.Embedded{clean}, func() {
		var stdout, stderr bytes.Buffer
		if code, err := allowlistCmd(nil, &stdout, &stderr); code != 0 || err != nil {
			t.Errorf("clean: allowlist = %d, %v\n%s", code, err, stderr.String())
		}
		if !strings.Contains(stdout.String(), "object clean") || !strings.Contains(stdout.String(), "bpf_map_lookup_elem") {
			t.Errorf("clean: output:\n%s", stdout.String())
		}
	})
	withEmbedded(t, []bytecode.Embedded{writeUser, clean}, func() {
		if code := run(context.Background(), []string{"allowlist"}); code != 1 {
			t.Errorf("write_user: fortressctl allowlist exited %d, want 1", code)
		}
		var stdout, stderr bytes.Buffer
		code, _ := allowlistCmd(nil, &stdout, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), "calls forbidden helper bpf_probe_write_user at insn") {
			t.Errorf("write_user: allowlist = %d\n%s", code, stderr.String())
		}
	})
	withEmbedded(t, []bytecode.Embedded{broken}, func() {
		var stdout, stderr bytes.Buffer
		if code, err := allowlistCmd(nil, &stdout, &stderr); code != 1 || err == nil {
			t.Errorf("broken: allowlist = %d, %v", code, err)
		}
	})
}

// TestEmbeddedObjectsPassAllowlist is the gate: every object the binaries
// embed passes its own allowlist.
func TestEmbeddedObjectsPassAllowlist(t *testing.T) {
	if len(embedded) == 0 {
		t.Log("no embedded objects registered")
	}
	for _, e := range embedded {
		if _, err := e.Check(); err != nil {
			t.Errorf("embedded object %s: %v", e.Name, err)
		}
	}
}
