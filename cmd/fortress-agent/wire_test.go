package main

import (
	"testing"

	"github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/pkg/fortress"
)

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
