package gateway

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/controlstream"
	"github.com/carverauto/fortress/internal/pki"
	"github.com/carverauto/fortress/internal/store"
)

type ackWaiter struct {
	version uint64
	ch      chan *pb.BundleAck
}

// admin implements the Admin service for clients with the admin role.
type admin struct {
	pb.UnimplementedAdminServer
	g *Gateway
}

// Push sends a signed bundle to agents and waits for their acks.
func (a *admin) Push(ctx context.Context, req *pb.PushRequest) (*pb.PushResponse, error) {
	id, role, err := controlstream.PeerIdentity(ctx)
	if err != nil {
		return nil, err
	}
	if role != pki.RoleAdmin {
		return nil, status.Errorf(codes.PermissionDenied, "certificate role %q is not %q", role, pki.RoleAdmin)
	}
	g := a.g
	body, err := g.inspect(req.Bundle)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "refused (%s): %v", bundle.Reason(err), err)
	}
	targets := req.AgentIds
	if len(targets) == 0 {
		for _, s := range g.control.Sessions() {
			if body.ForAgent(s.AgentID) {
				targets = append(targets, s.AgentID)
			}
		}
		sort.Strings(targets)
	}
	g.log.Info("push", "by", id, "version", body.Version, "agents", len(targets))
	resp := &pb.PushResponse{Version: body.Version}
	type pendingAck struct {
		res *pb.PushResult
		w   *ackWaiter
	}
	var waits []pendingAck
	for _, t := range targets {
		res := &pb.PushResult{AgentId: t}
		resp.Results = append(resp.Results, res)
		if !body.ForAgent(t) {
			res.Outcome, res.Reason = "refused", "not_for_agent"
			res.Error = "the bundle does not target this agent; not sent"
			continue
		}
		s, ok := g.control.Session(t)
		if !ok {
			res.Outcome = "not_connected"
			continue
		}
		w := g.waiters.add(t, body.Version)
		if err := s.SendBundle(req.Bundle, body.Version); err != nil {
			g.waiters.drop(t, w)
			res.Outcome, res.Error = "send_failed", err.Error()
			continue
		}
		res.Outcome = "sent"
		if req.WaitMs > 0 {
			waits = append(waits, pendingAck{res, w})
		} else {
			g.waiters.drop(t, w)
		}
	}
	deadline := time.NewTimer(time.Duration(req.WaitMs) * time.Millisecond)
	defer deadline.Stop()
	for _, p := range waits {
		select {
		case ack := <-p.w.ch:
			if ack.Applied {
				p.res.Outcome = "applied"
			} else {
				p.res.Outcome, p.res.Reason, p.res.Error = "refused", ack.Reason, ack.Error
			}
		case <-deadline.C:
			p.res.Outcome = "timeout"
			deadline.Reset(0)
		case <-ctx.Done():
			p.res.Outcome = "timeout"
		}
		g.waiters.drop(p.res.AgentId, p.w)
	}
	return resp, nil
}

// inspect checks a bundle before fan-out: fully when the gateway has trust
// keys, otherwise only its shape (agents verify it in any case).
func (g *Gateway) inspect(data []byte) (*bundle.Body, error) {
	if len(g.cfg.TrustKeys) > 0 {
		b, err := bundle.Parse(data, bundle.Options{Keys: g.cfg.TrustKeys})
		if err != nil {
			return nil, err
		}
		return &b.Body, nil
	}
	var env bundle.Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, errf("%w: %v", bundle.ErrMalformed, err)
	}
	var body bundle.Body
	if err := json.Unmarshal(env.Body, &body); err != nil {
		return nil, errf("%w: body: %v", bundle.ErrMalformed, err)
	}
	return &body, body.Validate()
}

func (g *Gateway) deliverAck(agent string, a *pb.BundleAck) {
	g.metrics.acks.WithLabelValues(ackLabel(a)).Inc()
	g.waiters.deliver(agent, a)
	g.agents.setAck(agent, &store.Ack{Version: a.Version, Applied: a.Applied, Reason: a.Reason, Error: a.Error, Time: time.Now()})
}

func ackLabel(a *pb.BundleAck) string {
	if a.Applied {
		return "applied"
	}
	if a.Reason == "" {
		return "error"
	}
	return a.Reason
}
