//go:build linux

package fortress

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/testutil"
)

// TestSentinelInLab starts Fortress with a real Sentinel (VM lab only: the
// host refuses BPF LSM). The test binary is the agent identity, so it may
// write the protected config; a shell it starts may not, and the refusal
// reaches Events.
func TestSentinelInLab(t *testing.T) {
	testutil.RequireLab(t, testutil.LSMReason)
	pinRoot := testutil.TempBPFFS(t)
	dir, err := os.MkdirTemp("", "fortress-sentinel-lab-")
	if err != nil {
		t.Fatal(err)
	}
	configDir := filepath.Join(dir, "etc")
	os.MkdirAll(configDir, 0o755)
	sweep := filepath.Join(configDir, "sweep.json")
	os.WriteFile(sweep, []byte(`{"a":1}`), 0o644)
	watched := filepath.Join(dir, "watched.txt")
	os.WriteFile(watched, []byte("w"), 0o644)
	self, _ := os.Executable()
	pub, priv, _ := bundle.GenerateKey()

	f, err := Start(context.Background(), Config{
		AgentID: "lab", PinRoot: pinRoot, StateDir: filepath.Join(dir, "state"), AuditLog: filepath.Join(dir, "log", "audit.log"),
		TrustKeys: []ed25519.PublicKey{pub},
		Sentinel:  SentinelConfig{AgentBinary: self, ConfigDir: configDir, Watch: []string{watched}},
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sen := f.sentinel.running()
		f.Stop() // ends the event reader before the maps go away
		if sen != nil {
			if err := sen.Remove(); err != nil {
				t.Errorf("remove sentinel: %v", err)
			}
		}
		// On 5.10 the kernel frees detached LSM programs only after a
		// grace period: wait until the protected config can be removed
		// before the test's directories are deleted.
		deadline := time.Now().Add(60 * time.Second)
		for os.Remove(sweep) != nil && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if _, err := os.Stat(sweep); err == nil {
			t.Errorf("protection still active 60s after Remove")
		}
		os.RemoveAll(dir)
	})
	st := f.Status()
	testutil.ExpectSentinelStatusUnavailable(t, st.Sentinel.State, st.Sentinel.Reason) // arm64 before 6.4
	if st.Sentinel.State != SentinelEnforcing {
		t.Fatalf("sentinel in the lab: %+v (kernel %+v)", st.Sentinel, f.Kernel())
	}
	if st.Shield.State != ShieldDisabled {
		t.Errorf("shield without interfaces: %+v", st.Shield)
	}

	// The agent itself may write its config.
	if err := os.WriteFile(sweep, []byte(`{"a":2}`), 0o644); err != nil {
		t.Fatalf("agent write refused: %v", err)
	}
	out, err := exec.Command("/bin/sh", "-c", "echo x > "+sweep).CombinedOutput()
	if err == nil {
		t.Fatalf("root shell wrote the protected config: %s", out)
	}
	if b, _ := os.ReadFile(sweep); string(b) != `{"a":2}` {
		t.Fatalf("config changed: %q", b)
	}
	waitEvent(t, f, "violation for the refused write", func(e Event) bool {
		if e.Kind == KindViolation && e.Denied() && strings.HasSuffix(e.Path, "sweep.json") {
			if e.PID == 0 || e.Comm == "" {
				t.Errorf("violation without process details: %+v", e)
			}
			return true
		}
		return false
	})

	// A signed bundle protects and watches more paths at once, without a
	// restart; the agent keeps its own rights on what it already had.
	later := filepath.Join(dir, "later")
	os.MkdirAll(later, 0o755)
	laterFile := filepath.Join(later, "checker.json")
	os.WriteFile(laterFile, []byte("c"), 0o644)
	laterWatched := filepath.Join(dir, "later-watched.txt")
	os.WriteFile(laterWatched, []byte("w"), 0o644)
	raw, err := bundle.Sign(bundle.Body{Version: 1, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{"lab"},
		Payload: bundle.Payload{Sentinel: &bundle.Sentinel{Mode: bundle.SentinelEnforce, Protect: []string{later}, Watch: []string{laterWatched}}}}, priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ApplyBundle(raw); err != nil {
		t.Fatalf("bundle with sentinel paths: %v", err)
	}
	if out, err := exec.Command("/bin/sh", "-c", "echo x > "+laterFile).CombinedOutput(); err == nil {
		t.Fatalf("root shell wrote a path the bundle protects: %s", out)
	}
	if b, _ := os.ReadFile(laterFile); string(b) != "c" {
		t.Fatalf("protected file changed: %q", b)
	}
	if err := os.WriteFile(laterFile, []byte("agent"), 0o644); err != nil {
		t.Fatalf("agent write to a path the bundle protects: %v", err)
	}
	if err := os.WriteFile(sweep, []byte(`{"a":3}`), 0o644); err != nil {
		t.Fatalf("agent lost its config after the bundle: %v", err)
	}
	if out, err := exec.Command("/bin/sh", "-c", "echo more >> "+laterWatched).CombinedOutput(); err != nil {
		t.Fatalf("append to a watched path: %v %s", err, out)
	}
	waitEvent(t, f, "FIM event for the newly watched path", func(e Event) bool {
		return e.Kind == KindFIM && strings.HasSuffix(e.Path, "later-watched.txt") && e.Op != "" && e.Comm != ""
	})
	if st := f.Status(); !slices.Contains(st.Sentinel.Watched, laterWatched) || !slices.Contains(st.Sentinel.Protected, later) {
		t.Errorf("status does not list the bundle's paths: %+v", st.Sentinel)
	}
}

func waitEvent(t *testing.T, f *Fortress, what string, match func(Event) bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case e := <-f.Events():
			if match(e) {
				return
			}
		case <-deadline:
			t.Fatalf("no %s", what)
		}
	}
}

// TestShieldGuardedInLab: with Sentinel running, root cannot detach
// Shield's link, write its maps or remove its pins (ATTACKS rows 17-21),
// while reading them still works; Shield keeps dropping.
func TestShieldGuardedInLab(t *testing.T) {
	testutil.RequireLab(t, testutil.LSMReason)
	l := newLab(t)
	dir, err := os.MkdirTemp("", "fortress-guard-lab-")
	if err != nil {
		t.Fatal(err)
	}
	configDir := filepath.Join(dir, "etc")
	os.MkdirAll(configDir, 0o755)
	marker := filepath.Join(configDir, "sweep.json")
	os.WriteFile(marker, []byte(`{}`), 0o644)
	self, _ := os.Executable()
	l.cfg.Kernel = nil // probe the lab kernel for real
	l.cfg.Sentinel = SentinelConfig{AgentBinary: self, ConfigDir: configDir}
	f, err := Start(context.Background(), l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sen := f.sentinel.running()
		f.Stop()
		if sen != nil {
			if err := sen.Remove(); err != nil {
				t.Errorf("remove sentinel: %v", err)
			}
		}
		deadline := time.Now().Add(60 * time.Second)
		for os.Remove(marker) != nil && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		os.RemoveAll(dir)
	})
	st := f.Status()
	testutil.ExpectSentinelStatusUnavailable(t, st.Sentinel.State, st.Sentinel.Reason) // arm64 before 6.4
	if st.Sentinel.State != SentinelEnforcing || st.Shield.State == ShieldDegraded {
		t.Fatalf("sentinel %+v, shield %+v", st.Sentinel, st.Shield)
	}
	if _, err := f.ApplyBundle(l.bundle(t, 1, bundle.Payload{Shield: &bundle.Shield{Mode: "enforce",
		Rules: []bundle.Rule{{CIDR: "10.67.1.0/24", Action: "drop"}}}})); err != nil {
		t.Fatal(err)
	}
	shieldDir := filepath.Join(l.cfg.PinRoot, "shield")
	linkPin := filepath.Join(shieldDir, "link_"+l.pair.B.Iface)
	state := filepath.Join(shieldDir, "shield_state")
	refused := [][]string{
		{"bpftool", "link", "detach", "pinned", linkPin},
		{"bpftool", "map", "update", "pinned", state, "key", "0", "0", "0", "0", "value", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0"},
		{"bpftool", "map", "delete", "pinned", filepath.Join(shieldDir, "v4_dir"), "key", "0", "0", "0", "0"},
		{"rm", "-f", linkPin},
		{"rm", "-rf", shieldDir},
		{"mv", state, filepath.Join(shieldDir, "moved")},
	}
	for _, argv := range refused {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err == nil {
			t.Errorf("%v succeeded as root: %s", argv, out)
		}
	}
	for _, argv := range [][]string{
		{"bpftool", "map", "dump", "pinned", state},
		{"bpftool", "link", "show", "pinned", linkPin},
		{"bpftool", "prog", "show"},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Errorf("%v refused: %v: %s", argv, err, out)
		}
	}
	l.send(t, src4bl, dst4, 20)
	l.send(t, src4ok, dst4, 5)
	eventually(t, "allowed traffic arrives", func() bool { return l.rx.Count(src4ok) == 5 })
	if n := l.rx.Count(src4bl); n != 0 {
		t.Fatalf("%d blocked datagrams arrived after the tampering attempts", n)
	}
}
