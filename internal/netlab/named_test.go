package netlab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"syscall"

	"github.com/carverauto/fortress/internal/testutil"
)

// TestNamedLikeIPNetns: namespaces are bound under a shared /run/netns as
// ip netns does, so a mount namespace made while one exists does not keep
// it busy: removal succeeds, leaves nothing, and a leftover of the same
// name (an earlier run that did not clean up) is replaced.
func TestNamedLikeIPNetns(t *testing.T) {
	testutil.RequireRoot(t)
	name := "fortress-nltest-a"
	p, err := New(Config{Name: "nltest"})
	if err != nil {
		t.Fatal(err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var shared bool
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) > 6 && f[4] == NetnsDir && strings.Contains(l, "shared:") {
			shared = true
		}
	}
	if !shared {
		t.Fatalf("%s is not a shared mount point", NetnsDir)
	}
	// A process in its own mount namespace (a copy of ours, made while the
	// namespace exists) must not keep the file busy.
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// The bind mount twice over, as when a mount propagated back into
	// /run/netns: one unmount leaves the file busy.
	path := filepath.Join(NetnsDir, name)
	if err := syscall.Mount(path, path, "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("close with a mount namespace copy alive: %v", err)
	}
	if NamedExists(name) {
		t.Fatalf("%s left behind", filepath.Join(NetnsDir, name))
	}

	// A leftover of the same name is replaced.
	if err := os.WriteFile(filepath.Join(NetnsDir, name), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	p, err = New(Config{Name: "nltest"})
	if err != nil {
		t.Fatalf("over a leftover: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}
