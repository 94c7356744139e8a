package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/carverauto/fortress/pkg/fortress"
)

func TestWarnLacking(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	warnLacking(log, fortress.KernelReport{
		Checks: map[string]bool{"caps_shield": true, "caps_sentinel": false, "lsm": false, "bpf_trampoline": false},
		Reasons: map[string]string{"caps_sentinel": "this process lacks CAP_PERFMON (...)", "lsm": "load: EPERM",
			"bpf_trampoline": "kernel 6.1.0 on arm64 cannot attach BPF trampolines"},
	})
	out := buf.String()
	for _, want := range []string{"check=caps_sentinel", "lacks CAP_PERFMON", "check=bpf_trampoline"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"check=caps_shield", "check=lsm", "check=memlock"} {
		if strings.Contains(out, not) {
			t.Errorf("log has %q (passed, not probed, or not a privilege check):\n%s", not, out)
		}
	}
}
