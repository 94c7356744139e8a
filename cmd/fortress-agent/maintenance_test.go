package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/sentinel"
	"github.com/carverauto/fortress/pkg/fortress"
)

// TestAgentMaintenanceRemove: a remove token handed over the status socket
// takes Shield out of the kernel (the host has no BPF LSM; the lab test
// internal/e2e covers Sentinel). Every token that does not verify
// completely changes nothing.
func TestAgentMaintenanceRemove(t *testing.T) {
	b := newTestBed(t, "fm", "10.69", 7778)
	pinRoot, pair, rx, dir, priv, trust := b.pinRoot, b.pair, b.rx, b.dir, b.priv, b.trust
	_, otherPriv, _ := bundle.GenerateKey()
	state := filepath.Join(dir, "state")
	os.MkdirAll(state, 0o700)
	raw, _ := bundle.Sign(bundle.Body{Version: 3, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{"m-agent"},
		Payload: bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldEnforce, Rules: []bundle.Rule{{CIDR: "10.69.1.0/24", Action: "drop"}}}}}, priv)
	os.WriteFile(filepath.Join(state, bundle.StateFile), raw, 0o600)
	sock := filepath.Join(dir, "run", "fortress.sock")
	cfg, err := parseConfig([]byte(fmt.Sprintf(`{
		"agent_id": "m-agent",
		"interfaces": [{"name": %q, "netns": %q}],
		"pin_root": %q, "state_dir": %q, "audit_log": %q, "trust_key": %q,
		"metrics": {"listen": "off"}, "status_socket": %q,
		"sentinel": {"enabled": false}
	}`, pair.B.Iface, "/run/netns/"+pair.B.NSName, pinRoot, state, filepath.Join(dir, "audit.log"), trust, sock)))
	if err != nil {
		t.Fatal(err)
	}
	_, stop := startAgent(t, cfg)
	defer stop()

	a69 := netip.MustParseAddr
	blocked := a69("10.69.1.2")
	sent := 0
	sendBlocked := func() {
		t.Helper()
		if err := pair.A.SendUDP(blocked, a69("10.69.0.2"), 7778, 20); err != nil {
			t.Fatal(err)
		}
		sent += 20
		if err := pair.A.SendUDP(a69("10.69.0.1"), a69("10.69.0.2"), 7778, 1); err != nil {
			t.Fatal(err)
		}
	}
	sendBlocked()
	waitFor(t, "allowed traffic", func() bool { return rx.Count(a69("10.69.0.1")) == 1 })
	if c := rx.Count(blocked); c != 0 {
		t.Fatalf("blocked source: %d datagrams arrived", c)
	}
	pinCount := countPins(t, pinRoot)
	if pinCount == 0 {
		t.Fatal("no pins before removal")
	}

	client := socketClient(sock)
	post := func(tok string) (int, string) {
		t.Helper()
		body, _ := json.Marshal(MaintenanceRequest{Token: tok})
		resp, err := client.Post("http://agent/v1/maintenance", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	now := time.Now()
	token := func(key []byte, action, host string, from, to time.Time) string {
		tok, err := sentinel.SignToken(key, sentinel.Token{Action: action, Host: host, NotBefore: from, NotAfter: to, Nonce: "n-" + action})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	hour := now.Add(time.Hour)
	for name, c := range map[string]struct {
		tok  string
		code int
		want string
	}{
		"other key":   {token(otherPriv, "remove", "m-agent", now.Add(-time.Minute), hour), 403, "bad signature"},
		"other host":  {token(priv, "remove", "edge-9", now.Add(-time.Minute), hour), 403, "for host"},
		"expired":     {token(priv, "remove", "m-agent", now.Add(-time.Hour), now.Add(-time.Minute)), 403, "expired"},
		"future":      {token(priv, "remove", "m-agent", hour, hour.Add(time.Hour)), 403, "not valid yet"},
		"garbage":     {"fmt1.e30.AAAA", 403, "bad signature"},
		"audit, host": {token(priv, "audit", "m-agent", now.Add(-time.Minute), hour), 409, "sentinel is not running"},
	} {
		code, body := post(c.tok)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s, want %d %q", name, code, body, c.code, c.want)
		}
	}
	// Nothing changed.
	if n := countPins(t, pinRoot); n != pinCount {
		t.Fatalf("refused tokens changed the pins: %d -> %d", pinCount, n)
	}
	sendBlocked()
	waitFor(t, "allowed traffic", func() bool { return rx.Count(a69("10.69.0.1")) == 2 })
	if c := rx.Count(blocked); c != 0 {
		t.Fatalf("after refused tokens %d blocked datagrams arrived", c)
	}

	code, body := post(token(priv, "remove", "m-agent", now.Add(-time.Minute), hour))
	if code != 200 {
		t.Fatalf("remove: %d %s", code, body)
	}
	var res fortress.MaintenanceResult
	if err := json.Unmarshal([]byte(body), &res); err != nil || res.Action != "remove" || len(res.Removed) != 1 ||
		res.Removed[0] != "shield" || res.PinRoot != pinRoot || res.KeyID != bundle.KeyID(b.pub) {
		t.Fatalf("remove reply %s (%v)", body, err)
	}
	if n := countPins(t, pinRoot); n != 0 {
		t.Fatalf("%d pins left after removal", n)
	}
	sendBlocked()
	waitFor(t, "formerly blocked traffic", func() bool { return rx.Count(blocked) == 20 })

	resp, err := client.Get("http://agent/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st StatusReply
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Shield.State != fortress.ShieldRemoved || !strings.Contains(st.Shield.Reason, "n-remove") ||
		st.Sentinel.State != fortress.SentinelRemoved || len(st.Degraded) == 0 {
		t.Errorf("status after removal: %+v", st.Status)
	}
	if code, body := post(token(priv, "remove", "m-agent", now.Add(-time.Minute), hour)); code != 409 ||
		!strings.Contains(body, "removed") {
		t.Errorf("second removal: %d %s", code, body)
	}
	// The audit log holds the refusals and the removal, and its chain is intact.
	log, _ := os.ReadFile(filepath.Join(dir, "audit.log"))
	if !strings.Contains(string(log), `"action":"remove"`) || strings.Count(string(log), `"action":"maintenance"`) < 5 {
		t.Errorf("audit log lacks the maintenance records:\n%s", log)
	}
}

func countPins(t *testing.T, root string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
		// bpffs's own files (maps.debug, progs.debug) have a dot, which
		// no pin can have.
		if err == nil && !d.IsDir() && !strings.Contains(d.Name(), ".") {
			n++
		}
		return nil
	})
	return n
}
