//go:build linux

package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/policy"
	"github.com/carverauto/fortress/pkg/serviceradar"
)

// needRoot skips without root, and in runs marked unprivileged (as
// Fortress's own tests do).
func needRoot(t *testing.T) {
	t.Helper()
	if os.Getenv("FORTRESS_TEST_UNPRIVILEGED") == "1" {
		t.Skip("skipped: needs root, and this run is unprivileged")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root (CAP_BPF, CAP_NET_ADMIN)")
	}
}

// privateNetns makes a network namespace of the test's own, bound on a
// file, and removes it afterwards.
func privateNetns(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it ends with this goroutine, so
		// no other goroutine runs in the new namespace.
		runtime.LockOSThread()
		if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		errc <- syscall.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()), path, "", syscall.MS_BIND, "")
	}()
	if err := <-errc; err != nil {
		t.Fatalf("private network namespace: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(path, syscall.MNT_DETACH) })
	return path
}

// privateBPFFS mounts a bpffs of the test's own for Fortress's pins.
func privateBPFFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// TestShieldInsideTheAgent: with root, Shield attaches (to the loopback
// interface of a namespace the test makes), the agent claims it, and a
// bundle sent as a command is in force.
func TestShieldInsideTheAgent(t *testing.T) {
	needRoot(t)
	pub, priv, _ := policy.GenerateKey()
	dir := t.TempDir()
	fc := &serviceradar.Config{
		Interfaces: []serviceradar.Interface{{Name: "lo", Mode: "generic", Netns: privateNetns(t)}},
		PinRoot:    privateBPFFS(t), StateDir: filepath.Join(dir, "state"), AuditLog: filepath.Join(dir, "audit.log"),
		TrustKeys: []ed25519.PublicKey{pub},
		Kernel:    &fortress.KernelReport{Release: "test", Checks: map[string]bool{}, Reasons: map[string]string{}},
	}
	s := NewServer(context.Background(), Config{AgentID: "edge-9", Fortress: fc}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer s.Close()
	if caps := s.Capabilities(); !slices.Contains(caps, serviceradar.CapShield) {
		t.Fatalf("capabilities %v", caps)
	}
	raw, err := policy.Sign(policy.Body{Version: 1, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{"edge-9"},
		Payload: policy.Payload{Shield: &policy.Shield{Mode: policy.ShieldEnforce, Rules: []policy.Rule{
			{CIDR: "192.0.2.0/24", Action: policy.ActionDrop}, {CIDR: "2001:db8::/32", Action: policy.ActionDrop}}}}}, priv)
	if err != nil {
		t.Fatal(err)
	}
	r := s.HandleCommand(context.Background(), CommandRequest{CommandID: "c1", CommandType: serviceradar.CommandApplyBundle, PayloadJSON: raw}, func(CommandProgress) {})
	if !r.Success {
		t.Fatalf("apply: %+v", r)
	}
	var sum serviceradar.StatusSummary
	st := s.Statuses()[0]
	if err := json.Unmarshal(st.Message, &sum); err != nil || !st.Available || sum.Shield.State != fortress.ShieldEnforcing ||
		sum.Shield.Rules != 2 || sum.Shield.Attached != 1 || sum.Policy.Version != 1 {
		t.Errorf("summary %s (%v)", st.Message, err)
	}
}
