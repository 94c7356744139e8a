package gateway

import (
	"strings"
	"testing"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/store"
)

// TestCounterDeltaFromWire: kinds and actions are read as sent, deltas of
// agents that predate kinds keep their old meaning, and junk is refused.
func TestCounterDeltaFromWire(t *testing.T) {
	for _, c := range []struct {
		in   *pb.CounterDelta
		kind string // "" when refused
		act  string
	}{
		{&pb.CounterDelta{Rule: "10.0.0.0/8"}, store.KindDrop, "drop"},                                               // older agent
		{&pb.CounterDelta{Rule: "10.0.0.0/8", DryRun: true}, store.KindWouldDrop, "drop"},                            // older agent
		{&pb.CounterDelta{Rule: "10.77.99.0/24", Action: pb.RuleAction_RULE_ACTION_ALLOW}, store.KindAllow, "allow"}, // no kind yet
		{&pb.CounterDelta{Rule: "10.77.99.0/24", Action: pb.RuleAction_RULE_ACTION_ALLOW, Kind: pb.CounterKind_COUNTER_KIND_ALLOW}, store.KindAllow, "allow"},
		{&pb.CounterDelta{Rule: "fd77::55:0/112", Action: pb.RuleAction_RULE_ACTION_DROP, LogOnly: true, Kind: pb.CounterKind_COUNTER_KIND_WOULD_DROP}, store.KindWouldDrop, "drop"},
		{&pb.CounterDelta{Rule: "10.77.99.0/24", Action: pb.RuleAction_RULE_ACTION_ALLOW, Kind: pb.CounterKind_COUNTER_KIND_DROP}, "", ""}, // allow rules never drop
		{&pb.CounterDelta{Rule: "10.77.99.0/24", Action: pb.RuleAction_RULE_ACTION_DROP, Kind: pb.CounterKind_COUNTER_KIND_ALLOW}, "", ""}, // drop rules never allow
		{&pb.CounterDelta{Rule: "10.77.99.0/24", LogOnly: true, Kind: pb.CounterKind_COUNTER_KIND_DROP}, "", ""},                           // log-only never drops
		{&pb.CounterDelta{Rule: "10.77.99.0/24", Kind: 99}, "", ""},
		{&pb.CounterDelta{Rule: "10.1.2.3/24"}, "", ""}, // host bits: not what an agent sends
		{&pb.CounterDelta{Rule: "::ffff:10.1.2.3/128x"}, "", ""},
		{&pb.CounterDelta{Rule: "<b>x</b>"}, "", ""},
		{&pb.CounterDelta{Rule: strings.Repeat("1", 100)}, "", ""},
		{&pb.CounterDelta{Rule: ""}, "", ""},
	} {
		d, why := counterDelta(c.in)
		if c.kind == "" {
			if why == "" {
				t.Errorf("%v: accepted as %+v", c.in, d)
			}
			continue
		}
		if why != "" || d.Kind != c.kind || d.Action != c.act || d.Rule != c.in.Rule {
			t.Errorf("%v: %+v (%s), want kind %s action %s", c.in, d, why, c.kind, c.act)
		}
	}
}
