package fortress

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
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
	testutil.RequireRoot(t)
	if !testutil.InLab() {
		testutil.MissingFeature(t, "BPF LSM runs only inside vmlab (host kernel refuses LSM loads)")
	}
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
	pub, _, _ := bundle.GenerateKey()

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
		sen := f.sen
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
	deadline := time.After(30 * time.Second)
	for {
		select {
		case e := <-f.Events():
			if e.Kind == KindViolation && e.Denied() && strings.HasSuffix(e.Path, "sweep.json") {
				if e.PID == 0 || e.Comm == "" {
					t.Errorf("violation without process details: %+v", e)
				}
				return
			}
		case <-deadline:
			t.Fatal("no violation event for the refused write")
		}
	}
}
