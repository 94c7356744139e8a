package serviceradar

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/carverauto/fortress/api/monitoringpb"
	"github.com/carverauto/fortress/internal/srpeer"
	"github.com/carverauto/fortress/pkg/policy"
)

// startStream runs s's ControlStream against a fresh agent-gateway peer.
func startStream(t *testing.T, s *Service, agentID string) *srpeer.Peer {
	t.Helper()
	p, err := srpeer.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	tlsCfg, err := p.ClientTLS(agentID)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.RunControlStream(ctx, StreamConfig{Addr: p.Addr, TLS: tlsCfg, MinBackoff: 50 * time.Millisecond,
			Hello:  Hello{AgentID: agentID, Partition: "default", Version: "test", Capabilities: []string{"sysmon"}},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return p
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// The peer speaks ServiceRadar's wire: hello with capabilities, an ack
// before everything else, progress, one result, expired and foreign
// commands refused.
func TestControlStreamWire(t *testing.T) {
	eng := newFake()
	s := testService(t, eng)
	p := startStream(t, s, "a1")
	ctx := within(t, 20*time.Second)

	hello, certID, err := p.Hello(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if hello.AgentId != "a1" || certID != "a1" || hello.Partition != "default" || hello.Os == "" ||
		!slices.Equal(hello.Capabilities, []string{"sysmon", CapFortress, CapShield}) {
		t.Errorf("hello %v from certificate %q", hello, certID)
	}

	r, err := p.Run(ctx, &pb.CommandRequest{CommandId: "b1", CommandType: CommandApplyBundle, PayloadJson: []byte(`{"format":"fortress-bundle/1"}`), TtlSeconds: 60})
	if err != nil {
		t.Fatal(err)
	}
	if r.Ack == nil || r.Ack.Message != "command received" || r.Ack.CommandType != CommandApplyBundle || !r.Result.Success ||
		len(r.Progress) != 2 || r.Progress[1].ProgressPercent != 100 || r.Result.CommandType != CommandApplyBundle {
		t.Errorf("apply reply %+v", r)
	}
	if o := p.Order("b1"); strings.Join(o, ",") != "ack,progress,progress,result" {
		t.Errorf("order %v", o)
	}

	eng.applyErr = fmt.Errorf("%w: version 3, last applied 4", policy.ErrRollback)
	r, _ = p.Run(ctx, &pb.CommandRequest{CommandId: "b2", CommandType: CommandApplyBundle, PayloadJson: []byte(`{}`)})
	if r.Result.Success || !strings.Contains(r.Result.Message, "rollback") || !strings.Contains(string(r.Result.PayloadJson), `"reason":"rollback"`) {
		t.Errorf("rollback reply %+v", r.Result)
	}

	applied := len(eng.applied)
	r, _ = p.Run(ctx, &pb.CommandRequest{CommandId: "x1", CommandType: CommandApplyBundle, PayloadJson: []byte(`{}`),
		CreatedAt: time.Now().Add(-2 * time.Minute).Unix(), TtlSeconds: 30})
	if r.Ack == nil || r.Result.Success || !strings.Contains(r.Result.Message, "expired") || len(eng.applied) != applied {
		t.Errorf("expired reply %+v (applied %d)", r, len(eng.applied)-applied)
	}

	r, _ = p.Run(ctx, &pb.CommandRequest{CommandId: "m1", CommandType: "mtr.run", PayloadJson: []byte(`{}`)})
	if r.Ack == nil || r.Result.Success || r.Result.Message != "unsupported command" {
		t.Errorf("foreign command reply %+v", r)
	}
	r, _ = p.Run(ctx, &pb.CommandRequest{CommandId: "u1", CommandType: "fortress.uninstall"})
	if r.Result.Success || !strings.Contains(r.Result.Message, "fortress.apply_bundle") {
		t.Errorf("unknown fortress command reply %+v", r.Result)
	}
	r, _ = p.Run(ctx, &pb.CommandRequest{CommandId: "s1", CommandType: CommandStatus})
	if !r.Result.Success || !strings.Contains(string(r.Result.PayloadJson), `"agent_id":"a1"`) {
		t.Errorf("status reply %+v", r.Result)
	}
}

// A nil Service (Fortress unsupported or failed) still answers, claiming
// nothing.
func TestControlStreamWithoutFortress(t *testing.T) {
	var s *Service
	p := startStream(t, s, "a2")
	ctx := within(t, 20*time.Second)
	hello, _, err := p.Hello(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hello.Capabilities, []string{"sysmon"}) {
		t.Errorf("capabilities %v", hello.Capabilities)
	}
	r, _ := p.Run(ctx, &pb.CommandRequest{CommandId: "s1", CommandType: CommandStatus})
	if r.Ack == nil || r.Result.Success || !strings.Contains(r.Result.Message, "not running") {
		t.Errorf("reply %+v", r)
	}
}
