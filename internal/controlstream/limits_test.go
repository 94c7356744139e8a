package controlstream

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/carverauto/fortress/api/controlpb"
)

// TestCounterBatchesFitLimits: the client cuts its counters into batches
// the gateway accepts, keeps every delta, and never merges a drop rule with
// an allow rule for the same CIDR.
func TestCounterBatchesFitLimits(t *testing.T) {
	c := offlineClient(t)
	const n = 10_000
	for i := range n {
		c.AddCounters(&pb.CounterDelta{Rule: fmt.Sprintf("ffff:ffff:ffff:ffff:ffff:ffff:%x:0/112", i), Action: pb.RuleAction_RULE_ACTION_DROP,
			Slot: uint32(i + 1), Kind: pb.CounterKind_COUNTER_KIND_DROP, Packets: 1 << 40, Bytes: 1 << 50})
	}
	c.AddCounters(&pb.CounterDelta{Rule: "10.77.99.0/24", Action: pb.RuleAction_RULE_ACTION_ALLOW, Slot: 1, Kind: pb.CounterKind_COUNTER_KIND_ALLOW, Packets: 3},
		&pb.CounterDelta{Rule: "10.77.99.0/24", Action: pb.RuleAction_RULE_ACTION_DROP, Slot: 2, Kind: pb.CounterKind_COUNTER_KIND_DROP, Packets: 4},
		&pb.CounterDelta{Rule: "10.77.98.0/24", DryRun: true, Packets: 5}) // an older caller: would-drop
	c.mu.Lock()
	c.cutCounters()
	queue := c.queue
	c.mu.Unlock()
	total := 0
	kinds := map[string]*pb.CounterDelta{}
	for _, p := range queue {
		if err := checkAgentMessage(p.msg); err != nil {
			t.Fatalf("batch %d: %v", p.seq, err)
		}
		b := p.msg.GetCounters()
		total += len(b.Deltas)
		t.Logf("batch %d: %d deltas, %d bytes", b.Seq, len(b.Deltas), proto.Size(p.msg))
		for _, d := range b.Deltas {
			if d.Rule == "10.77.99.0/24" || d.Rule == "10.77.98.0/24" {
				kinds[d.Rule+" "+d.Kind.String()] = d
			}
		}
	}
	if total != n+3 || len(queue) != 3 {
		t.Fatalf("%d deltas in %d batches, want %d in 3", total, len(queue), n+3)
	}
	if d := kinds["10.77.99.0/24 COUNTER_KIND_ALLOW"]; d == nil || d.Packets != 3 || d.Action != pb.RuleAction_RULE_ACTION_ALLOW || d.DryRun {
		t.Fatalf("allow delta %v", d)
	}
	if d := kinds["10.77.99.0/24 COUNTER_KIND_DROP"]; d == nil || d.Packets != 4 || d.Slot != 2 {
		t.Fatalf("drop delta %v", d)
	}
	if d := kinds["10.77.98.0/24 COUNTER_KIND_WOULD_DROP"]; d == nil || !d.DryRun || d.Packets != 5 {
		t.Fatalf("would-drop delta %v", d)
	}
}

// TestCheckAgentMessage: messages beyond the limits are refused with
// ResourceExhausted.
func TestCheckAgentMessage(t *testing.T) {
	big := &pb.AgentMessage{Msg: &pb.AgentMessage_Events{Events: &pb.EventBatch{Events: []*pb.Event{{Detail: string(make([]byte, MaxAgentMessage))}}}}}
	many := &pb.AgentMessage{Msg: &pb.AgentMessage_Counters{Counters: &pb.CounterBatch{Deltas: make([]*pb.CounterDelta, MaxDeltasPerBatch+1)}}}
	for i := range many.GetCounters().Deltas {
		many.GetCounters().Deltas[i] = &pb.CounterDelta{}
	}
	for name, m := range map[string]*pb.AgentMessage{"big": big, "many deltas": many} {
		if err := checkAgentMessage(m); status.Code(err) != codes.ResourceExhausted {
			t.Errorf("%s: %v", name, err)
		}
	}
	ok := &pb.AgentMessage{Msg: &pb.AgentMessage_Counters{Counters: &pb.CounterBatch{Deltas: many.GetCounters().Deltas[:MaxDeltasPerBatch]}}}
	if err := checkAgentMessage(ok); err != nil {
		t.Fatal(err)
	}
}
