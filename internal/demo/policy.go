package demo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	_ "embed"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/blocklist"
	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/controlstream"
	"github.com/carverauto/fortress/internal/pki"
)

// Blocklist is the demo's sample rule list.
//
//go:embed blocklist.txt
var Blocklist []byte

// Rules parses the sample blocklist into bundle rules.
func Rules() ([]bundle.Rule, error) {
	l, err := blocklist.Parse(bytes.NewReader(Blocklist))
	if err != nil {
		return nil, fmt.Errorf("demo blocklist: %w", err)
	}
	out := make([]bundle.Rule, len(l.Rules))
	for i, r := range l.Rules {
		out[i] = bundle.Rule{CIDR: r.Prefix.String(), Action: r.Action.String(), LogOnly: r.LogOnly}
	}
	return out, nil
}

// signBundle signs the sample policy as version for agent.
func signBundle(priv ed25519.PrivateKey, agent string, version uint64) ([]byte, error) {
	rules, err := Rules()
	if err != nil {
		return nil, err
	}
	return bundle.Sign(bundle.Body{Version: version, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{agent},
		Payload: bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldEnforce, Rules: rules}}}, priv)
}

// push sends a bundle through the gateway's Admin service, as
// "fortressctl push" does, and waits for the agent's ack.
func (d *Demo) push(ctx context.Context, data []byte, agent string) error {
	adm, err := d.ca.Client("fortress-demo", pki.RoleAdmin)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(d.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(adm, d.ca.Pool(), "127.0.0.1"))),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(controlstream.MaxMessage)))
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := pb.NewAdminClient(conn).Push(ctx, &pb.PushRequest{Bundle: data, AgentIds: []string{agent}, WaitMs: 20000})
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	var bad []string
	for _, r := range resp.Results {
		if r.Outcome != "applied" {
			bad = append(bad, fmt.Sprintf("%s: %s %s %s", r.AgentId, r.Outcome, r.Reason, r.Error))
		}
	}
	if len(resp.Results) == 0 || len(bad) > 0 {
		return fmt.Errorf("push version %d: not applied: %s", resp.Version, strings.Join(bad, "; "))
	}
	return nil
}
