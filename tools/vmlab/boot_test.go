package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/carverauto/fortress/tools/vmlab/internal/kernel"
	"github.com/carverauto/fortress/tools/vmlab/internal/vm"
)

// A guest that panics is booted again with one vCPU, at most three times
// in all; the first run that reports an exit code ends it.
func TestBootRetriesAfterPanicWithOneCPU(t *testing.T) {
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	// The fake qemu logs its -smp value; it panics on its first two runs.
	script := `#!/bin/sh
smp=""; while [ $# -gt 0 ]; do [ "$1" = -smp ] && smp=$2; shift; done
echo "$smp" >> ` + runs + `
n=$(wc -l < ` + runs + `)
if [ "$n" -lt 3 ]; then echo "Kernel panic - not syncing: Fatal exception in interrupt"; exec sleep 30; fi
echo ` + vm.StartMarker + `
echo ` + vm.ExitMarker + `0
`
	qemu := filepath.Join(dir, "qemu")
	if err := os.WriteFile(qemu, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	l := &lab{qemu: qemu, log: &log}
	res, err := l.boot(context.Background(), kernel.Line{}, &kernel.Kernel{Dir: dir, Release: "test"}, filepath.Join(dir, "initrd"), time.Minute, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if lerr := res.LabError(); lerr != nil || res.ExitCode != 0 {
		t.Fatalf("third boot: lab error %v, exit %d\n%s", lerr, res.ExitCode, log.String())
	}
	b, _ := os.ReadFile(runs)
	if got := strings.Fields(string(b)); strings.Join(got, ",") != "2,1,1" {
		t.Errorf("-smp per boot = %v, want 2,1,1", got)
	}
	if !strings.Contains(log.String(), "booting once more, with one vCPU") {
		t.Errorf("log: %s", log.String())
	}
}
