package main

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/pkg/fortress"
)

// TestWireCounters: every field of a counter delta reaches the wire, each
// kind and action as its enum.
func TestWireCounters(t *testing.T) {
	in := []fortress.CounterDelta{
		{Rule: "203.0.113.0/24", Action: "drop", Slot: 3, Kind: fortress.CounterDrop, Packets: 10, Bytes: 640},
		{Rule: "10.77.99.0/24", Action: "allow", Slot: 7, Kind: fortress.CounterAllow, Packets: 2, Bytes: 128},
		{Rule: "198.51.100.0/24", Action: "drop", LogOnly: true, Kind: fortress.CounterWouldDrop, DryRun: true, Packets: 5, Bytes: 320},
		{Rule: "192.0.2.0/24", Action: "drop", Kind: fortress.CounterWouldDrop, DryRun: true, Packets: 1, Bytes: 64},
		{Rule: "2001:db8::/32", DryRun: true, Packets: 4, Bytes: 256}, // no kind: the client derives it
	}
	want := []*controlpb.CounterDelta{
		{Rule: "203.0.113.0/24", Action: controlpb.RuleAction_RULE_ACTION_DROP, Slot: 3, Kind: controlpb.CounterKind_COUNTER_KIND_DROP,
			Packets: 10, Bytes: 640},
		{Rule: "10.77.99.0/24", Action: controlpb.RuleAction_RULE_ACTION_ALLOW, Slot: 7, Kind: controlpb.CounterKind_COUNTER_KIND_ALLOW,
			Packets: 2, Bytes: 128},
		{Rule: "198.51.100.0/24", Action: controlpb.RuleAction_RULE_ACTION_DROP, LogOnly: true,
			Kind: controlpb.CounterKind_COUNTER_KIND_WOULD_DROP, DryRun: true, Packets: 5, Bytes: 320},
		{Rule: "192.0.2.0/24", Action: controlpb.RuleAction_RULE_ACTION_DROP, Kind: controlpb.CounterKind_COUNTER_KIND_WOULD_DROP,
			DryRun: true, Packets: 1, Bytes: 64},
		{Rule: "2001:db8::/32", Action: controlpb.RuleAction_RULE_ACTION_DROP, DryRun: true, Packets: 4, Bytes: 256},
	}
	got := wireCounters(in)
	if len(got) != len(want) {
		t.Fatalf("%d deltas, want %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("%+v:\n got %v\nwant %v", in[i], got[i], want[i])
		}
	}
}

// TestWireStatus: each layer's state maps onto the gateway's states, with
// Fortress's own state as the mode, its reason, the policy version and the
// degraded reasons.
func TestWireStatus(t *testing.T) {
	layer := func(st controlpb.LayerState, mode, reason string) *controlpb.Layer {
		return &controlpb.Layer{State: st, Mode: mode, Reason: reason}
	}
	for _, c := range []struct {
		shield, sentinel string
		want             [2]controlpb.LayerState
	}{
		{fortress.ShieldEnforcing, fortress.SentinelEnforcing,
			[2]controlpb.LayerState{controlpb.LayerState_LAYER_STATE_ENFORCING, controlpb.LayerState_LAYER_STATE_ENFORCING}},
		{fortress.ShieldDryRun, fortress.SentinelAudit,
			[2]controlpb.LayerState{controlpb.LayerState_LAYER_STATE_OBSERVING, controlpb.LayerState_LAYER_STATE_OBSERVING}},
		{fortress.ShieldDegraded, fortress.SentinelUnavailable,
			[2]controlpb.LayerState{controlpb.LayerState_LAYER_STATE_DEGRADED, controlpb.LayerState_LAYER_STATE_UNAVAILABLE}},
		{fortress.ShieldDisabled, fortress.SentinelRemoved,
			[2]controlpb.LayerState{controlpb.LayerState_LAYER_STATE_UNAVAILABLE, controlpb.LayerState_LAYER_STATE_UNAVAILABLE}},
		{fortress.ShieldRemoved, fortress.SentinelRemoved,
			[2]controlpb.LayerState{controlpb.LayerState_LAYER_STATE_UNAVAILABLE, controlpb.LayerState_LAYER_STATE_UNAVAILABLE}},
	} {
		var s fortress.Status
		s.Shield.State, s.Shield.Reason = c.shield, "xdp attach failed"
		s.Sentinel.State, s.Sentinel.Reason = c.sentinel, "no bpf lsm"
		s.Policy.Version = 12
		s.Degraded = []string{"shield: xdp attach failed"}
		want := &controlpb.Status{
			Shield:          layer(c.want[0], c.shield, "xdp attach failed"),
			Sentinel:        layer(c.want[1], c.sentinel, "no bpf lsm"),
			PolicyVersion:   12,
			DegradedReasons: []string{"shield: xdp attach failed"},
		}
		if got := wireStatus(s); !proto.Equal(got, want) {
			t.Errorf("shield %s, sentinel %s:\n got %v\nwant %v", c.shield, c.sentinel, got, want)
		}
	}
}

// TestWireEvent: every field of an event reaches the wire; the process is
// the executable, else the command; a critical event carries how many
// events were lost.
func TestWireEvent(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 42, time.UTC)
	none := func() fortress.Status { return fortress.Status{} }
	for _, c := range []struct {
		e    fortress.Event
		want *controlpb.Event
	}{
		{fortress.Event{Time: at, Kind: fortress.KindViolation, Severity: fortress.SeverityCritical, Layer: "sentinel", Op: "unlink",
			Path: "/etc/serviceradar/agent.json", Verdict: "denied", PID: 4242, UID: 1000, Comm: "rm", Exe: "/usr/bin/rm", Detail: "protected"},
			&controlpb.Event{TimeUnixNano: at.UnixNano(), Kind: controlpb.EventKind_EVENT_KIND_VIOLATION, Severity: fortress.SeverityCritical,
				Path: "/etc/serviceradar/agent.json", Op: "unlink", Process: "/usr/bin/rm", Pid: 4242, Uid: 1000, Detail: "protected", Denied: true}},
		{fortress.Event{Time: at, Kind: fortress.KindViolation, Severity: fortress.SeverityWarning, Layer: "sentinel", Op: "write",
			Path: "/etc/serviceradar/a.json", Verdict: "audit", PID: 7, Comm: "vim"},
			&controlpb.Event{TimeUnixNano: at.UnixNano(), Kind: controlpb.EventKind_EVENT_KIND_VIOLATION, Severity: fortress.SeverityWarning,
				Path: "/etc/serviceradar/a.json", Op: "write", Process: "vim", Pid: 7}},
		{fortress.Event{Time: at, Kind: fortress.KindFIM, Severity: fortress.SeverityInfo, Layer: "sentinel", Op: "write",
			Path: "/etc/serviceradar/b.json", PID: 8, UID: 0, Exe: "/usr/bin/tee"},
			&controlpb.Event{TimeUnixNano: at.UnixNano(), Kind: controlpb.EventKind_EVENT_KIND_FIM, Severity: fortress.SeverityInfo,
				Path: "/etc/serviceradar/b.json", Op: "write", Process: "/usr/bin/tee", Pid: 8}},
		{fortress.Event{Time: at, Kind: fortress.KindCritical, Severity: fortress.SeverityCritical, Layer: "sentinel", Op: "events_lost",
			Count: 17, Detail: "ring buffer full"},
			&controlpb.Event{TimeUnixNano: at.UnixNano(), Kind: controlpb.EventKind_EVENT_KIND_CRITICAL, Severity: fortress.SeverityCritical,
				Op: "events_lost", Detail: "ring buffer full (17 lost)"}},
		// No time: the client stamps it.
		{fortress.Event{Kind: fortress.KindCritical, Severity: fortress.SeverityCritical, Layer: "shield", Detail: "xdp detached"},
			&controlpb.Event{Kind: controlpb.EventKind_EVENT_KIND_CRITICAL, Severity: fortress.SeverityCritical, Detail: "xdp detached"}},
	} {
		if got := wireEvent(c.e, none); !proto.Equal(got, c.want) {
			t.Errorf("%+v:\n got %v\nwant %v", c.e, got, c.want)
		}
	}
	// Sentinel unavailable: the event that says why is a status, at info.
	why := "BPF LSM unusable, nothing is protected: lsm= lacks bpf"
	unavailable := func() fortress.Status {
		var s fortress.Status
		s.Sentinel.State, s.Sentinel.Reason = fortress.SentinelUnavailable, why
		return s
	}
	got := wireEvent(fortress.Event{Time: at, Kind: fortress.KindCritical, Severity: fortress.SeverityCritical, Layer: "sentinel", Detail: why},
		unavailable)
	want := &controlpb.Event{TimeUnixNano: at.UnixNano(), Kind: controlpb.EventKind_EVENT_KIND_STATUS, Severity: fortress.SeverityInfo,
		Detail: why}
	if !proto.Equal(got, want) {
		t.Errorf("sentinel unavailable:\n got %v\nwant %v", got, want)
	}
}

// TestWireEventKind: "BPF LSM unusable" reaches the gateway as a status,
// not as a violation; real violations and other critical events keep
// their kinds.
func TestWireEventKind(t *testing.T) {
	why := "BPF LSM unusable, nothing is protected: lsm= lacks bpf"
	status := func() fortress.Status {
		var s fortress.Status
		s.Sentinel.State, s.Sentinel.Reason = fortress.SentinelUnavailable, why
		return s
	}
	for _, c := range []struct {
		e    fortress.Event
		want controlpb.EventKind
	}{
		{fortress.Event{Kind: fortress.KindCritical, Layer: "sentinel", Detail: why}, controlpb.EventKind_EVENT_KIND_STATUS},
		{fortress.Event{Kind: fortress.KindCritical, Layer: "sentinel", Detail: "event reader stopped: EOF"}, controlpb.EventKind_EVENT_KIND_CRITICAL},
		{fortress.Event{Kind: fortress.KindCritical, Layer: "shield", Detail: why}, controlpb.EventKind_EVENT_KIND_CRITICAL},
		{fortress.Event{Kind: fortress.KindViolation, Layer: "sentinel", Path: "/etc/serviceradar/a.json"}, controlpb.EventKind_EVENT_KIND_VIOLATION},
		{fortress.Event{Kind: fortress.KindFIM, Layer: "sentinel"}, controlpb.EventKind_EVENT_KIND_FIM},
	} {
		if got := wireEventKind(c.e, status); got != c.want {
			t.Errorf("%s %s %q: %s, want %s", c.e.Kind, c.e.Layer, c.e.Detail, got, c.want)
		}
	}
}
