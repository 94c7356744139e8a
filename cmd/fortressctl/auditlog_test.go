package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/carverauto/fortress/internal/auditlog"
)

func TestAuditlogVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fortress-audit.log")
	l, err := auditlog.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []string{"xdp_shield", "lsm_file_open", "shield_rules"} {
		if err := l.Append(context.Background(), auditlog.Record{Action: auditlog.ActionLoad, Object: obj, Outcome: auditlog.OutcomeOK}); err != nil {
			t.Fatal(err)
		}
	}
	_, hash := l.Last()
	l.Close()

	var out bytes.Buffer
	code, err := auditlogCmd([]string{"verify", path}, &out)
	if code != 0 || err != nil {
		t.Fatalf("intact: exit %d, %v", code, err)
	}
	if !strings.Contains(out.String(), "3 record(s)") || !strings.Contains(out.String(), hash) {
		t.Errorf("summary lacks the count or head hash:\n%s", out.String())
	}
	if code := run(context.Background(), []string{"auditlog", "verify", path}); code != 0 {
		t.Errorf("fortressctl auditlog verify exited %d", code)
	}

	// Edit line 2.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.Replace(raw, []byte(`"object":"lsm_file_open"`), []byte(`"object":"lsm_file_opex"`), 1)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	code, err = auditlogCmd([]string{"verify", path}, &out)
	if code != 1 || err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("tampered: exit %d, %v; want 1 naming line 2", code, err)
	}
	if code := run(context.Background(), []string{"auditlog", "verify", path}); code != 1 {
		t.Errorf("fortressctl auditlog verify of a tampered log exited %d, want 1", code)
	}

	// Unreadable and bad usage.
	if code, err := auditlogCmd([]string{"verify", filepath.Join(t.TempDir(), "none.log")}, &out); code != 2 || err == nil {
		t.Errorf("missing file: exit %d, %v", code, err)
	}
	for _, args := range [][]string{nil, {"show"}, {"verify", "a", "b"}, {"verify", "--json"}} {
		code, err := auditlogCmd(args, &out)
		var ue usageError
		if code != 2 || !errors.As(err, &ue) {
			t.Errorf("auditlog %v: exit %d, %v; want a usage error", args, code, err)
		}
	}
}
