package probe

import (
	"errors"
	"strings"
	"testing"

	"github.com/carverauto/fortress/internal/caps"
)

func TestTrampolineCheck(t *testing.T) {
	for _, tc := range []struct {
		arch, release string
		ok            bool
		says          string
	}{
		{"amd64", "5.10.0-32-cloud-amd64", true, ""},
		{"amd64", "5.4.0", false, "amd64: 5.5+"},
		{"arm64", "5.10.0-32-cloud-arm64", false, "arm64: 6.4+"},
		{"arm64", "5.19.17", false, "Sentinel cannot run"},
		{"arm64", "6.1.0-50-cloud-arm64", false, "cannot attach BPF trampolines to kernel functions"},
		{"arm64", "6.4.0", true, ""},
		{"arm64", "6.12.48+deb13-cloud-arm64", true, ""},
		{"arm64", "garbage", false, "cannot tell"},
		{"riscv64", "6.12.0", false, "no BPF trampoline on riscv64"},
	} {
		err := trampolineCheck(tc.arch, tc.release)
		if (err == nil) != tc.ok || err != nil && !strings.Contains(err.Error(), tc.says) {
			t.Errorf("trampolineCheck(%s, %s) = %v; want ok=%v saying %q", tc.arch, tc.release, err, tc.ok, tc.says)
		}
	}
}

func TestCapsCheck(t *testing.T) {
	var full uint64
	for _, c := range caps.Required(caps.Shield, caps.Sentinel) {
		full |= 1 << c.Bit
	}
	reason, err := capsCheck(full, nil, caps.Sentinel)
	if err != nil || !strings.Contains(reason, "lacks CAP_SYS_PTRACE (optional") {
		t.Fatalf("full set, Sentinel: %q, %v; want ok naming the optional CAP_SYS_PTRACE", reason, err)
	}
	if reason, err := capsCheck(full|1<<caps.SysPtrace.Bit, nil, caps.Sentinel); err != nil || strings.Contains(reason, "lacks") {
		t.Fatalf("everything, Sentinel: %q, %v", reason, err)
	}
	_, err = capsCheck(full&^(1<<caps.Perfmon.Bit), nil, caps.Sentinel)
	if err == nil || !strings.Contains(err.Error(), "lacks CAP_PERFMON") {
		t.Fatalf("no CAP_PERFMON, Sentinel: %v", err)
	}
	if _, err := capsCheck(full&^(1<<caps.Perfmon.Bit), nil, caps.Shield); err != nil {
		t.Fatalf("Shield needs no CAP_PERFMON, yet: %v", err)
	}
	_, err = capsCheck(0, nil, caps.Shield)
	for _, c := range []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH"} {
		if err == nil || !strings.Contains(err.Error(), c) {
			t.Errorf("no capabilities, Shield: %v; want %s named", err, c)
		}
	}
	boom := errors.New("boom")
	if _, err := capsCheck(full, boom, caps.Shield); !errors.Is(err, boom) {
		t.Fatalf("unreadable set: %v", err)
	}
}

func TestMemlockCheck(t *testing.T) {
	if err := memlockCheck(nil); err != nil {
		t.Fatal(err)
	}
	err := memlockCheck(errors.New("operation not permitted"))
	if err == nil || !strings.Contains(err.Error(), "LimitMEMLOCK=infinity") || !strings.Contains(err.Error(), "CAP_SYS_RESOURCE") {
		t.Fatalf("memlockCheck: %v", err)
	}
}
