//go:build linux

package fortress

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/carverauto/fortress/internal/bundle"
)

// TestRestartKeepsListPolicyUnread: after a restart, a list policy whose
// set the pinned tables hold is in force again without its list being
// read (or compiled): here the list and its cached copy are gone, and the
// agent still starts enforcing it. The next policy applies as usual.
func TestRestartKeepsListPolicyUnread(t *testing.T) {
	l := newLab(t)
	f := l.start(t)
	list := append([]byte("10.67.1.0/24\n"), addressList(5000)...)
	path := filepath.Join(t.TempDir(), "feed.txt")
	if err := os.WriteFile(path, list, 0o600); err != nil {
		t.Fatal(err)
	}
	ack, err := f.ApplyBundle(listBundle(t, l.priv, 1, "file://"+path, list))
	if err != nil || ack.Rules != 5001 {
		t.Fatalf("apply list bundle: %+v, %v", ack, err)
	}
	f.Stop()
	// Neither the list nor the agent's cached copy can be read now.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(l.cfg.StateDir, "lists")); err != nil {
		t.Fatal(err)
	}

	f2 := l.start(t)
	st := f2.Status()
	if !st.Shield.Adopted || st.Shield.State != ShieldEnforcing || !st.Policy.InForce || st.Policy.Version != 1 ||
		st.Policy.LastError != "" || st.Shield.Rules != 5001 {
		t.Fatalf("status after restart: shield %+v policy %+v", st.Shield, st.Policy)
	}
	l.send(t, src4bl, dst4, 50)
	l.send(t, src4ok, dst4, 50)
	eventually(t, "allowed traffic after restart", func() bool { return l.rx.Count(src4ok) == 50 })
	if c := l.rx.Count(src4bl); c != 0 {
		t.Fatalf("a source the adopted list blocks got through: %d", c)
	}

	// A new policy still applies (the old one, unreadable, just cannot be
	// put back should this one be undone).
	ack, err = f2.ApplyBundle(l.bundle(t, 2, bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldEnforce,
		Rules: []bundle.Rule{{CIDR: "10.67.2.0/24", Action: "drop"}}}}))
	if err != nil || ack.Rules != 1 {
		t.Fatalf("next policy: %+v, %v", ack, err)
	}
	l.send(t, src4bl, dst4, 50)
	eventually(t, "traffic the new policy allows", func() bool { return l.rx.Count(src4bl) == 50 })
}
