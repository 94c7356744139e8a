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

func TestRefuseLacking(t *testing.T) {
	lacksNet := "this process lacks CAP_NET_ADMIN (load XDP programs and attach them to interfaces)"
	lacksAdmin := "this process lacks CAP_SYS_ADMIN (get programs, maps and links by id)"
	memlock := "this kernel charges BPF maps to RLIMIT_MEMLOCK (before 5.11) and it cannot be raised: start the agent with LimitMEMLOCK=infinity or grant CAP_SYS_RESOURCE"
	off := false
	shieldOnly := &config{Interfaces: []ifaceConfig{{Name: "eth0"}}, Sentinel: sentinelConfig{Enabled: &off}}
	for _, tc := range []struct {
		name   string
		cfg    *config
		checks map[string]bool
		reason map[string]string
		want   []string // in the error; none: no error
	}{
		{"all held", &config{Interfaces: []ifaceConfig{{Name: "eth0"}}},
			map[string]bool{"caps_shield": true, "caps_sentinel": true, "memlock": true, "lsm": false}, nil, nil},
		{"not probed", &config{Interfaces: []ifaceConfig{{Name: "eth0"}}}, map[string]bool{}, nil, nil},
		{"shield lacks, shield configured", shieldOnly,
			map[string]bool{"caps_shield": false, "caps_sentinel": true}, map[string]string{"caps_shield": lacksNet}, []string{"CAP_NET_ADMIN", "half protected"}},
		{"shield lacks, no interfaces", &config{},
			map[string]bool{"caps_shield": false, "caps_sentinel": true}, map[string]string{"caps_shield": lacksNet}, nil},
		{"sentinel lacks, sentinel disabled", shieldOnly,
			map[string]bool{"caps_shield": true, "caps_sentinel": false}, map[string]string{"caps_sentinel": "this process lacks CAP_PERFMON"}, nil},
		{"both lack the same, named once", &config{Interfaces: []ifaceConfig{{Name: "eth0"}}},
			map[string]bool{"caps_shield": false, "caps_sentinel": false}, map[string]string{"caps_shield": lacksAdmin, "caps_sentinel": lacksAdmin}, []string{"CAP_SYS_ADMIN"}},
		{"memlock", &config{},
			map[string]bool{"caps_sentinel": true, "memlock": false}, map[string]string{"memlock": memlock}, []string{"RLIMIT_MEMLOCK", "LimitMEMLOCK=infinity", "CAP_SYS_RESOURCE"}},
		{"memlock, nothing to load", &config{Sentinel: sentinelConfig{Enabled: &off}},
			map[string]bool{"memlock": false}, map[string]string{"memlock": memlock}, nil},
	} {
		err := refuseLacking(tc.cfg, fortress.KernelReport{Checks: tc.checks, Reasons: tc.reason})
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: started", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v; want %q in it", tc.name, err, w)
			}
		}
		if strings.Count(err.Error(), "this process lacks") > 1 {
			t.Errorf("%s: a reason repeated: %v", tc.name, err)
		}
	}
}
