package serviceradar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/policy"
)

// fakeEngine stands in for a running Fortress.
type fakeEngine struct {
	status   fortress.Status
	applied  [][]byte
	applyErr error
	tokens   []string
	tokenErr error
	events   chan fortress.Event
}

func newFake() *fakeEngine {
	return &fakeEngine{events: make(chan fortress.Event, 16), status: fortress.Status{AgentID: "a1",
		Shield:   fortress.ShieldStatus{State: fortress.ShieldEnforcing, Rules: 3},
		Sentinel: fortress.SentinelStatus{State: fortress.SentinelUnavailable, Reason: "BPF LSM unusable"},
		Policy:   fortress.PolicyStatus{Version: 4, InForce: true}}}
}

func (f *fakeEngine) ApplyBundle(raw []byte) (fortress.Ack, error) {
	f.applied = append(f.applied, raw)
	if f.applyErr != nil {
		return fortress.Ack{}, f.applyErr
	}
	return fortress.Ack{Version: 5, Rules: 2, ShieldMode: "enforce"}, nil
}
func (f *fakeEngine) Status() fortress.Status { return f.status }
func (f *fakeEngine) TopCounters() ([]fortress.RuleCounter, map[string][2]uint64) {
	return []fortress.RuleCounter{{Rule: "10.0.0.0/8", Packets: 9}, {Rule: "10.1.0.0/16", Packets: 3}},
		map[string][2]uint64{"drop": {12, 1200}}
}
func (f *fakeEngine) Maintenance(tok string) (fortress.MaintenanceResult, error) {
	f.tokens = append(f.tokens, tok)
	if f.tokenErr != nil {
		return fortress.MaintenanceResult{}, f.tokenErr
	}
	return fortress.MaintenanceResult{Action: "audit", Until: time.Unix(2000000000, 0)}, nil
}
func (f *fakeEngine) EndMaintenance() error         { return fortress.ErrNoSentinel }
func (f *fakeEngine) Events() <-chan fortress.Event { return f.events }
func (f *fakeEngine) Stop()                         {}

func testService(t *testing.T, eng engine) *Service {
	t.Helper()
	s := newService(Config{AgentID: "a1"}, eng, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(s.Close)
	return s
}

func TestCommands(t *testing.T) {
	eng := newFake()
	s := testService(t, eng)
	ctx := context.Background()
	now := time.Now()
	var progress []Progress
	rec := func(p Progress) { progress = append(progress, p) }

	r := s.handle(ctx, Command{ID: "c1", Type: CommandApplyBundle, PayloadJSON: []byte(`{"format":"x"}`)}, rec, now)
	if !r.Success || !strings.Contains(r.Message, "version 5") || len(progress) != 2 || progress[1].Percent != 100 {
		t.Errorf("apply: %+v, progress %+v", r, progress)
	}
	if string(eng.applied[0]) != `{"format":"x"}` {
		t.Errorf("bundle bytes changed on the way: %q", eng.applied[0])
	}
	var ack fortress.Ack
	if err := json.Unmarshal(r.PayloadJSON, &ack); err != nil || ack.Version != 5 {
		t.Errorf("apply payload %s: %v", r.PayloadJSON, err)
	}

	for _, refusal := range []struct {
		err  error
		code string
	}{
		{fmt.Errorf("verify: %w: ed25519", policy.ErrBadSignature), "bad_signature"},
		{fmt.Errorf("%w: version 2, last applied 4", policy.ErrRollback), "rollback"},
		{fmt.Errorf("%w: targets [b7]", policy.ErrNotForAgent), "not_for_agent"},
	} {
		eng.applyErr = refusal.err
		r = s.handle(ctx, Command{ID: "c2", Type: CommandApplyBundle, PayloadJSON: []byte(`{}`)}, nil, now)
		var ref Refusal
		_ = json.Unmarshal(r.PayloadJSON, &ref)
		if r.Success || !strings.Contains(r.Message, refusal.code) || ref.Reason != refusal.code || ref.InForce != 4 {
			t.Errorf("refusal %v: %+v (%+v)", refusal.err, r, ref)
		}
	}

	r = s.handle(ctx, Command{ID: "c3", Type: CommandStatus}, nil, now)
	var st fortress.Status
	if err := json.Unmarshal(r.PayloadJSON, &st); !r.Success || err != nil || st.Policy.Version != 4 {
		t.Errorf("status: %+v %v", r, err)
	}

	r = s.handle(ctx, Command{ID: "c4", Type: CommandCounters, PayloadJSON: []byte(`{"top":1}`)}, nil, now)
	var cr CountersReply
	if err := json.Unmarshal(r.PayloadJSON, &cr); !r.Success || err != nil || len(cr.Top) != 1 || cr.Sums["drop"][0] != 12 {
		t.Errorf("counters: %+v %v", r, err)
	}
	if r = s.handle(ctx, Command{ID: "c5", Type: CommandCounters, PayloadJSON: []byte(`{"limit":1}`)}, nil, now); r.Success ||
		!strings.Contains(r.Message, "limit") {
		t.Errorf("counters with an unknown field: %+v", r)
	}

	r = s.handle(ctx, Command{ID: "c6", Type: CommandMaintenance, PayloadJSON: []byte(`{"token":"fmt1.a.b"}`)}, nil, now)
	if !r.Success || eng.tokens[0] != "fmt1.a.b" || !strings.Contains(r.Message, "audit") {
		t.Errorf("maintenance: %+v", r)
	}
	eng.tokenErr = fmt.Errorf("%w: maintenance token: bad signature", fortress.ErrTokenRefused)
	if r = s.handle(ctx, Command{ID: "c7", Type: CommandMaintenance, PayloadJSON: []byte(`{"token":"fmt1.a.c"}`)}, nil, now); r.Success ||
		!strings.Contains(r.Message, "bad signature") {
		t.Errorf("refused token: %+v", r)
	}
	for _, p := range []string{``, `{}`, `{"token":"x","end":true}`, `{"tok":"x"}`} {
		if r = s.handle(ctx, Command{ID: "c8", Type: CommandMaintenance, PayloadJSON: []byte(p)}, nil, now); r.Success {
			t.Errorf("maintenance payload %q accepted: %+v", p, r)
		}
	}
	if r = s.handle(ctx, Command{ID: "c9", Type: CommandMaintenance, PayloadJSON: []byte(`{"end":true}`)}, nil, now); r.Success ||
		!strings.Contains(r.Message, "sentinel is not running") {
		t.Errorf("end without sentinel: %+v", r)
	}

	if r = s.handle(ctx, Command{ID: "c10", Type: "fortress.reboot"}, nil, now); r.Success ||
		!strings.Contains(r.Message, `unsupported command "fortress.reboot"`) {
		t.Errorf("unknown fortress type: %+v", r)
	}
	if r = s.handle(ctx, Command{ID: "c11", Type: "sweep.run_group"}, nil, now); r.Success {
		t.Errorf("foreign type: %+v", r)
	}
	if r = s.handle(ctx, Command{ID: "c12", Type: CommandApplyBundle}, nil, now); r.Success || !strings.Contains(r.Message, "empty payload") {
		t.Errorf("empty bundle: %+v", r)
	}
}

func TestExpiredCommandRefused(t *testing.T) {
	eng := newFake()
	s := testService(t, eng)
	now := time.Unix(1_800_000_000, 0)
	expired := Command{ID: "old", Type: CommandApplyBundle, PayloadJSON: []byte(`{}`), CreatedAt: now.Unix() - 61, TTLSeconds: 60}
	if r := s.handle(context.Background(), expired, nil, now); r.Success || !strings.Contains(r.Message, "expired") {
		t.Errorf("expired: %+v", r)
	}
	if len(eng.applied) != 0 {
		t.Error("an expired bundle reached Fortress")
	}
	live := expired
	live.CreatedAt = now.Unix() - 59
	if r := s.handle(context.Background(), live, nil, now); !r.Success {
		t.Errorf("live: %+v", r)
	}
	if (Command{CreatedAt: 1, TTLSeconds: 0}).Expired(now) {
		t.Error("a command without ttl expired")
	}
}

func TestNilService(t *testing.T) {
	var s *Service
	if c := s.Capabilities(); c != nil {
		t.Errorf("capabilities %v", c)
	}
	if r := s.HandleCommand(context.Background(), Command{Type: CommandStatus}, nil); r.Success || !strings.Contains(r.Message, "not running") {
		t.Errorf("command: %+v", r)
	}
	sum := s.Summary()
	if sum.Available || !json.Valid(sum.Message) || sum.ServiceName != "fortress" {
		t.Errorf("summary %+v", sum)
	}
	if s.Events() != nil || s.Fortress() != nil {
		t.Error("events or fortress from nil")
	}
	s.Close()
}

func TestCapabilities(t *testing.T) {
	st := fortress.Status{Shield: fortress.ShieldStatus{State: fortress.ShieldDegraded}, Sentinel: fortress.SentinelStatus{State: fortress.SentinelUnavailable}}
	if c := capabilities(st); strings.Join(c, ",") != "fortress" {
		t.Errorf("degraded: %v", c)
	}
	st.Shield.State, st.Sentinel.State = fortress.ShieldDryRun, fortress.SentinelAudit
	if c := capabilities(st); strings.Join(c, ",") != "fortress,fortress.shield,fortress.sentinel" {
		t.Errorf("running: %v", c)
	}
}

func TestSummaryFits(t *testing.T) {
	small := summarize(newFake().status, 0)
	var sum StatusSummary
	if err := json.Unmarshal(small, &sum); err != nil || sum.Truncated || sum.Policy.Version != 4 || sum.Shield.Rules != 3 {
		t.Errorf("small summary %s: %v", small, err)
	}
	huge := strings.Repeat("x", 100_000)
	ctl := strings.Repeat("\x01<é", 30_000)
	st := newFake().status
	st.AgentID = huge
	st.Shield.Reason, st.Sentinel.Reason, st.Policy.LastError, st.Policy.Digest = ctl, huge, ctl, huge
	for i := range 5000 {
		st.Degraded = append(st.Degraded, fmt.Sprintf("interface veth%d: %s", i, ctl[:300]))
		st.Shield.Interfaces = append(st.Shield.Interfaces, fortress.InterfaceStatus{Name: "x", Attached: i%2 == 0})
	}
	msg := summarize(st, 7)
	if len(msg) > MaxStatusMessage {
		t.Fatalf("summary of %d bytes", len(msg))
	}
	if err := json.Unmarshal(msg, &sum); err != nil {
		t.Fatalf("summary is not JSON: %v", err)
	}
	if !sum.Truncated || sum.DegradedTotal != 5000 || sum.Shield.Attached != 2500 || sum.EventsDropped != 7 || sum.Shield.State != "enforcing" {
		t.Errorf("truncated summary: %+v", sum)
	}
	st.Shield.State = strings.Repeat("\x02", 10_000)
	if msg = summarize(st, 0); len(msg) > MaxStatusMessage || !json.Valid(msg) {
		t.Errorf("worst case: %d bytes, valid %v", len(msg), json.Valid(msg))
	}
}

func TestOCSFMapping(t *testing.T) {
	ts := time.Unix(1_800_000_000, 123_000_000)
	e := fortress.Event{Time: ts, Kind: fortress.KindViolation, Severity: fortress.SeverityWarning, Layer: "sentinel",
		Op: "unlink", Path: "/etc/serviceradar/sweep.json", Verdict: "denied", PID: 42, UID: 0, Comm: "rm", Exe: "/usr/bin/rm"}
	rec, ok := OCSF(e, "a1", "host1", "")
	if !ok {
		t.Fatal("violation not mapped")
	}
	var m map[string]any
	if err := json.Unmarshal(rec.JSON, &m); err != nil {
		t.Fatal(err)
	}
	get := func(path ...string) any {
		var v any = m
		for _, p := range path {
			v = v.(map[string]any)[p]
		}
		return v
	}
	for _, c := range []struct {
		path []string
		want any
	}{
		{[]string{"class_uid"}, 1001.0}, {[]string{"category_uid"}, 1.0}, {[]string{"activity_id"}, 4.0},
		{[]string{"type_uid"}, 100104.0}, {[]string{"severity_id"}, 4.0}, {[]string{"time"}, 1800000000123.0},
		{[]string{"status_id"}, 2.0}, {[]string{"disposition_id"}, 2.0}, {[]string{"action_id"}, 2.0},
		{[]string{"actor", "process", "pid"}, 42.0}, {[]string{"actor", "process", "name"}, "rm"},
		{[]string{"actor", "process", "file", "path"}, "/usr/bin/rm"}, {[]string{"actor", "user", "uid"}, "0"},
		{[]string{"file", "path"}, "/etc/serviceradar/sweep.json"}, {[]string{"file", "name"}, "sweep.json"},
		{[]string{"metadata", "product", "name"}, "Fortress"}, {[]string{"metadata", "version"}, "1.1.0"},
		{[]string{"device", "uid"}, "a1"},
	} {
		if got := get(c.path...); got != c.want {
			t.Errorf("%s = %v, want %v", strings.Join(c.path, "."), got, c.want)
		}
	}
	if rec.SeverityID != SeverityHigh {
		t.Errorf("severity %d", rec.SeverityID)
	}

	fim := fortress.Event{Time: ts, Kind: fortress.KindFIM, Severity: fortress.SeverityInfo, Op: "open_write", Path: "/etc/passwd", Verdict: "allowed"}
	rec, _ = OCSF(fim, "a1", "", "")
	_ = json.Unmarshal(rec.JSON, &m)
	if m["activity_id"] != 3.0 || m["severity_id"] != 1.0 || m["disposition_id"] != 17.0 || m["status_id"] != 1.0 {
		t.Errorf("fim: %s", rec.JSON)
	}
	audited := e
	audited.Verdict, audited.Op = "audited", "ptrace"
	rec, _ = OCSF(audited, "a1", "", "")
	_ = json.Unmarshal(rec.JSON, &m)
	if m["activity_id"] != 99.0 || m["activity_name"] != "ptrace" || m["disposition_id"] != 15.0 {
		t.Errorf("audited ptrace: %s", rec.JSON)
	}
	if _, ok := OCSF(fortress.Event{Kind: fortress.KindDryRun}, "a1", "", ""); ok {
		t.Error("a shield sample mapped to file system activity")
	}
}

func TestEventsStream(t *testing.T) {
	eng := newFake()
	s := testService(t, eng)
	eng.events <- fortress.Event{Kind: fortress.KindDryRun, Rule: "10.0.0.0/8"}
	eng.events <- fortress.Event{Kind: fortress.KindCritical, Layer: "sentinel", Detail: "x"}
	eng.events <- fortress.Event{Time: time.Now(), Kind: fortress.KindFIM, Op: "unlink", Path: "/etc/x"}
	select {
	case e := <-s.Events():
		if !strings.Contains(string(e.JSON), `"path":"/etc/x"`) {
			t.Errorf("event %s", e.JSON)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no OCSF event")
	}
}

func TestConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.AgentID == "" || c.PinRoot != fortress.DefaultPinRoot || c.Sentinel.Enabled || c.Sentinel.Mode != "enforce" || !c.IsEnabled() || c.TopRules != 100 {
		t.Errorf("defaults: %+v", c)
	}
	for in, want := range map[string]string{
		`{"interfaces":[{"name":"eth0","mode":"fast"}]}`: "fortress.interfaces[0].mode",
		`{"interfaces":[{"name":"eth0","speed":1}]}`:     `unknown field "speed"`,
		`{"gateways":["10.0.0.300"]}`:                    "fortress.gateways[0]",
		`{"pin_root":"relative/pins"}`:                   "fortress.pin_root",
		`{"sentinel":{"mode":"off"}}`:                    "fortress.sentinel.mode",
		`{"sentinel":{"watch":["/etc/../x"]}}`:           "fortress.sentinel.watch[0]",
		`{"top_rules":"many"}`:                           "top_rules",
		`{"shield":{}}`:                                  `unknown field "shield"`,
		`{"interfaces":[{"name":"a"},{"name":"a"}]}`:     "listed twice",
		`{"trust_key":"/etc/serviceradar/../trust.pem"}`: "fortress.trust_key",
		`{"enabled":true} {}`:                            "invalid character",
		`{"sentinel":{"release_dir":"agent"}}`:           "fortress.sentinel.release_dir",
		`{"sentinel":{"release_binary":"bin/agent"}}`:    "fortress.sentinel.release_binary",
		`{"sentinel":{"seed_binary":"/a/../b"}}`:         "fortress.sentinel.seed_binary",
	} {
		if _, err := ParseConfig([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", in, err, want)
		}
	}
	// Strict inside a host's struct, whatever its decoder does.
	var host struct {
		Fortress *Config `json:"fortress"`
	}
	if err := json.Unmarshal([]byte(`{"fortress":{"interface":[]}}`), &host); err == nil {
		t.Error("unknown field inside the block accepted by a lenient host decoder")
	}
	if err := json.Unmarshal([]byte(`{"fortress":{"enabled":false,"interfaces":[{"name":"eth0"}],"sentinel":{"enabled":true,"mode":"audit"}}}`), &host); err != nil {
		t.Fatal(err)
	}
	if host.Fortress.IsEnabled() || !host.Fortress.Sentinel.Enabled {
		t.Errorf("decoded %+v", host.Fortress)
	}
	if _, err := Open(context.Background(), *host.Fortress, nil); !errors.Is(err, ErrDisabled) {
		t.Errorf("disabled block: %v", err)
	}
}

// TestDocsNameEverything: docs/SERVICERADAR.md names every command and
// capability this package answers and claims.
func TestDocsNameEverything(t *testing.T) {
	if inLab() {
		t.Skip("the VM lab carries test binaries, not the source tree; the host run checks the docs")
	}
	doc, err := os.ReadFile("../../docs/SERVICERADAR.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{CommandApplyBundle, CommandStatus, CommandMaintenance, CommandCounters,
		CapFortress, CapShield, CapSentinel, "class_uid", "1001", "4,096"} {
		if !strings.Contains(string(doc), "`"+name+"`") && !strings.Contains(string(doc), name) {
			t.Errorf("docs/SERVICERADAR.md does not name %s", name)
		}
	}
	var fields []string
	collect := func(v any) {
		b, _ := json.Marshal(v)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		for k := range m {
			fields = append(fields, k)
		}
	}
	collect(Config{Enabled: new(bool), AgentID: "x", Interfaces: []Interface{{}}, Gateways: []string{""}, TrustKey: "x",
		PinRoot: "x", StateDir: "x", AuditLog: "x", ShieldBudgetBytes: 1, TopRules: 1})
	for _, f := range fields {
		if !strings.Contains(string(doc), "`"+f) {
			t.Errorf("docs/SERVICERADAR.md does not describe the field %s", f)
		}
	}
}
