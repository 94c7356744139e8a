package main

import (
	"testing"

	"github.com/carverauto/fortress/internal/controlstream"
	"github.com/carverauto/fortress/pkg/fortress"
)

// TestStreamEventKind: "BPF LSM unusable" reaches the gateway as a status,
// not as a violation; real violations and other critical events keep
// their kinds.
func TestStreamEventKind(t *testing.T) {
	why := "BPF LSM unusable, nothing is protected: lsm= lacks bpf"
	status := func() fortress.Status {
		var s fortress.Status
		s.Sentinel.State, s.Sentinel.Reason = fortress.SentinelUnavailable, why
		return s
	}
	for _, c := range []struct {
		e    fortress.Event
		want string
	}{
		{fortress.Event{Kind: fortress.KindCritical, Layer: "sentinel", Detail: why}, controlstream.KindStatus},
		{fortress.Event{Kind: fortress.KindCritical, Layer: "sentinel", Detail: "event reader stopped: EOF"}, controlstream.KindCritical},
		{fortress.Event{Kind: fortress.KindCritical, Layer: "shield", Detail: why}, controlstream.KindCritical},
		{fortress.Event{Kind: fortress.KindViolation, Layer: "sentinel", Path: "/etc/serviceradar/a.json"}, controlstream.KindViolation},
		{fortress.Event{Kind: fortress.KindFIM, Layer: "sentinel"}, controlstream.KindFIM},
	} {
		if got := streamEventKind(c.e, status); got != c.want {
			t.Errorf("%s %s %q: %s, want %s", c.e.Kind, c.e.Layer, c.e.Detail, got, c.want)
		}
	}
}
