//go:build linux

package serviceradar

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/carverauto/fortress/api/monitoringpb"
	"github.com/carverauto/fortress/internal/testutil"
	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/policy"
)

// TestServiceRadarPeerSentinelInLab: the ServiceRadar agent-gateway (the
// test peer) drives Sentinel in an agent hosting this package: a bundle
// with a Sentinel section protects a directory, root's writes there are
// refused and arrive as OCSF events, refused bundles (bad signature,
// unknown key, another agent, rollback, replay) answer success=false with
// the reason and change nothing, and a maintenance token sent as a
// command removes Fortress. This test process is the agent.
func TestServiceRadarPeerSentinelInLab(t *testing.T) {
	testutil.RequireLab(t, testutil.LSMReason)
	pinRoot := testutil.TempBPFFS(t)
	dir := t.TempDir()
	guarded := filepath.Join(dir, "guarded")
	if err := os.MkdirAll(guarded, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(guarded, "checks.json")
	if err := os.WriteFile(target, []byte(`{"v":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := policy.GenerateKey()
	pemKey, _ := policy.MarshalPublicKey(pub)
	trustFile := filepath.Join(dir, "trust.pem")
	if err := os.WriteFile(trustFile, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	block := fmt.Sprintf(`{"agent_id":"sr-lab","pin_root":%q,"state_dir":%q,"audit_log":%q,"trust_key":%q,"sentinel":{"enabled":true}}`,
		pinRoot, filepath.Join(dir, "state"), filepath.Join(dir, "log", "audit.log"), trustFile)
	cfg, err := ParseConfig([]byte(block))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	s, err := Open(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	removed := false
	token := func(nonce string) []byte {
		now := time.Now()
		raw, err := policy.SignToken(priv, policy.Token{Action: policy.MaintenanceRemove, Host: "sr-lab",
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(2 * time.Minute), Nonce: nonce})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(MaintenanceRequest{Token: raw})
		return b
	}
	t.Cleanup(func() {
		// Whatever happened, Fortress leaves the kernel before the
		// temporary tree (protected) is removed.
		if !removed {
			r := s.HandleCommand(context.Background(), Command{ID: "cleanup", Type: CommandMaintenance, PayloadJSON: token("cleanup")}, nil)
			if !r.Success {
				t.Errorf("cleanup removal: %s", r.Message)
			}
		}
		s.Close()
	})
	if testutil.SentinelUnsupported() != "" {
		// arm64 before 6.4: Sentinel cannot run, and must say so.
		removed = true
		if slices.Contains(s.Capabilities(), CapSentinel) {
			t.Fatalf("capabilities claim Sentinel on a kernel that cannot run it: %v", s.Capabilities())
		}
		st := s.Fortress().Status()
		testutil.ExpectSentinelStatusUnavailable(t, st.Sentinel.State, st.Sentinel.Reason)
	}
	if c := s.Capabilities(); !slices.Contains(c, CapSentinel) {
		t.Fatalf("capabilities %v: Sentinel did not start (%s)", c, s.Summary().Message)
	}

	p := startStream(t, s, "sr-lab")
	ctx := within(t, 4*time.Minute)
	hello, _, err := p.Hello(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(hello.Capabilities, CapSentinel) {
		t.Errorf("hello capabilities %v", hello.Capabilities)
	}
	run := func(id, typ string, payload []byte) *pb.CommandResult {
		t.Helper()
		r, err := p.Run(ctx, &pb.CommandRequest{CommandId: id, CommandType: typ, PayloadJson: payload, TtlSeconds: 300})
		if err != nil {
			t.Fatal(err)
		}
		return r.Result
	}
	// root's shell is not the agent: exec drops any role.
	rootWrite := func() error {
		out, err := exec.Command("/bin/sh", "-c", "echo pwned > "+target).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := rootWrite(); err != nil {
		t.Fatalf("the directory is protected before any bundle: %v", err)
	}
	if err := os.WriteFile(target, []byte(`{"v":1}`), 0o644); err != nil {
		t.Fatal(err)
	}

	sign := func(version uint64, sen *policy.Sentinel) []byte {
		raw, err := policy.Sign(policy.Body{Version: version, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{"sr-lab"},
			Payload: policy.Payload{Sentinel: sen}}, priv)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	v1 := sign(1, &policy.Sentinel{Mode: policy.SentinelEnforce, Protect: []string{guarded}})
	if res := run("apply-1", CommandApplyBundle, v1); !res.Success {
		t.Fatalf("apply v1: %+v", res)
	}
	err = rootWrite()
	if err == nil || !strings.Contains(err.Error(), "ermission denied") && !strings.Contains(err.Error(), "not permitted") {
		t.Errorf("root wrote into the directory the bundle protects: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != `{"v":1}` {
		t.Errorf("protected file changed: %q", b)
	}
	// The refusal reaches ServiceRadar's event pipeline as OCSF.
	deadline := time.After(30 * time.Second)
	for found := false; !found; {
		select {
		case ev := <-s.Events():
			var rec map[string]any
			if err := json.Unmarshal(ev.JSON, &rec); err != nil {
				t.Fatal(err)
			}
			file, _ := rec["file"].(map[string]any)
			found = rec["class_uid"] == float64(OCSFClassFileSys) && rec["disposition"] == "Blocked" && file["path"] == target
		case <-deadline:
			t.Fatal("no OCSF event for the refused write")
		}
	}

	// Version 2 keeps the protection; version 1 is then a rollback.
	v2 := sign(2, &policy.Sentinel{Mode: policy.SentinelEnforce, Protect: []string{guarded}})
	if res := run("apply-2", CommandApplyBundle, v2); !res.Success {
		t.Fatalf("apply v2: %+v", res)
	}

	// Refused bundles: the reason comes back, Sentinel keeps the policy.
	_, otherPriv, _ := policy.GenerateKey()
	unprotect := sign(3, &policy.Sentinel{Mode: policy.SentinelAudit})
	forged := []byte(strings.Replace(string(unprotect), `"audit"`, `"enforce"`, 1))
	foreign, err := policy.Sign(policy.Body{Version: 4, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{"sr-lab"},
		Payload: policy.Payload{Sentinel: &policy.Sentinel{Mode: policy.SentinelAudit}}}, otherPriv)
	if err != nil {
		t.Fatal(err)
	}
	other, err := policy.Sign(policy.Body{Version: 5, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{"someone-else"},
		Payload: policy.Payload{Sentinel: &policy.Sentinel{Mode: policy.SentinelAudit}}}, priv)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id, reason string
		raw        []byte
	}{
		{"bad-signature", "bad_signature", forged},
		{"unknown-key", "unknown_key", foreign},
		{"other-agent", "not_for_agent", other},
		{"rollback", "rollback", v1},
		{"replay", "replay", v2},
	} {
		res := run(c.id, CommandApplyBundle, c.raw)
		var ref Refusal
		_ = json.Unmarshal(res.PayloadJson, &ref)
		if res.Success || ref.Reason != c.reason || ref.InForce != 2 {
			t.Errorf("%s: %+v", c.id, res)
		}
	}
	if err := rootWrite(); err == nil {
		t.Error("a refused bundle loosened Sentinel: root wrote the protected file")
	}
	var st fortress.Status
	res := run("status", CommandStatus, nil)
	if err := json.Unmarshal(res.PayloadJson, &st); err != nil || st.Policy.Version != 2 || st.Sentinel.State != "enforcing" || !slices.Contains(st.Sentinel.Protected, guarded) || st.Sentinel.Denied == 0 {
		t.Errorf("status: %+v %v", st.Sentinel, err)
	}

	// A forged maintenance token is refused; the signed one removes.
	if res := run("maint-bad", CommandMaintenance, []byte(`{"token":"fmt1.garbage"}`)); res.Success {
		t.Errorf("garbage token accepted: %+v", res)
	}
	if res := run("maint-remove", CommandMaintenance, token("remove-1")); !res.Success {
		t.Fatalf("maintenance remove: %+v", res)
	}
	removed = true
	if err := rootWrite(); err != nil {
		t.Errorf("root still refused after the maintenance removal: %v", err)
	}
}
