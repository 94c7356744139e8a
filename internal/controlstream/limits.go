package controlstream

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/carverauto/fortress/api/controlpb"
)

// Limits on what one agent message may carry. They sit far below the
// transport's MaxMessage (which must fit a policy bundle pushed by an
// operator), so an agent certificate alone cannot make the gateway hold
// large messages. The agent's client cuts its batches to fit them.
const (
	// MaxAgentMessage is the largest message an agent may send (4 MiB):
	// a full event batch of long paths fits, a bundle-sized blob does not.
	MaxAgentMessage = 4 << 20
	// MaxDeltasPerBatch is the most counter deltas in one batch.
	MaxDeltasPerBatch = 8192
	// MaxEventsPerBatch is the most events in one batch.
	MaxEventsPerBatch = 1024
	// clientDeltasPerBatch is what the client puts in one batch (well
	// inside MaxDeltasPerBatch and MaxAgentMessage: a delta is at most
	// about 80 bytes).
	clientDeltasPerBatch = 4096
)

// checkAgentMessage refuses a message beyond the limits. The stream ends
// with ResourceExhausted; nothing of the message is stored.
func checkAgentMessage(m *pb.AgentMessage) error {
	if n := proto.Size(m); n > MaxAgentMessage {
		return status.Errorf(codes.ResourceExhausted, "agent message of %d bytes exceeds %d", n, MaxAgentMessage)
	}
	if c := m.GetCounters(); c != nil && len(c.Deltas) > MaxDeltasPerBatch {
		return status.Errorf(codes.ResourceExhausted, "counter batch of %d deltas exceeds %d", len(c.Deltas), MaxDeltasPerBatch)
	}
	if e := m.GetEvents(); e != nil && len(e.Events) > MaxEventsPerBatch {
		return status.Errorf(codes.ResourceExhausted, "event batch of %d events exceeds %d", len(e.Events), MaxEventsPerBatch)
	}
	return nil
}
