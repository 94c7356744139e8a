//go:build linux

package serviceradar

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/carverauto/fortress/api/monitoringpb"
	"github.com/carverauto/fortress/internal/netlab"
	"github.com/carverauto/fortress/internal/testutil"
	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/policy"
)

var (
	addr    = netip.MustParseAddr
	dstV4   = addr("10.68.0.2")
	dstV6   = addr("fd68::2")
	okV4    = addr("10.68.0.1")
	badV4   = addr("10.68.1.2")
	badV6   = addr("fd68::1:2")
	laterV4 = addr("10.68.4.2") // blocked from bundle version 2 on
)

// inLab reports a run inside the VM lab.
func inLab() bool { return testutil.InLab() }

func sign(t *testing.T, priv ed25519.PrivateKey, version uint64, targets []string, rules ...policy.Rule) []byte {
	t.Helper()
	raw, err := policy.Sign(policy.Body{Version: version, IssuedAt: time.Now().Add(-time.Minute), Targets: targets,
		Payload: policy.Payload{Shield: &policy.Shield{Mode: policy.ShieldEnforce, Rules: rules}}}, priv)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestServiceRadarPeerOnVeth: a ServiceRadar agent-gateway (the test peer)
// drives an agent hosting this package over mutual TLS, and the policy it
// pushes is checked on real traffic through a veth pair.
func TestServiceRadarPeerOnVeth(t *testing.T) {
	testutil.RequireRoot(t)
	pinRoot := testutil.TempBPFFS(t)
	pfx := netip.MustParsePrefix
	pair, err := netlab.New(netlab.Config{
		Name:   fmt.Sprintf("sr%d", time.Now().UnixNano()%100000),
		AddrsA: []netip.Prefix{pfx("10.68.0.1/16"), pfx("10.68.1.2/16"), pfx("10.68.4.2/16"), pfx("fd68::1/64"), pfx("fd68::1:2/64")},
		AddrsB: []netip.Prefix{pfx("10.68.0.2/16"), pfx("fd68::2/64")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	rx, err := pair.B.ListenUDP(7777)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })

	pub, priv, _ := policy.GenerateKey()
	dir := t.TempDir()
	pemKey, _ := policy.MarshalPublicKey(pub)
	trustFile := filepath.Join(dir, "trust.pem")
	if err := os.WriteFile(trustFile, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	block := fmt.Sprintf(`{"agent_id":"sr-agent","interfaces":[{"name":%q,"netns":%q}],"pin_root":%q,"state_dir":%q,"audit_log":%q,"trust_key":%q}`,
		pair.B.Iface, "/run/netns/"+pair.B.NSName, pinRoot, filepath.Join(dir, "state"), filepath.Join(dir, "log", "audit.log"), trustFile)
	var agentJSON struct {
		Fortress Config `json:"fortress"`
	}
	if err := json.Unmarshal([]byte(`{"fortress":`+block+`}`), &agentJSON); err != nil {
		t.Fatal(err)
	}
	cfg := agentJSON.Fortress
	// BPF LSM is not probed on the host; Sentinel stays off (the default).
	cfg.Kernel = &fortress.KernelReport{Release: "test", Checks: map[string]bool{"lsm": false}, Reasons: map[string]string{"lsm": "not probed in this test"}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	s, err := Open(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if c := s.Capabilities(); !slices.Equal(c, []string{CapFortress, CapShield}) {
		t.Errorf("capabilities %v", c)
	}

	p := startStream(t, s, "sr-agent")
	ctx := within(t, 60*time.Second)
	hello, _, err := p.Hello(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(hello.Capabilities, CapShield) || slices.Contains(hello.Capabilities, CapSentinel) {
		t.Errorf("hello capabilities %v", hello.Capabilities)
	}
	run := func(id, typ string, payload []byte) *pb.CommandResult {
		t.Helper()
		r, err := p.Run(ctx, &pb.CommandRequest{CommandId: id, CommandType: typ, PayloadJson: payload, TtlSeconds: 300})
		if err != nil {
			t.Fatal(err)
		}
		if r.Ack == nil || p.Order(id)[0] != "ack" {
			t.Errorf("%s: no ack first: %v", id, p.Order(id))
		}
		return r.Result
	}
	send := func(src, dst netip.Addr, n int) {
		t.Helper()
		if err := pair.A.SendUDP(src, dst, 7777, n); err != nil {
			t.Fatal(err)
		}
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if cond() {
				return
			}
		}
		t.Fatalf("timed out waiting for %s", what)
	}

	v1 := sign(t, priv, 1, []string{"sr-agent"}, policy.Rule{CIDR: "10.68.1.0/24", Action: policy.ActionDrop},
		policy.Rule{CIDR: "fd68::1:0/112", Action: policy.ActionDrop})
	if res := run("apply-1", CommandApplyBundle, v1); !res.Success || !strings.Contains(res.Message, "version 1") {
		t.Fatalf("apply v1: %+v", res)
	}
	const n = 50
	send(okV4, dstV4, n)
	send(badV4, dstV4, n)
	send(badV6, dstV6, n)
	send(laterV4, dstV4, n)
	eventually("allowed datagrams", func() bool { return rx.Count(okV4) == n && rx.Count(laterV4) == n })
	if rx.Count(badV4) != 0 || rx.Count(badV6) != 0 {
		t.Errorf("blocked sources got through: %d, %d", rx.Count(badV4), rx.Count(badV6))
	}

	v2 := sign(t, priv, 2, []string{policy.AllAgents}, policy.Rule{CIDR: "10.68.1.0/24", Action: policy.ActionDrop},
		policy.Rule{CIDR: "10.68.4.0/24", Action: policy.ActionDrop}, policy.Rule{CIDR: "fd68::1:0/112", Action: policy.ActionDrop})
	if res := run("apply-2", CommandApplyBundle, v2); !res.Success {
		t.Fatalf("apply v2: %+v", res)
	}

	// Refusals: success=false, the reason in the message, nothing changed.
	_, otherPriv, _ := policy.GenerateKey()
	tampered := sign(t, priv, 3, []string{"sr-agent"}, policy.Rule{CIDR: "10.68.0.0/24", Action: policy.ActionDrop})
	tampered = []byte(strings.Replace(string(tampered), "10.68.0.0/24", "10.68.9.0/24", 1))
	for _, c := range []struct {
		id, reason string
		raw        []byte
	}{
		{"bad-signature", "bad_signature", tampered},
		{"unknown-key", "unknown_key", sign(t, otherPriv, 3, []string{"sr-agent"}, policy.Rule{CIDR: "10.68.0.0/24", Action: policy.ActionDrop})},
		{"rollback", "rollback", v1},
		{"replay", "replay", v2},
		{"other-agent", "not_for_agent", sign(t, priv, 3, []string{"someone-else"}, policy.Rule{CIDR: "10.68.0.0/24", Action: policy.ActionDrop})},
	} {
		res := run(c.id, CommandApplyBundle, c.raw)
		var ref Refusal
		_ = json.Unmarshal(res.PayloadJson, &ref)
		if res.Success || !strings.Contains(res.Message, c.reason) || ref.Reason != c.reason || ref.InForce != 2 {
			t.Errorf("%s: %+v", c.id, res)
		}
	}
	send(okV4, dstV4, n)
	send(laterV4, dstV4, n)
	send(badV4, dstV4, n)
	eventually("allowed datagrams after refusals", func() bool { return rx.Count(okV4) == 2*n })
	time.Sleep(100 * time.Millisecond)
	if rx.Count(laterV4) != n || rx.Count(badV4) != 0 {
		t.Errorf("version 2 not in force: %d from %s, %d from %s", rx.Count(laterV4), laterV4, rx.Count(badV4), badV4)
	}

	// Counters and status through the stream, and the summary.
	var cr CountersReply
	eventually("counters", func() bool {
		res := run(fmt.Sprintf("counters-%d", time.Now().UnixNano()), CommandCounters, []byte(`{"top":10}`))
		_ = json.Unmarshal(res.PayloadJson, &cr)
		return res.Success && cr.Sums["drop"][0] == 4*n
	})
	var st fortress.Status
	res := run("status", CommandStatus, nil)
	if err := json.Unmarshal(res.PayloadJson, &st); err != nil || st.Policy.Version != 2 || st.Shield.Rules != 3 || st.Shield.State != fortress.ShieldEnforcing {
		t.Errorf("status: %+v %v", st, err)
	}
	sum := s.Summary()
	var ss StatusSummary
	if err := json.Unmarshal(sum.Message, &ss); err != nil || !sum.Available || len(sum.Message) > MaxStatusMessage ||
		ss.Policy.Version != 2 || ss.Shield.Attached != 1 || ss.Sentinel.State != fortress.SentinelUnavailable || ss.Shield.Drop != 4*n {
		t.Errorf("summary %s: %v", sum.Message, err)
	}

	// Maintenance: a refused token changes nothing; an audit token has no
	// Sentinel to relax here; a remove token takes Shield out.
	now := time.Now()
	tok := func(action, host, nonce string, key ed25519.PrivateKey) []byte {
		raw, err := policy.SignToken(key, policy.Token{Action: action, Host: host, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(10 * time.Minute), Nonce: nonce})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(MaintenanceRequest{Token: raw})
		return b
	}
	if res := run("token-other-key", CommandMaintenance, tok(policy.MaintenanceRemove, "sr-agent", "n1", otherPriv)); res.Success ||
		!strings.Contains(res.Message, "refused") {
		t.Errorf("token of another key: %+v", res)
	}
	if res := run("token-other-host", CommandMaintenance, tok(policy.MaintenanceRemove, "someone-else", "n2", priv)); res.Success {
		t.Errorf("token for another host: %+v", res)
	}
	if res := run("token-audit", CommandMaintenance, tok(policy.MaintenanceAudit, "sr-agent", "n3", priv)); res.Success ||
		!strings.Contains(res.Message, "sentinel is not running") {
		t.Errorf("audit token without sentinel: %+v", res)
	}
	send(badV4, dstV4, n)
	time.Sleep(100 * time.Millisecond)
	if rx.Count(badV4) != 0 {
		t.Error("blocked source got through after refused tokens")
	}
	if res := run("token-remove", CommandMaintenance, tok(policy.MaintenanceRemove, "sr-agent", "n4", priv)); !res.Success ||
		!strings.Contains(res.Message, "remove") {
		t.Fatalf("remove token: %+v", res)
	}
	// The first datagrams may meet the veth pair while it reconfigures
	// for the detached program (seen on 5.10): send until n got through.
	eventually("traffic after removal", func() bool {
		send(badV4, dstV4, 10)
		time.Sleep(50 * time.Millisecond)
		return rx.Count(badV4) >= n
	})
	if c := s.Capabilities(); slices.Contains(c, CapShield) {
		t.Errorf("capabilities after removal: %v", c)
	}
}
