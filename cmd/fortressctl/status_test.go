package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/carverauto/fortress/pkg/fortress"
)

func serveStatus(t *testing.T, st fortress.Status) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "fortress.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/status" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(st)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestStatusCommand(t *testing.T) {
	st := fortress.Status{AgentID: "edge-01", Started: time.Now().Add(-time.Hour),
		Shield: fortress.ShieldStatus{State: fortress.ShieldEnforcing, Rules: 3,
			Interfaces: []fortress.InterfaceStatus{{Name: "eth0", Mode: "native", Attached: true, Configured: true}},
			Totals:     fortress.ShieldTotals{Drop: 42}},
		Sentinel: fortress.SentinelStatus{State: fortress.SentinelUnavailable, Reason: "BPF LSM unusable, nothing is protected: bpf not in lsm="},
		Policy:   fortress.PolicyStatus{Version: 9, InForce: true, Digest: strings.Repeat("ab", 32)},
		Audit:    fortress.AuditStatus{Path: "/var/log/x", OK: true},
		Degraded: []string{"sentinel: unavailable: BPF LSM unusable"},
	}
	sock := serveStatus(t, st)
	var out bytes.Buffer
	code, err := statusCmd(context.Background(), []string{"--socket", sock}, &out)
	if err != nil || code != 3 {
		t.Fatalf("code %d err %v", code, err)
	}
	for _, want := range []string{"shield    enforcing", "eth0/native", "drop 42", "sentinel  unavailable: BPF LSM unusable",
		"policy    version 9", "DEGRADED  sentinel"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	st.Degraded = nil
	sock = serveStatus(t, st)
	out.Reset()
	if code, err := statusCmd(context.Background(), []string{"--socket", sock, "--json"}, &out); code != 0 || err != nil {
		t.Fatalf("json: code %d err %v", code, err)
	}
	var back fortress.Status
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back.Policy.Version != 9 {
		t.Fatalf("json output: %v %+v", err, back.Policy)
	}

	if code, err := statusCmd(context.Background(), []string{"--socket", filepath.Join(t.TempDir(), "none.sock")}, &out); code != 1 || err == nil {
		t.Fatalf("unreachable agent: code %d err %v", code, err)
	}
	if code, _ := statusCmd(context.Background(), []string{"extra"}, &out); code != 2 {
		t.Fatalf("bad usage: code %d", code)
	}
}
