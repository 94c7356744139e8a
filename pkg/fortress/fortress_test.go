//go:build linux

package fortress

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/carverauto/fortress/internal/auditlog"
	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/netlab"
	"github.com/carverauto/fortress/internal/testutil"
)

// lab is a Fortress started on the receiving side of a veth pair between
// two namespaces the test creates.
type lab struct {
	pair  *netlab.Pair
	cfg   Config
	priv  ed25519.PrivateKey
	rx    *netlab.Receiver
	mu    sync.Mutex
	delta map[string]uint64 // packets reported through OnCounters, by rule
}

var (
	a      = netip.MustParseAddr
	dst4   = a("10.67.0.2")
	dst6   = a("fd67::2")
	src4ok = a("10.67.0.1")
	src4bl = a("10.67.1.2") // blocked
	src4lo = a("10.67.3.2") // log-only
	src4gw = a("10.67.2.2") // gateway inside a blocked CIDR
	src6bl = a("fd67::1:2") // blocked
	src6ok = a("fd67::2:2")
)

func newLab(t *testing.T) *lab {
	t.Helper()
	testutil.RequireRoot(t)
	pinRoot := testutil.TempBPFFS(t)
	p := netip.MustParsePrefix
	pair, err := netlab.New(netlab.Config{
		Name:   fmt.Sprintf("fx%d", time.Now().UnixNano()%100000),
		AddrsA: []netip.Prefix{p("10.67.0.1/16"), p("10.67.1.2/16"), p("10.67.2.2/16"), p("10.67.3.2/16"), p("fd67::1/64"), p("fd67::1:2/64"), p("fd67::2:2/64")},
		AddrsB: []netip.Prefix{p("10.67.0.2/16"), p("fd67::2/64")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	pub, priv, _ := bundle.GenerateKey()
	dir := t.TempDir()
	l := &lab{pair: pair, priv: priv, delta: map[string]uint64{}}
	l.cfg = Config{
		AgentID:    "lab-agent",
		Interfaces: []Interface{{Name: pair.B.Iface, Mode: Native, Netns: "/run/netns/" + pair.B.NSName}},
		PinRoot:    pinRoot,
		StateDir:   filepath.Join(dir, "state"),
		AuditLog:   filepath.Join(dir, "log", "audit.log"),
		TrustKeys:  []ed25519.PublicKey{pub},
		// The host's BPF LSM is not probed here; Sentinel must then say
		// it protects nothing.
		Kernel:          &KernelReport{Release: "test", Checks: map[string]bool{"lsm": false}, Reasons: map[string]string{"lsm": "not probed in this test"}},
		CounterInterval: 50 * time.Millisecond,
		OnCounters: func(ds []CounterDelta) {
			l.mu.Lock()
			defer l.mu.Unlock()
			for _, d := range ds {
				l.delta[d.Rule] += d.Packets
			}
		},
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	rx, err := pair.B.ListenUDP(7777)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	l.rx = rx
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func (l *lab) start(t *testing.T) *Fortress {
	t.Helper()
	f, err := Start(context.Background(), l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	return f
}

func (l *lab) bundle(t *testing.T, version uint64, p bundle.Payload) []byte {
	t.Helper()
	return signed(t, l.priv, version, p)
}

func (l *lab) send(t *testing.T, src, dst netip.Addr, n int) {
	t.Helper()
	if err := l.pair.A.SendUDP(src, dst, 7777, n); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond for up to 20 seconds (the VM lab runs under TCG).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !cond() {
		t.Fatalf("timed out waiting for %s", what)
	}
}

var policyV1 = bundle.Payload{
	Shield: &bundle.Shield{Mode: bundle.ShieldEnforce, Rules: []bundle.Rule{
		{CIDR: "10.67.1.0/24", Action: "drop"},
		{CIDR: "10.67.2.0/24", Action: "drop"},
		{CIDR: "10.67.3.0/24", Action: "drop", LogOnly: true},
		{CIDR: "fd67::1:0/112", Action: "drop"},
	}},
	Gateways: &bundle.Gateways{V4: []string{"10.67.2.2"}},
}

func TestAgentOnVeth(t *testing.T) {
	l := newLab(t)
	f := l.start(t)

	st := f.Status()
	if st.Shield.State != ShieldEnforcing || len(st.Shield.Interfaces) != 1 || !st.Shield.Interfaces[0].Attached {
		t.Fatalf("shield before policy: %+v", st.Shield)
	}
	if st.Sentinel.State != SentinelUnavailable || !strings.Contains(st.Sentinel.Reason, "nothing is protected") {
		t.Fatalf("sentinel must not claim protection: %+v", st.Sentinel)
	}

	ack, err := f.ApplyBundle(l.bundle(t, 1, policyV1))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Version != 1 || ack.Rules != 4 || ack.ShieldMode != bundle.ShieldEnforce {
		t.Fatalf("ack %+v", ack)
	}

	const n = 100
	for _, s := range []struct{ src, dst netip.Addr }{{src4ok, dst4}, {src4bl, dst4}, {src4lo, dst4}, {src4gw, dst4}, {src6bl, dst6}, {src6ok, dst6}} {
		l.send(t, s.src, s.dst, n)
	}
	for _, src := range []netip.Addr{src4ok, src4lo, src4gw, src6ok} {
		eventually(t, fmt.Sprintf("%d datagrams from %s", n, src), func() bool { return l.rx.Count(src) == n })
	}
	for _, src := range []netip.Addr{src4bl, src6bl} {
		if c := l.rx.Count(src); c != 0 {
			t.Errorf("blocked %s: %d datagrams arrived", src, c)
		}
	}

	// Counters: directly, in the periodic snapshot, as deltas, in Status.
	byRule := map[string]RuleCounter{}
	cs, err := f.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		byRule[c.Rule] = c
	}
	for rule, want := range map[string]struct {
		kind string
		n    uint64
	}{"10.67.1.0/24": {"drop", n}, "fd67::1:0/112": {"drop", n}, "10.67.3.0/24": {"would-drop", n}, "10.67.2.0/24": {"drop", 0}} {
		if c := byRule[rule]; c.Packets != want.n || c.Kind != want.kind {
			t.Errorf("rule %s: %+v, want %d %s", rule, c, want.n, want.kind)
		}
	}
	var totals ShieldTotals
	eventually(t, "counter snapshot", func() bool {
		totals = f.Status().Shield.Totals
		return totals.Drop == 2*n && totals.WouldDrop == n
	})
	eventually(t, "counter deltas", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.delta["10.67.1.0/24"] == n && l.delta["fd67::1:0/112"] == n && l.delta["10.67.3.0/24"] == n
	})
	top, sums := f.TopCounters()
	if len(top) != 3 || sums["drop"][0] != 2*n || sums["would-drop"][0] != n {
		t.Errorf("top %+v sums %v", top, sums)
	}
	st = f.Status()
	if st.Shield.State != ShieldEnforcing || st.Shield.Rules != 4 || st.Policy.Version != 1 || !st.Policy.InForce ||
		st.Shield.MapBytes == 0 || st.Shield.Totals.Bypass < n {
		t.Errorf("status after traffic: %+v", st)
	}
	sawSample := false
	for len(f.Events()) > 0 {
		e := <-f.Events()
		if e.Kind == KindDryRun && e.Rule == "10.67.3.0/24" && e.Packets > 0 {
			sawSample = true
		}
	}
	if !sawSample {
		t.Error("no dry-run sample event for the log-only rule")
	}

	// Refusals change nothing and name the problem.
	_, otherPriv, _ := bundle.GenerateKey()
	refusals := []struct {
		raw  []byte
		want string
	}{
		{l.bundle(t, 1, policyV1), "replay"},
		{signed(t, otherPriv, 2, policyV1), "unknown key"},
		// Conflicting rules are refused by bundle.Sign already (and by the
		// agent's Parse, see internal/bundle); a list that cannot be
		// fetched is refused at apply.
		{l.bundle(t, 2, bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldEnforce, ListRef: &bundle.ListRef{
			URL: "file:///nonexistent/fortress-list.txt", SHA256: strings.Repeat("0", 64)}}}), "payload.shield.list_ref"},
		{[]byte(`{"format":"fortress-bundle/1"}`), "malformed"},
	}
	for _, r := range refusals {
		if _, err := f.ApplyBundle(r.raw); err == nil || !strings.Contains(err.Error(), r.want) {
			t.Errorf("refusal: err = %v, want %q", err, r.want)
		}
	}
	st = f.Status()
	if st.Policy.Version != 1 || st.Shield.Rules != 4 || st.Policy.LastError == "" {
		t.Errorf("policy after refusals: %+v", st.Policy)
	}
	l.send(t, src4bl, dst4, n)
	l.send(t, src4ok, dst4, n)
	eventually(t, "allowed traffic after refusals", func() bool { return l.rx.Count(src4ok) == 2*n })
	if c := l.rx.Count(src4bl); c != 0 {
		t.Errorf("blocked source got through after refusals: %d", c)
	}

	// Restart (as after kill -9: only file descriptors go away). Filtering
	// goes on while no agent runs; the new agent adopts the pins and
	// re-applies the last bundle; counters carry over.
	f.Stop()
	l.send(t, src4bl, dst4, n)
	f2 := l.start(t)
	st = f2.Status()
	if !st.Shield.Adopted || st.Shield.State != ShieldEnforcing || st.Policy.Version != 1 || !st.Policy.InForce || st.Shield.Rules != 4 {
		t.Fatalf("status after restart: %+v", st)
	}
	cs, err = f2.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Rule == "10.67.1.0/24" && c.Packets != 3*n {
			t.Errorf("after restart rule %s counted %d, want %d", c.Rule, c.Packets, 3*n)
		}
	}
	l.send(t, src4bl, dst4, n)
	l.send(t, src4gw, dst4, n)
	eventually(t, "gateway traffic after restart", func() bool { return l.rx.Count(src4gw) == 2*n })
	if c := l.rx.Count(src4bl); c != 0 {
		t.Errorf("blocked source got through across the restart: %d", c)
	}

	// A dry-run bundle that drops the gateway from the policy: the bundle's
	// gateway is no longer exempt, and nothing is dropped.
	ack, err = f2.ApplyBundle(l.bundle(t, 2, bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldDryRun, Rules: []bundle.Rule{
		{CIDR: "10.67.1.0/24", Action: "drop"}, {CIDR: "10.67.2.0/24", Action: "drop"}}}}))
	if err != nil {
		t.Fatal(err)
	}
	if st := f2.Status(); st.Shield.State != ShieldDryRun || len(st.Shield.Gateways) != 0 {
		t.Errorf("dry-run status: %+v", st.Shield)
	}
	before := l.rx.Count(src4bl)
	l.send(t, src4bl, dst4, n)
	eventually(t, "dry run passes traffic", func() bool { return l.rx.Count(src4bl) == before+n })

	f2.Stop()
	if _, err := auditlog.VerifyFile(l.cfg.AuditLog); err != nil {
		t.Fatalf("audit log: %v", err)
	}
	data, _ := os.ReadFile(l.cfg.AuditLog)
	for _, want := range []string{`"action":"load"`, `"action":"attach"`, `"action":"pin"`, `"action":"adopt"`, `"action":"policy_swap"`, `"action":"map_update"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}

// TestShieldFailsOpen: an interface that cannot be attached leaves Shield
// degraded with the reason, and Start succeeds.
func TestShieldFailsOpen(t *testing.T) {
	l := newLab(t)
	l.cfg.Interfaces = append(l.cfg.Interfaces, Interface{Name: "fxnosuchif0", Netns: "/run/netns/" + l.pair.B.NSName})
	f := l.start(t)
	st := f.Status()
	if st.Shield.State != ShieldDegraded || !strings.Contains(st.Shield.Reason, "fxnosuchif0") {
		t.Fatalf("shield: %+v", st.Shield)
	}
	if len(st.Degraded) == 0 {
		t.Error("degraded list empty")
	}
	// The interface that could be attached still filters.
	if _, err := f.ApplyBundle(l.bundle(t, 1, policyV1)); err != nil {
		t.Fatal(err)
	}
	l.send(t, src4bl, dst4, 10)
	l.send(t, src4ok, dst4, 10)
	eventually(t, "allowed traffic", func() bool { return l.rx.Count(src4ok) == 10 })
	if l.rx.Count(src4bl) != 0 {
		t.Error("blocked traffic arrived")
	}
	var crit bool
	for len(f.Events()) > 0 {
		if e := <-f.Events(); e.Kind == KindCritical && e.Layer == "shield" {
			crit = true
		}
	}
	if !crit {
		t.Error("no critical event for the degraded shield")
	}
}

// TestStartRefusesBrokenState: a last-applied bundle that no longer
// verifies (trust key rotated away) stops Start instead of resetting the
// version to 0.
func TestStartRefusesBrokenState(t *testing.T) {
	pub, priv, _ := bundle.GenerateKey()
	dir := t.TempDir()
	raw := signed(t, priv, 4, policyV1)
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, bundle.StateFile), raw, 0o600)
	other, _, _ := bundle.GenerateKey()
	_ = pub
	_, err := Start(context.Background(), Config{AgentID: "a", TrustKeys: []ed25519.PublicKey{other}, StateDir: dir,
		AuditLog: filepath.Join(dir, "audit.log"), PinRoot: filepath.Join(dir, "pins"), Sentinel: SentinelConfig{Disabled: true},
		Kernel: &KernelReport{}})
	if err == nil || !errors.Is(err, bundle.ErrUnknownKey) {
		t.Fatalf("err = %v", err)
	}
}
