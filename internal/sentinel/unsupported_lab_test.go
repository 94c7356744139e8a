package sentinel

import (
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/pins"
	"github.com/carverauto/fortress/internal/testutil"
)

// refusedStart is the outcome of one Start on a kernel where Sentinel
// cannot run: loading its programs takes a while under emulation, and the
// answer is the same for every test of one boot.
var refusedStart struct {
	once sync.Once
	err  error
	left []string // pins a refused start left behind
}

// expectUnavailable ends a lab test of Sentinel on a kernel where Sentinel
// cannot run (testutil.SentinelUnsupported: arm64 before 6.4) after
// checking that Start refuses there with ErrUnavailable and the kernel's
// reason, pinning nothing. Elsewhere it does nothing, and the test goes on.
func expectUnavailable(t *testing.T) {
	t.Helper()
	if testutil.SentinelUnsupported() == "" {
		return
	}
	refusedStart.once.Do(func() { refusedStart.err, refusedStart.left = startWithoutTrampolines(t) })
	if err := refusedStart.err; err != nil && len(refusedStart.left) > 0 {
		// A half-loaded Sentinel must not be there for the next agent to
		// adopt.
		t.Errorf("start failed (%v) but left pins: %q", err, refusedStart.left)
	}
	testutil.ExpectSentinelUnavailable(t, refusedStart.err, ErrUnavailable)
}

// startWithoutTrampolines starts Sentinel on a tree of its own and returns
// Start's error and the pins left in its private bpffs.
func startWithoutTrampolines(t *testing.T) (error, []string) {
	dir, err := os.MkdirTemp("", "fortress-unsupported-")
	must(t, err)
	defer os.RemoveAll(dir)
	bpffs := filepath.Join(dir, "bpf")
	configDir, stateDir := filepath.Join(dir, "etc"), filepath.Join(dir, "state")
	for _, d := range []string{bpffs, configDir, stateDir} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, unix.Mount("bpffs", bpffs, "bpf", 0, ""))
	defer unix.Unmount(bpffs, unix.MNT_DETACH)
	must(t, os.WriteFile(filepath.Join(configDir, "sweep.json"), []byte(`{}`), 0o644))
	self, err := os.Executable()
	must(t, err)
	s, err := Start(Config{
		PinRoot:     pins.Root(filepath.Join(bpffs, "serviceradar")),
		AgentBinary: self,
		StagingDir:  filepath.Join(dir, "staging"),
		ConfigDir:   configDir,
		StateDirs:   []string{stateDir},
	})
	if err == nil {
		if rerr := s.Remove(); rerr != nil {
			t.Errorf("remove sentinel: %v", rerr)
		}
		return nil, nil
	}
	var left []string
	filepath.WalkDir(bpffs, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	return err, left
}

// TestLabUnavailableWithoutTrampolines: on a kernel that cannot attach
// BPF trampolines to kernel functions, Start says Sentinel is unavailable
// and why, and pins nothing. Elsewhere it is skipped: every other lab test
// proves Sentinel runs there.
func TestLabUnavailableWithoutTrampolines(t *testing.T) {
	testutil.RequireLab(t, testutil.LSMReason)
	if testutil.SentinelUnsupported() == "" {
		t.Skip("Sentinel runs on this kernel; the other lab tests prove it")
	}
	refusedStart.once.Do(func() { refusedStart.err, refusedStart.left = startWithoutTrampolines(t) })
	if len(refusedStart.left) > 0 {
		t.Errorf("start failed (%v) but left pins: %q", refusedStart.err, refusedStart.left)
	}
	if err := testutil.CheckSentinelUnavailable(refusedStart.err, ErrUnavailable); err != nil {
		t.Fatal(err)
	}
	t.Logf("Start refused, as it must: %v", refusedStart.err)
}
