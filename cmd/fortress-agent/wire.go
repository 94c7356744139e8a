package main

import (
	"fmt"

	"github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/pkg/fortress"
)

// The agent's one conversion from Fortress's values to the ControlStream's
// wire messages; the client sends these as they are.

// Fortress's counter kinds and layer states as the wire's enums. A state
// missing from a layer's table is unavailable.
var (
	wireCounterKinds = map[string]controlpb.CounterKind{
		fortress.CounterDrop:      controlpb.CounterKind_COUNTER_KIND_DROP,
		fortress.CounterAllow:     controlpb.CounterKind_COUNTER_KIND_ALLOW,
		fortress.CounterWouldDrop: controlpb.CounterKind_COUNTER_KIND_WOULD_DROP,
	}
	wireShieldStates = map[string]controlpb.LayerState{
		fortress.ShieldEnforcing: controlpb.LayerState_LAYER_STATE_ENFORCING,
		fortress.ShieldDryRun:    controlpb.LayerState_LAYER_STATE_OBSERVING,
		fortress.ShieldDegraded:  controlpb.LayerState_LAYER_STATE_DEGRADED,
	}
	wireSentinelStates = map[string]controlpb.LayerState{
		fortress.SentinelEnforcing: controlpb.LayerState_LAYER_STATE_ENFORCING,
		fortress.SentinelAudit:     controlpb.LayerState_LAYER_STATE_OBSERVING,
	}
)

// wireCounters converts counter deltas. An action other than allow is a
// drop; a delta without a kind keeps dry_run, from which the client derives
// it.
func wireCounters(ds []fortress.CounterDelta) []*controlpb.CounterDelta {
	out := make([]*controlpb.CounterDelta, len(ds))
	for i, d := range ds {
		out[i] = &controlpb.CounterDelta{Rule: d.Rule, Action: controlpb.RuleAction_RULE_ACTION_DROP, LogOnly: d.LogOnly,
			Slot: d.Slot, Kind: wireCounterKinds[d.Kind], DryRun: d.DryRun, Packets: d.Packets, Bytes: d.Bytes}
		if d.Action == "allow" {
			out[i].Action = controlpb.RuleAction_RULE_ACTION_ALLOW
		}
	}
	return out
}

// wireStatus maps Fortress's status onto the ControlStream's: each layer's
// state as the gateway groups it, with Fortress's own state as the mode.
func wireStatus(s fortress.Status) *controlpb.Status {
	return &controlpb.Status{
		Shield:          wireLayer(s.Shield.State, s.Shield.Reason, wireShieldStates),
		Sentinel:        wireLayer(s.Sentinel.State, s.Sentinel.Reason, wireSentinelStates),
		PolicyVersion:   s.Policy.Version,
		DegradedReasons: s.Degraded,
	}
}

// wireLayer is one layer's state, looked up in its table.
func wireLayer(state, reason string, states map[string]controlpb.LayerState) *controlpb.Layer {
	l := &controlpb.Layer{State: controlpb.LayerState_LAYER_STATE_UNAVAILABLE, Mode: state, Reason: reason}
	if st, ok := states[state]; ok {
		l.State = st
	}
	return l
}

// wireEvent converts an event (not a dry-run sample: those reach the
// gateway as counters). status is asked only for a critical Sentinel event;
// see wireEventKind.
func wireEvent(e fortress.Event, status func() fortress.Status) *controlpb.Event {
	w := &controlpb.Event{Kind: wireEventKind(e, status), Severity: e.Severity, Path: e.Path, Op: e.Op, Process: e.Exe,
		Pid: e.PID, Uid: e.UID, Detail: e.Detail, Denied: e.Denied()}
	if !e.Time.IsZero() {
		w.TimeUnixNano = e.Time.UnixNano()
	}
	if w.Kind == controlpb.EventKind_EVENT_KIND_STATUS {
		w.Severity = fortress.SeverityInfo
	}
	if e.Kind == fortress.KindCritical && e.Count > 0 {
		w.Detail = fmt.Sprintf("%s (%d lost)", e.Detail, e.Count)
	}
	if w.Process == "" {
		w.Process = e.Comm
	}
	return w
}

// wireEventKind says how an event goes to the gateway. A critical event
// that only repeats why Sentinel is unavailable (BPF LSM unusable on this
// kernel) is a status, not an attack or a failure: the gateway shows it as
// information next to the agent's "sentinel: unavailable".
func wireEventKind(e fortress.Event, status func() fortress.Status) controlpb.EventKind {
	switch e.Kind {
	case fortress.KindFIM:
		return controlpb.EventKind_EVENT_KIND_FIM
	case fortress.KindViolation:
		return controlpb.EventKind_EVENT_KIND_VIOLATION
	case fortress.KindCritical:
		if e.Layer == "sentinel" {
			if st := status(); st.Sentinel.State == fortress.SentinelUnavailable && st.Sentinel.Reason == e.Detail {
				return controlpb.EventKind_EVENT_KIND_STATUS
			}
		}
		return controlpb.EventKind_EVENT_KIND_CRITICAL
	}
	return controlpb.EventKind_EVENT_KIND_VIOLATION
}
