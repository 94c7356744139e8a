package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/carverauto/fortress/api/monitoringpb"
	"github.com/carverauto/fortress/internal/srpeer"
	"github.com/carverauto/fortress/pkg/policy"
	"github.com/carverauto/fortress/pkg/serviceradar"
)

func TestServiceRadarConfig(t *testing.T) {
	c, err := parseConfig([]byte(`{"agent_id":"a","serviceradar":{"address":"agent-gateway:50052"}}`))
	if err != nil {
		t.Fatal(err)
	}
	sr := c.ServiceRadar
	if sr.CA != "/etc/serviceradar/certs/ca-chain.pem" || sr.Cert != "/etc/serviceradar/certs/component.pem" ||
		sr.Key != "/etc/serviceradar/certs/component-key.pem" {
		t.Errorf("certificate defaults: %+v", sr)
	}
	for in, want := range map[string]string{
		`{"serviceradar":{}}`: "serviceradar.address",
		`{"serviceradar":{"address":"gw:1","cert":"rel.pem"}}`:     "serviceradar.cert",
		`{"serviceradar":{"address":"gw:1","tenant":"x"}}`:         "unknown field",
		`{"serviceradar":{"address":"gw:1","cert_dir":"/a/../b"}}`: "serviceradar.cert_dir",
	} {
		if _, err := parseConfig([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
}

// TestHelpDescribesEveryFlag: --help names every flag with its usage and
// describes the modes, the ServiceRadar one included.
func TestHelpDescribesEveryFlag(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	fs, _, _ := newFlagSet(&bytes.Buffer{})
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		_, usage := flag.UnquoteUsage(f)
		if !strings.Contains(out.String(), "-"+f.Name) || !strings.Contains(out.String(), usage) {
			t.Errorf("help lacks -%s (%q):\n%s", f.Name, f.Usage, out.String())
		}
	})
	for _, want := range []string{"serviceradar", "gateway", "fortress.apply_bundle"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help does not mention %q:\n%s", want, out.String())
		}
	}
	if n == 0 {
		t.Fatal("no flags")
	}
}

// TestAgentServiceRadarMode: the agent, configured for ServiceRadar, dials
// the agent-gateway peer, says hello with its capabilities, and applies a
// bundle the peer sends as a fortress.apply_bundle command; the drop is
// checked on a veth pair.
func TestAgentServiceRadarMode(t *testing.T) {
	b := newTestBed(t, "fs", "10.69", 7777)
	pinRoot, pair, rx, dir, priv, trust := b.pinRoot, b.pair, b.rx, b.dir, b.priv, b.trust
	peer, err := srpeer.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	certs := filepath.Join(dir, "certs")
	os.MkdirAll(certs, 0o700)
	if err := peer.WriteClientFiles(certs, "sr-veth-agent"); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]byte(fmt.Sprintf(`{
		"agent_id": "sr-veth-agent",
		"interfaces": [{"name": %q, "netns": %q}],
		"pin_root": %q, "state_dir": %q, "audit_log": %q, "trust_key": %q,
		"metrics": {"listen": "off"},
		"status_socket": %q,
		"serviceradar": {"address": %q, "cert_dir": %q, "partition": "lab", "labels": {"site": "test"}},
		"sentinel": {"enabled": false}
	}`, pair.B.Iface, "/run/netns/"+pair.B.NSName, pinRoot, filepath.Join(dir, "state"), filepath.Join(dir, "audit.log"), trust,
		filepath.Join(dir, "run", "fortress.sock"), peer.Addr, certs)))
	if err != nil {
		t.Fatal(err)
	}
	_, stop := startAgent(t, cfg)
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hello, certID, err := peer.Hello(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if hello.AgentId != "sr-veth-agent" || certID != "sr-veth-agent" || hello.Partition != "lab" || hello.Labels["site"] != "test" ||
		!slices.Equal(hello.Capabilities, []string{serviceradar.CapFortress, serviceradar.CapShield}) {
		t.Errorf("hello %v (certificate %q)", hello, certID)
	}
	raw, err := policy.Sign(policy.Body{Version: 1, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{"sr-veth-agent"},
		Payload: policy.Payload{Shield: &policy.Shield{Mode: policy.ShieldEnforce, Rules: []policy.Rule{{CIDR: "10.69.1.0/24", Action: policy.ActionDrop}}}}}, priv)
	if err != nil {
		t.Fatal(err)
	}
	r, err := peer.Run(ctx, &pb.CommandRequest{CommandId: "c1", CommandType: serviceradar.CommandApplyBundle, PayloadJson: raw, TtlSeconds: 60})
	if err != nil {
		t.Fatal(err)
	}
	if r.Ack == nil || !r.Result.Success {
		t.Fatalf("apply: %+v", r)
	}
	r, _ = peer.Run(ctx, &pb.CommandRequest{CommandId: "c2", CommandType: serviceradar.CommandApplyBundle, PayloadJson: raw,
		CreatedAt: time.Now().Add(-time.Hour).Unix(), TtlSeconds: 60})
	if r.Ack == nil || r.Result.Success || !strings.Contains(r.Result.Message, "expired") {
		t.Errorf("expired: %+v", r)
	}
	r, _ = peer.Run(ctx, &pb.CommandRequest{CommandId: "c3", CommandType: "sweep.run_group", TtlSeconds: 60})
	if r.Ack == nil || r.Result.Success || r.Result.Message != "unsupported command" {
		t.Errorf("foreign: %+v", r)
	}
	const n = 50
	a69 := netip.MustParseAddr
	for _, src := range []string{"10.69.0.1", "10.69.1.2"} {
		if err := pair.A.SendUDP(a69(src), a69("10.69.0.2"), 7777, n); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "allowed traffic", func() bool { return rx.Count(a69("10.69.0.1")) == n })
	if c := rx.Count(a69("10.69.1.2")); c != 0 {
		t.Fatalf("blocked source: %d datagrams arrived", c)
	}
}
