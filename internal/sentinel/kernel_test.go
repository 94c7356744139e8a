package sentinel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestStatusBesideClose: Status may run while Sentinel is closed or
// removed (the engine reads it without its change lock). It must neither
// race nor panic, and must say that nothing is read any more; a change
// after Close fails with errClosed. Needs no kernel: a Sentinel with
// nothing loaded is what Close leaves.
func TestStatusBesideClose(t *testing.T) {
	cfg := Config{AgentBinary: "/usr/local/bin/serviceradar-agent", PinRoot: "bpffs-not-used"}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	s, _ := assemble(cfg)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				st := s.Status()
				if st.Enforcing || len(st.Programs) != 0 {
					t.Errorf("a closed Sentinel reports enforcing=%v programs=%v", st.Enforcing, st.Programs)
					return
				}
				if !strings.Contains(strings.Join(st.Critical, "; "), errClosed.Error()) {
					t.Errorf("a closed Sentinel's status says nothing of it: %v", st.Critical)
					return
				}
			}
		}()
	}
	for range 200 {
		s.Close()
	}
	wg.Wait()
	if _, _, err := s.Mode(); !errors.Is(err, errClosed) {
		t.Errorf("Mode of a closed Sentinel: %v, want %v", err, errClosed)
	}
	if _, err := s.Stats(); !errors.Is(err, errClosed) {
		t.Errorf("Stats of a closed Sentinel: %v, want %v", err, errClosed)
	}
	// Changes after Close fail the same way.
	file := filepath.Join(t.TempDir(), "sweep.json")
	if err := os.WriteFile(file, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{
		"SetEnforce": s.SetEnforce(),
		"Protect":    s.Protect(file, RoleAgent),
		"Watch":      s.Watch(file),
		"guard":      s.guardID(guardMap, 1),
		"ReadEvents": s.ReadEvents(context.Background(), func(Event) {}),
	} {
		if !errors.Is(err, errClosed) {
			t.Errorf("%s on a closed Sentinel: %v, want %v", what, err, errClosed)
		}
	}
}
