package sentinel

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestLabAdoptsPinsOfAnEarlierRelease: pins of a release that had no
// sentinel_layout, sentinel_role_stats or sentinel_listed are adopted. The
// missing maps are created (the filter full), pinned and guarded, and
// Sentinel keeps enforcing with nothing critical.
func TestLabAdoptsPinsOfAnEarlierRelease(t *testing.T) {
	l := newLab(t)
	missing := []string{mapLayout, mapRoleStats, mapListed}
	for _, name := range missing {
		if !newInRelease[name] {
			t.Fatalf("%s is not one of the maps a release may add", name)
		}
	}
	l.mustDo("unpin-map " + mapLayout + " " + mapRoleStats + " " + mapListed)
	for _, name := range missing {
		if _, err := os.Stat(l.pinRoot.Path("sentinel", pinName("map", name))); !os.IsNotExist(err) {
			t.Fatalf("pin of %s still there: %v", name, err)
		}
	}
	l.mustDo("exit")
	l.agent.stdin.Close()
	l.agent.cmd.Wait()
	l.agent = nil

	st := l.startAgent(l.agentBin, true)
	if len(st.Critical) > 0 || !st.Enforcing {
		t.Fatalf("adopting an earlier release's pins: enforcing=%v critical=%v", st.Enforcing, st.Critical)
	}
	for _, name := range missing {
		if _, err := os.Stat(l.pinRoot.Path("sentinel", pinName("map", name))); err != nil {
			t.Errorf("map %s not pinned again on adoption: %v", name, err)
		}
	}
	// The new layout map is guarded like the others: root may open it
	// read-only, and a read-write fd by its id is refused (the guard lets
	// that through for maps it does not guard).
	ro, err := ebpf.LoadPinnedMap(l.pinRoot.Path("sentinel", pinName("map", mapLayout)), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open of the new %s: %v", mapLayout, err)
	}
	info, err := ro.Info()
	ro.Close()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("kernel reports no map id")
	}
	l.refuse(attack{name: "read-write fd by id of the new " + mapLayout, run: func() error {
		m, err := ebpf.NewMapFromID(id)
		if err == nil {
			m.Close()
		}
		return err
	}, errno: unix.EPERM})
	sweep := filepath.Join(l.configDir, "sweep.json")
	l.refuse(attack{name: "write-open after adopting an earlier release", run: func() error { return openWrite(sweep, unix.O_WRONLY) }, errno: unix.EPERM})
}
