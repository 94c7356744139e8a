package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeygenSignVerify runs the bundle sub-commands end to end.
func TestKeygenSignVerify(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	k := filepath.Join(dir, "k")
	if code, err := runKeygen(ctx, []string{"--out", k}); code != 0 || err != nil {
		t.Fatalf("keygen: %d %v", code, err)
	}
	if fi, _ := os.Stat(k + ".key"); fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v", fi.Mode().Perm())
	}
	payload := filepath.Join(dir, "p.json")
	os.WriteFile(payload, []byte(`{"shield":{"mode":"dry-run","rules":[{"cidr":"203.0.113.0/24","action":"drop"}]},"gateways":{"v4":["127.0.0.1"]}}`), 0o644)
	b := filepath.Join(dir, "b.json")
	if code, err := runSign(ctx, []string{"--key", k + ".key", "--version", "2", "--targets", "edge-1", "--out", b, payload}); code != 0 || err != nil {
		t.Fatalf("sign: %d %v", code, err)
	}
	if code, err := runVerify(ctx, []string{"--trust", k + ".pub", "--agent", "edge-1", b}); code != 0 || err != nil {
		t.Fatalf("verify: %d %v", code, err)
	}
	if _, err := runVerify(ctx, []string{"--trust", k + ".pub", "--agent", "edge-2", b}); err == nil || !strings.Contains(err.Error(), "not_for_agent") {
		t.Fatalf("verify other agent: %v", err)
	}
	data, _ := os.ReadFile(b)
	os.WriteFile(b, []byte(strings.Replace(string(data), "dry-run", "enforce", 1)), 0o644)
	if _, err := runVerify(ctx, []string{"--trust", k + ".pub", b}); err == nil || !strings.Contains(err.Error(), "bad_signature") {
		t.Fatalf("verify tampered: %v", err)
	}
	os.WriteFile(payload, []byte(`{"shield":{"mode":"enforce","rulez":[]}}`), 0o644)
	if _, err := runSign(ctx, []string{"--key", k + ".key", "--version", "3", "--out", b, payload}); err == nil || !strings.Contains(err.Error(), `"rulez"`) {
		t.Fatalf("sign unknown field: %v", err)
	}
	if code, err := runSign(ctx, []string{"--version", "3", payload}); code != 2 || err == nil {
		t.Fatalf("sign without key: %d %v", code, err)
	}
}
