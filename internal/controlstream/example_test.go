package controlstream_test

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"log"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/controlstream"
)

// An agent wires the client to its bundle verifier and its layers: bundles
// are verified and applied by the callback, whose error (a bundle refusal or
// an apply failure) is acknowledged to the gateway with its reason.
func Example_agent() {
	var (
		tlsCfg    *tls.Config         // agent certificate + gateway CA
		trustKeys []ed25519.PublicKey // bundle.LoadTrustKeys(...) + bundle.BuiltinKeys()
		apply     func(*bundle.Bundle) error
	)
	v, err := bundle.NewVerifier(bundle.Config{Keys: trustKeys, AgentID: "edge-1", StateDir: "/var/lib/serviceradar/fortress"})
	if err != nil {
		log.Fatal(err) // a state file that no longer verifies: fail closed
	}
	v.Reapply(apply) // the last applied policy, at start
	c, err := controlstream.NewClient(controlstream.ClientConfig{
		Addr:  "gateway.example:7443",
		TLS:   tlsCfg,
		Hello: controlstream.Hello{AgentID: "edge-1", AgentVersion: "1.0.0", Capabilities: []string{"shield", "sentinel"}},
		OnBundle: func(_ context.Context, data []byte) (uint64, error) {
			b, err := v.Accept(data, apply)
			if err != nil {
				return 0, err
			}
			return b.Version, nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	go c.Run(context.Background())
	// From the layers' loops, never blocking:
	// The values are the wire's own types.
	c.SetStatus(&pb.Status{Shield: &pb.Layer{State: pb.LayerState_LAYER_STATE_ENFORCING, Mode: "enforce"}, PolicyVersion: v.LastVersion()})
	c.AddCounters(&pb.CounterDelta{Rule: "203.0.113.0/24", Packets: 12, Bytes: 900})
	c.AddEvent(&pb.Event{Kind: pb.EventKind_EVENT_KIND_FIM, Path: "/etc/serviceradar/agent.json", Op: "write", Denied: true})
}
