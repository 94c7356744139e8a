package controlstream

import (
	"crypto/tls"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/carverauto/fortress/api/controlpb"
)

// offlineClient is a client that is never run: its batches stay queued for
// the test to read.
func offlineClient(t *testing.T) *Client {
	t.Helper()
	c, err := NewClient(ClientConfig{Addr: "127.0.0.1:1", TLS: &tls.Config{}, Hello: Hello{AgentID: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCountersMergePerRule: deltas merge only when rule, action, kind,
// log-only flag and slot all match; a delta without an action is a drop
// and one without a kind takes it from dry_run, so they merge with the
// explicit form. The client keeps none of the caller's deltas.
func TestCountersMergePerRule(t *testing.T) {
	c := offlineClient(t)
	const (
		drop, allow        = pb.RuleAction_RULE_ACTION_DROP, pb.RuleAction_RULE_ACTION_ALLOW
		kDrop, kAllow, kWD = pb.CounterKind_COUNTER_KIND_DROP, pb.CounterKind_COUNTER_KIND_ALLOW, pb.CounterKind_COUNTER_KIND_WOULD_DROP
		rule               = "203.0.113.0/24"
	)
	base := &pb.CounterDelta{Rule: rule, Action: drop, Kind: kDrop, Slot: 1, Packets: 1, Bytes: 10}
	c.AddCounters(
		base,
		&pb.CounterDelta{Rule: rule, Slot: 1, Packets: 2, Bytes: 20},                                           // no action, no kind: drop
		&pb.CounterDelta{Rule: "198.51.100.0/24", Action: drop, Kind: kDrop, Slot: 1, Packets: 4, Bytes: 40},   // another CIDR
		&pb.CounterDelta{Rule: rule, Action: allow, Kind: kAllow, Slot: 1, Packets: 8, Bytes: 80},              // another action
		&pb.CounterDelta{Rule: rule, Action: drop, Kind: kWD, Slot: 1, Packets: 16, Bytes: 160},                // another kind
		&pb.CounterDelta{Rule: rule, DryRun: true, Slot: 1, Packets: 32, Bytes: 320},                           // would-drop from dry_run
		&pb.CounterDelta{Rule: rule, Action: drop, Kind: kWD, LogOnly: true, Slot: 1, Packets: 64, Bytes: 640}, // log-only
		&pb.CounterDelta{Rule: rule, Action: drop, Kind: kDrop, Slot: 2, Packets: 128, Bytes: 1280},            // another slot
		&pb.CounterDelta{Rule: rule, Action: drop, Kind: kDrop, Slot: 1},                                       // empty: ignored
		nil,
	)
	base.Packets = 1 << 20 // the caller reuses its delta
	c.mu.Lock()
	c.cutCounters()
	queue := c.queue
	c.mu.Unlock()
	if len(queue) != 1 {
		t.Fatalf("%d batches, want 1", len(queue))
	}
	want := []*pb.CounterDelta{
		{Rule: rule, Action: drop, Kind: kDrop, Slot: 1, Packets: 3, Bytes: 30},
		{Rule: "198.51.100.0/24", Action: drop, Kind: kDrop, Slot: 1, Packets: 4, Bytes: 40},
		{Rule: rule, Action: allow, Kind: kAllow, Slot: 1, Packets: 8, Bytes: 80},
		{Rule: rule, Action: drop, Kind: kWD, DryRun: true, Slot: 1, Packets: 48, Bytes: 480},
		{Rule: rule, Action: drop, Kind: kWD, DryRun: true, LogOnly: true, Slot: 1, Packets: 64, Bytes: 640},
		{Rule: rule, Action: drop, Kind: kDrop, Slot: 2, Packets: 128, Bytes: 1280},
	}
	got := queue[0].msg.GetCounters().Deltas
	if len(got) != len(want) {
		t.Fatalf("%d deltas, want %d: %v", len(got), len(want), got)
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || proto.Equal(g, w)
		}
		if !found {
			t.Errorf("missing %v in %v", w, got)
		}
	}
}

// TestAddEventStampsTime: an event without a time gets the current one; a
// nil event is not queued and not counted as dropped.
func TestAddEventStampsTime(t *testing.T) {
	c := offlineClient(t)
	e := &pb.Event{Kind: pb.EventKind_EVENT_KIND_FIM}
	if !c.AddEvent(e) || e.TimeUnixNano == 0 {
		t.Fatalf("queued event has time %d", e.TimeUnixNano)
	}
	if c.AddEvent(nil) {
		t.Fatal("nil event queued")
	}
	if s := c.Stats(); s.PendingEvents != 1 || s.EventsDropped != 0 {
		t.Fatalf("stats %+v, want 1 pending, none dropped", s)
	}
}
