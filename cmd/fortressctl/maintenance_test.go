package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/sentinel"
	"github.com/carverauto/fortress/pkg/fortress"
)

// fakeAgent answers /v1/maintenance like the agent would, recording the
// tokens it was handed.
type fakeAgent struct {
	got     []string
	reply   func(tok string) (int, any)
	pinRoot string
}

func (f *fakeAgent) serve(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "fortress.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/maintenance", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Token string }
		json.NewDecoder(r.Body).Decode(&req)
		f.got = append(f.got, req.Token)
		code, body := f.reply(req.Token)
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(body)
	})
	mux.HandleFunc("POST /v1/maintenance/end", func(w http.ResponseWriter, r *http.Request) {
		f.got = append(f.got, "end")
		w.Write([]byte("{}"))
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestMaintenanceCommand(t *testing.T) {
	dir := t.TempDir()
	pub, priv, _ := bundle.GenerateKey()
	privPEM, _ := bundle.MarshalPrivateKey(priv)
	keyFile := filepath.Join(dir, "signing.key")
	os.WriteFile(keyFile, privPEM, 0o600)
	ctx := context.Background()
	var out bytes.Buffer

	// token: signed, for the host, with the window asked for.
	tokFile := filepath.Join(dir, "audit.tok")
	if code, err := maintenanceCmd(ctx, []string{"token", "--key", keyFile, "--host", "edge-1", "--for", "10m", "--out", tokFile}, &out); code != 0 || err != nil {
		t.Fatalf("token: %d %v", code, err)
	}
	raw, _ := os.ReadFile(tokFile)
	tok, err := sentinel.VerifyToken(string(raw), pub, "edge-1", time.Now())
	if err != nil || tok.Action != "audit" || tok.NotAfter.Sub(tok.NotBefore) != 10*time.Minute || len(tok.Nonce) != 24 {
		t.Fatalf("token %+v: %v", tok, err)
	}
	removeFile := filepath.Join(dir, "remove.tok")
	maintenanceCmd(ctx, []string{"token", "--key", keyFile, "--host", "edge-1", "--action", "remove", "--out", removeFile}, &out)
	for _, bad := range [][]string{
		{"token", "--key", keyFile},
		{"token", "--key", keyFile, "--host", "h", "--action", "disable"},
		{"token", "--key", keyFile, "--host", "h", "--for", "25h"},
		{"start"},
		{"frobnicate"},
	} {
		if code, err := maintenanceCmd(ctx, bad, &out); code != 2 || err == nil {
			t.Errorf("%v: code %d err %v, want usage error", bad, code, err)
		}
	}

	pinRoot := t.TempDir()
	agent := &fakeAgent{reply: func(tok string) (int, any) {
		t, _ := sentinel.PeekToken(tok)
		return 200, fortress.MaintenanceResult{Action: t.Action, Nonce: t.Nonce, Until: t.NotAfter, KeyID: "k1",
			Removed: []string{"shield", "sentinel"}, PinRoot: pinRoot}
	}}
	sock := agent.serve(t)

	// start sends the audit token; it refuses to send a remove token.
	out.Reset()
	if code, err := maintenanceCmd(ctx, []string{"start", "--socket", sock, "--token", tokFile}, &out); code != 0 || err != nil {
		t.Fatalf("start: %d %v", code, err)
	}
	if len(agent.got) != 1 || agent.got[0] != strings.TrimSpace(string(raw)) || !strings.Contains(out.String(), "audit until") {
		t.Fatalf("start sent %q, printed %q", agent.got, out.String())
	}
	if code, err := maintenanceCmd(ctx, []string{"start", "--socket", sock, "--token", removeFile}, &out); code != 1 ||
		err == nil || !strings.Contains(err.Error(), "use maintenance remove") || len(agent.got) != 1 {
		t.Fatalf("start with a remove token: %d %v (sent %d)", code, err, len(agent.got))
	}

	// remove checks the pin root afterwards.
	os.MkdirAll(filepath.Join(pinRoot, "shield"), 0o755)
	os.WriteFile(filepath.Join(pinRoot, "shield", "link_xdp_eth0"), nil, 0o600)
	os.WriteFile(filepath.Join(pinRoot, "maps.debug"), nil, 0o600)
	if code, err := maintenanceCmd(ctx, []string{"remove", "--socket", sock, "--token", removeFile}, &out); code != 1 ||
		err == nil || !strings.Contains(err.Error(), "shield/link_xdp_eth0") || strings.Contains(err.Error(), "maps.debug") {
		t.Fatalf("remove with a pin left: %d %v", code, err)
	}
	os.RemoveAll(filepath.Join(pinRoot, "shield"))
	out.Reset()
	if code, err := maintenanceCmd(ctx, []string{"remove", "--socket", sock, "--token", removeFile}, &out); code != 0 || err != nil ||
		!strings.Contains(out.String(), "removed: shield, sentinel") || !strings.Contains(out.String(), "no pins left") {
		t.Fatalf("remove: %d %v %q", code, err, out.String())
	}

	// The agent's refusal reaches the operator.
	agent.reply = func(string) (int, any) {
		return 403, map[string]string{"error": "refused: maintenance token: expired"}
	}
	if code, err := maintenanceCmd(ctx, []string{"start", "--socket", sock, "--token", tokFile}, &out); code != 1 ||
		err == nil || !strings.Contains(err.Error(), "agent: refused: maintenance token: expired") {
		t.Fatalf("refused: %d %v", code, err)
	}
	if code, err := maintenanceCmd(ctx, []string{"end", "--socket", sock}, &out); code != 0 || err != nil || agent.got[len(agent.got)-1] != "end" {
		t.Fatalf("end: %d %v", code, err)
	}
	if code, err := maintenanceCmd(ctx, []string{"end", "--socket", filepath.Join(dir, "none.sock")}, &out); code != 1 || err == nil {
		t.Fatalf("unreachable agent: %d %v", code, err)
	}
}
