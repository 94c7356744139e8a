package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/carverauto/fortress/tools/vmlab/internal/arch"
)

func TestReport(t *testing.T) {
	tests := []struct {
		err     error
		code    int
		printed bool
	}{
		{nil, 0, false},
		{exitCode(3), 3, false},
		{fmt.Errorf("wrapped: %w", exitCode(7)), 7, false},
		{flag.ErrHelp, exitUsage, false},
		{usageError{errors.New("bad flag")}, exitUsage, true},
		{labError{errors.New("kernel panic: x")}, exitLab, true},
		{errors.New("go build: exit status 1"), exitFailure, true},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if got := report(&b, tt.err); got != tt.code {
			t.Errorf("report(%v) = %d, want %d", tt.err, got, tt.code)
		}
		if printed := b.Len() > 0; printed != tt.printed {
			t.Errorf("report(%v) printed %q", tt.err, b.String())
		}
	}
}

func TestRunUsage(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{
		nil,
		{"bogus"},
		{"run", "--kernel", "6.1"}, // no command
		{"run", "--", "true"},      // no kernel
		{"run", "--kernel", "4.19", "--", "true"},
		{"test", "--kernel", "4.19"},
		{"test", "--run", "("},
		{"test", "extra"},
		{"run", "--bogus"},
		{"fetch", "--bogus"},
		{"test", "--arch", "riscv64"},
		{"test", "--arch", "arm64", "--kernel", "5.10"}, // no arm64 5.10 line
		{"run", "--arch", "arm64", "--kernel", "5.10", "--", "true"},
		{"run", "--arch", "x86_64", "--kernel", "6.1", "--", "true"},
		{"fetch", "--arch", "arm64", "--kernel", "5.10"},
	} {
		err := run(ctx, args)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
}

func TestTestScript(t *testing.T) {
	pkgs := []testPackage{
		{pattern: "./internal/sentinel", name: "internal_sentinel"},
		{pattern: "./pkg/fortress", name: "pkg_fortress"},
	}
	s := testScript(pkgs, "TestDeny|TestAllow's", 10*time.Minute)
	for _, want := range []string{
		"cat /sys/kernel/security/lsm",
		`echo "` + lsmMarker + `$lsm"`,
		"*,bpf,*)",
		"cd /lab/pkgs/internal_sentinel && ./internal_sentinel.test -test.v -test.count=1 -test.short -test.timeout=10m0s -test.run 'TestDeny|TestAllow'\\''s'",
		`echo "` + pkgMarker + `./internal/sentinel $rc"`,
		"cd /lab/pkgs/pkg_fortress && ./pkg_fortress.test",
		`echo "` + pkgMarker + `./pkg/fortress $rc"`,
		"exit $status",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("test script lacks %q:\n%s", want, s)
		}
	}
	// With no packages the script still asserts the LSM list.
	if s := testScript(nil, "", time.Minute); !strings.Contains(s, "*,bpf,*)") || strings.Contains(s, "-test.run") {
		t.Errorf("empty test script:\n%s", s)
	}
}

func TestSummaryLine(t *testing.T) {
	rel := "6.1.0-56-cloud-amd64"
	tests := []struct {
		sum  kernelSummary
		want string
	}{
		{kernelSummary{packages: 3, took: 41 * time.Second}, "vmlab: 6.1.0-56-cloud-amd64: PASS (3 packages, 41s)"},
		{kernelSummary{packages: 0, took: 7400 * time.Millisecond}, "vmlab: 6.1.0-56-cloud-amd64: PASS (0 packages, 7s)"},
		{kernelSummary{packages: 3, failed: []string{"./internal/sentinel", "./pkg/fortress"}, took: 62 * time.Second},
			"vmlab: 6.1.0-56-cloud-amd64: FAIL: ./internal/sentinel, ./pkg/fortress (3 packages, 62s)"},
		{kernelSummary{packages: 3, labErr: errors.New("kernel panic: x"), took: 9 * time.Second},
			"vmlab: 6.1.0-56-cloud-amd64: LAB FAILURE: kernel panic: x (9s)"},
	}
	for _, tt := range tests {
		if got := tt.sum.line(rel); got != tt.want {
			t.Errorf("line = %q, want %q", got, tt.want)
		}
	}
}

func TestLabPackagesAreRelative(t *testing.T) {
	for _, p := range labPackages {
		if !strings.HasPrefix(p, "./") || strings.Contains(p, "...") || filepath.IsAbs(p) {
			t.Errorf("lab package %q: want one ./relative package", p)
		}
	}
}

func TestLookTool(t *testing.T) {
	if _, err := lookTool("sh"); err != nil {
		t.Errorf("lookTool(sh): %v", err)
	}
	if _, err := lookTool("no-such-tool-vmlab"); err == nil {
		t.Error("lookTool found a tool that does not exist")
	}
}

func TestBuildEnv(t *testing.T) {
	base := []string{"HOME=/root", "GOARCH=riscv64", "CGO_ENABLED=1"}
	for _, tt := range []struct {
		a    arch.Arch
		want string
	}{{arch.Arch{}, "amd64"}, {arch.AMD64, "amd64"}, {arch.ARM64, "arm64"}} {
		env := buildEnv(base, tt.a)
		// The last setting of a variable wins (os/exec keeps the last).
		got := map[string]string{}
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			got[k] = v
		}
		if got["GOARCH"] != tt.want || got["GOOS"] != "linux" || got["CGO_ENABLED"] != "0" || got["HOME"] != "/root" {
			t.Errorf("buildEnv(%s) = %q", tt.a.Name, env)
		}
	}
	if base[1] != "GOARCH=riscv64" {
		t.Error("buildEnv changed its input")
	}
}
