package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestShippedBinariesHoldNoHarness builds fortress-agent and fortressctl as
// they ship and fails if `go tool nm` shows either linking a benchmark, its
// BPF object, the load generator or the gateway it embeds: those live in
// tools/bench.
func TestShippedBinariesHoldNoHarness(t *testing.T) {
	if os.Getenv("FORTRESS_VMLAB") == "1" { // testutil.LabEnv
		t.Skip("skipped in the VM lab: it builds the commands from source, which only the host has")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	dir := t.TempDir()
	for _, cmd := range []string{"fortress-agent", "fortressctl"} {
		bin := filepath.Join(dir, cmd)
		build := exec.Command(goBin, "build", "-o", bin, "./cmd/"+cmd)
		build.Dir = filepath.Join("..", "..")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", cmd, err, out)
		}
		out, err := exec.Command(goBin, "tool", "nm", bin).Output()
		if err != nil {
			t.Fatalf("go tool nm %s: %v", cmd, err)
		}
		var found []string
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 3 {
				continue
			}
			if sym := strings.Join(f[2:], " "); harnessSymbol(sym) {
				found = append(found, sym)
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		if len(found) > 0 {
			if len(found) > 20 {
				found = append(found[:20], "...")
			}
			t.Errorf("%s links test harness code:\n  %s", cmd, strings.Join(found, "\n  "))
		}
	}
}

// harnessSymbol reports whether a symbol belongs to a benchmark or the load
// generator: Fortress's own code (the commands' main included) named for
// them, tools/, or the gateway and storage that loadgen embeds.
func harnessSymbol(sym string) bool {
	const module = "github.com/carverauto/fortress/"
	for _, pkg := range []string{module + "tools/", module + "internal/shield/bench", module + "internal/gateway.",
		module + "internal/store.", "modernc.org/sqlite"} {
		if strings.Contains(sym, pkg) {
			return true
		}
	}
	if !strings.Contains(sym, module) && !strings.HasPrefix(sym, "main.") {
		return false
	}
	l := strings.ToLower(sym)
	return strings.Contains(l, "bench") || strings.Contains(l, "loadgen")
}

// The check would see what it looks for.
func TestHarnessSymbol(t *testing.T) {
	for sym, want := range map[string]bool{
		"github.com/carverauto/fortress/internal/shield._BenchBytes": true,
		"github.com/carverauto/fortress/internal/shield/bench.Run":   true,
		"github.com/carverauto/fortress/internal/shield.loadBench":   true,
		"main.runLoadgen":    true,
		"main.benchSentinel": true,
		"github.com/carverauto/fortress/internal/gateway.(*Server).Serve":      true,
		"modernc.org/sqlite/lib.Xsqlite3_open":                                 true,
		"github.com/carverauto/fortress/internal/shield.(*Shield).WithTables":  false,
		"github.com/cilium/ebpf.(*Program).Benchmark":                          false,
		"github.com/carverauto/fortress/internal/controlstream.(*Client).Send": false,
	} {
		if got := harnessSymbol(sym); got != want {
			t.Errorf("harnessSymbol(%q) = %v, want %v", sym, got, want)
		}
	}
}
