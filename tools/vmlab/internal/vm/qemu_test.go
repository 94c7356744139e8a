package vm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeQemu writes a shell script that stands in for qemu and prints
// console as the guest would; after it, the script sleeps for sleep.
func fakeQemu(t *testing.T, console string, sleep string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qemu")
	script := "#!/bin/sh\ncat <<'EOF'\n" + console + "EOF\n"
	if sleep != "" {
		script += "exec sleep " + sleep + "\n"
	}
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunExitCode(t *testing.T) {
	var out []string
	con := &Console{Output: func(s string) { out = append(out, s) }}
	cfg := Config{Qemu: fakeQemu(t, "SeaBIOS\n"+StartMarker+"\r\nhello\r\n"+ExitMarker+"3\r\n", ""), Timeout: time.Minute}
	res, err := Run(context.Background(), cfg, con)
	if err != nil {
		t.Fatal(err)
	}
	if lerr := res.LabError(); lerr != nil {
		t.Fatalf("lab error: %v", lerr)
	}
	if res.ExitCode != 3 || strings.Join(out, "|") != "hello" {
		t.Errorf("exit %d, output %q", res.ExitCode, out)
	}
}

func TestRunKillsOnPanic(t *testing.T) {
	cfg := Config{Qemu: fakeQemu(t, "Kernel panic - not syncing: Fatal exception\n", "60"), Timeout: time.Minute}
	start := time.Now()
	res, err := Run(context.Background(), cfg, &Console{})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("qemu not killed on panic: took %s", time.Since(start))
	}
	if lerr := res.LabError(); lerr == nil || !strings.Contains(lerr.Error(), "kernel panic") {
		t.Errorf("lab error = %v, want a kernel panic", lerr)
	}
}

func TestRunTimeout(t *testing.T) {
	cfg := Config{Qemu: fakeQemu(t, StartMarker+"\nworking\n", "60"), Timeout: 300 * time.Millisecond}
	res, err := Run(context.Background(), cfg, &Console{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.QemuExit != "killed" {
		t.Errorf("result = %+v, want a killed, timed-out run", res)
	}
	if lerr := res.LabError(); lerr == nil || !strings.Contains(lerr.Error(), "timed out") {
		t.Errorf("lab error = %v", lerr)
	}
}

func TestRunBootStalled(t *testing.T) {
	cfg := Config{Qemu: fakeQemu(t, "SeaBIOS\nBooting from ROM...\n", "60"), Timeout: time.Minute, BootTimeout: 300 * time.Millisecond}
	start := time.Now()
	res, err := Run(context.Background(), cfg, &Console{})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("qemu not killed on a stalled boot: took %s", time.Since(start))
	}
	if !res.BootStalled || res.TimedOut || res.QemuExit != "killed" {
		t.Errorf("result = %+v, want a killed, stalled boot", res)
	}
	if lerr := res.LabError(); lerr == nil || !strings.Contains(lerr.Error(), "did not reach its init") {
		t.Errorf("lab error = %v", lerr)
	}

	// Once the start marker is in, the boot limit no longer applies.
	cfg = Config{Qemu: fakeQemu(t, StartMarker+"\nworking\n", "1"), Timeout: time.Minute, BootTimeout: 300 * time.Millisecond}
	res, err = Run(context.Background(), cfg, &Console{})
	if err != nil {
		t.Fatal(err)
	}
	if res.BootStalled || res.QemuExit == "killed" {
		t.Errorf("result = %+v, want qemu to end by itself after a started boot", res)
	}
}

func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	cfg := Config{Qemu: fakeQemu(t, StartMarker+"\n", "60"), Timeout: time.Minute}
	res, err := Run(ctx, cfg, &Console{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.LabError() == nil {
		t.Errorf("result = %+v, want an interrupted run", res)
	}
}

func TestRunOopsGrace(t *testing.T) {
	cfg := Config{
		Qemu:    fakeQemu(t, StartMarker+"\n[ 9.0] BUG: kernel NULL pointer dereference, address: 0000000000000008\n", "60"),
		Timeout: time.Minute,
		Grace:   200 * time.Millisecond,
	}
	res, err := Run(context.Background(), cfg, &Console{})
	if err != nil {
		t.Fatal(err)
	}
	if res.TimedOut || res.QemuExit != "killed" {
		t.Errorf("result = %+v, want qemu killed after the grace period", res)
	}
	if lerr := res.LabError(); lerr == nil || !strings.Contains(lerr.Error(), "oops") {
		t.Errorf("lab error = %v, want an oops", lerr)
	}
}

func TestRunNoMarker(t *testing.T) {
	res, err := Run(context.Background(), Config{Qemu: fakeQemu(t, "SeaBIOS\n", ""), Timeout: time.Minute}, &Console{})
	if err != nil {
		t.Fatal(err)
	}
	if lerr := res.LabError(); lerr == nil || !strings.Contains(lerr.Error(), "never started") {
		t.Errorf("lab error = %v", lerr)
	}
	res, err = Run(context.Background(), Config{Qemu: fakeQemu(t, StartMarker+"\nhalf\n", ""), Timeout: time.Minute}, &Console{})
	if err != nil {
		t.Fatal(err)
	}
	if lerr := res.LabError(); lerr == nil || !strings.Contains(lerr.Error(), "without an exit marker") {
		t.Errorf("lab error = %v", lerr)
	}
}

func TestRunMissingQemu(t *testing.T) {
	if _, err := Run(context.Background(), Config{Qemu: filepath.Join(t.TempDir(), "none")}, &Console{}); err == nil {
		t.Error("Run with a missing emulator succeeded")
	}
}
