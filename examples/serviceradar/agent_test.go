package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/policy"
	"github.com/carverauto/fortress/pkg/serviceradar"
)

func TestAgentJSONWithFortressBlock(t *testing.T) {
	var cfg Config
	dec := json.NewDecoder(strings.NewReader(`{"agent_id":"edge-7","fortress":{"interfaces":[{"name":"eth0"}],"sentinel":{"enabled":false}}}`))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Fortress == nil || cfg.Fortress.Interfaces[0].Name != "eth0" {
		t.Fatalf("fortress block %+v", cfg.Fortress)
	}
	err := json.Unmarshal([]byte(`{"agent_id":"edge-7","fortress":{"interfaces":[{"name":"eth0","speed":10}]}}`), &cfg)
	if err == nil || !strings.Contains(err.Error(), "speed") {
		t.Errorf("unknown field in the block: %v", err)
	}
}

func sign(t *testing.T, body policy.Body, priv ed25519.PrivateKey) []byte {
	t.Helper()
	raw, err := policy.Sign(body, priv)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestFortressInsideTheAgent applies a bundle, refuses others, reports
// status and events and passes maintenance tokens, all through the agent's
// own hello, command switch and status code. Shield has no interface here
// (that needs root: TestShieldInsideTheAgent), so this runs without root.
func TestFortressInsideTheAgent(t *testing.T) {
	pub, priv, err := policy.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fc := &serviceradar.Config{
		PinRoot: filepath.Join(dir, "pins"), StateDir: filepath.Join(dir, "state"), AuditLog: filepath.Join(dir, "log", "audit.log"),
		TrustKeys: []ed25519.PublicKey{pub},
		// The kernel is not probed in a test (no BPF LSM trial).
		Kernel: &fortress.KernelReport{Release: "test", Checks: map[string]bool{}, Reasons: map[string]string{}},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := NewServer(context.Background(), Config{AgentID: "edge-7", Fortress: fc}, log)
	defer s.Close()

	if runtime.GOOS != "linux" {
		if slices.Contains(s.Capabilities(), "fortress") {
			t.Error("fortress claimed off Linux")
		}
		if r := s.HandleCommand(context.Background(), CommandRequest{CommandID: "1", CommandType: serviceradar.CommandStatus}, nil); r.Success {
			t.Errorf("status off Linux: %+v", r)
		}
		return
	}
	if caps := s.Capabilities(); !slices.Contains(caps, "fortress") || !slices.Contains(caps, "sysmon") || slices.Contains(caps, "fortress.sentinel") {
		t.Errorf("capabilities %v", caps)
	}

	ctx := context.Background()
	var progress []CommandProgress
	rec := func(p CommandProgress) { progress = append(progress, p) }
	body := policy.Body{Version: 1, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{"edge-7"},
		Payload: policy.Payload{Shield: &policy.Shield{Mode: policy.ShieldEnforce, Rules: []policy.Rule{{CIDR: "192.0.2.0/24", Action: policy.ActionDrop}}}}}
	r := s.HandleCommand(ctx, CommandRequest{CommandID: "c1", CommandType: serviceradar.CommandApplyBundle, PayloadJSON: sign(t, body, priv), TTLSeconds: 60, CreatedAt: time.Now().Unix()}, rec)
	if !r.Success || len(progress) == 0 || progress[len(progress)-1].ProgressPercent != 100 {
		t.Fatalf("apply: %+v, progress %+v", r, progress)
	}
	other := body
	other.Version, other.Targets = 2, []string{"edge-8"}
	if r := s.HandleCommand(ctx, CommandRequest{CommandID: "c2", CommandType: serviceradar.CommandApplyBundle, PayloadJSON: sign(t, other, priv)}, rec); r.Success ||
		!strings.Contains(r.Message, "not_for_agent") {
		t.Errorf("bundle for another agent: %+v", r)
	}
	if r := s.HandleCommand(ctx, CommandRequest{CommandID: "c3", CommandType: serviceradar.CommandApplyBundle, PayloadJSON: sign(t, body, priv)}, rec); r.Success ||
		!strings.Contains(r.Message, "replay") {
		t.Errorf("replayed bundle: %+v", r)
	}
	if r := s.HandleCommand(ctx, CommandRequest{CommandID: "c4", CommandType: "fortress.nope"}, rec); r.Success {
		t.Errorf("unknown fortress command: %+v", r)
	}
	if r := s.HandleCommand(ctx, CommandRequest{CommandID: "c5", CommandType: serviceradar.CommandStatus, TTLSeconds: 5, CreatedAt: time.Now().Add(-time.Minute).Unix()}, rec); r.Success ||
		!strings.Contains(r.Message, "expired") {
		t.Errorf("expired command: %+v", r)
	}

	// Status: the command and the pushed summary.
	r = s.HandleCommand(ctx, CommandRequest{CommandID: "c6", CommandType: serviceradar.CommandStatus}, rec)
	var st fortress.Status
	if err := json.Unmarshal(r.PayloadJSON, &st); err != nil || !r.Success || st.Policy.Version != 1 || st.AgentID != "edge-7" {
		t.Errorf("status: %+v (%v)", st.Policy, err)
	}
	statuses := s.Statuses()
	var sum serviceradar.StatusSummary
	if len(statuses) != 1 || len(statuses[0].Message) > serviceradar.MaxStatusMessage || json.Unmarshal(statuses[0].Message, &sum) != nil ||
		statuses[0].ServiceName != "fortress" || sum.Policy.Version != 1 {
		t.Errorf("statuses %+v", statuses)
	}

	// Events: what the pipeline receives for a Sentinel violation.
	e, ok := serviceradar.OCSF(fortress.Event{Time: time.Now(), Kind: fortress.KindViolation, Severity: fortress.SeverityWarning,
		Op: "unlink", Path: "/etc/serviceradar/agent.json", Verdict: "denied", PID: 7, Comm: "rm"}, "edge-7", "host", "")
	var ocsf map[string]any
	if !ok || json.Unmarshal(e.JSON, &ocsf) != nil || ocsf["class_uid"] != 1001.0 || ocsf["activity_id"] != 4.0 {
		t.Errorf("ocsf %s", e.JSON)
	}
	evCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { s.PublishEvents(evCtx, func(string, []byte) {}); close(done) }()
	stop()
	<-done

	// Maintenance tokens: one of another key is refused; an audit token
	// verifies but finds no Sentinel to relax; a remove token takes
	// Fortress out.
	_, otherPriv, _ := policy.GenerateKey()
	token := func(action string, key ed25519.PrivateKey, nonce string) []byte {
		raw, err := policy.SignToken(key, policy.Token{Action: action, Host: "edge-7", NotBefore: time.Now().Add(-time.Minute),
			NotAfter: time.Now().Add(time.Hour), Nonce: nonce})
		if err != nil {
			t.Fatal(err)
		}
		p, _ := json.Marshal(serviceradar.MaintenanceRequest{Token: raw})
		return p
	}
	for _, c := range []struct {
		payload []byte
		ok      bool
		want    string
	}{
		{token(policy.MaintenanceAudit, otherPriv, "n1"), false, "refused"},
		{token(policy.MaintenanceAudit, priv, "n2"), false, "sentinel is not running"},
		{token(policy.MaintenanceRemove, priv, "n3"), true, "remove"},
	} {
		r := s.HandleCommand(ctx, CommandRequest{CommandID: "m", CommandType: serviceradar.CommandMaintenance, PayloadJSON: c.payload}, rec)
		if r.Success != c.ok || !strings.Contains(r.Message, c.want) {
			t.Errorf("maintenance: %+v, want success=%v and %q", r, c.ok, c.want)
		}
	}
}
