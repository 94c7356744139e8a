package statedir

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// leftovers lists what is in dir besides the names in keep.
func leftovers(t *testing.T, dir string, keep ...string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		found := false
		for _, k := range keep {
			found = found || e.Name() == k
		}
		if !found {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestWriteFileContentAndMode(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "state.json")
	for _, c := range []struct {
		data []byte
		perm os.FileMode
	}{{[]byte("first"), 0o600}, {[]byte("second, longer than the first"), 0o644}, {nil, 0o640}} {
		if err := WriteFile(name, c.data, c.perm); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil || !bytes.Equal(got, c.data) {
			t.Fatalf("content %q, %v; want %q", got, err, c.data)
		}
		fi, err := os.Stat(name)
		if err != nil || fi.Mode().Perm() != c.perm {
			t.Fatalf("mode %v, %v; want %v", fi.Mode().Perm(), err, c.perm)
		}
		if l := leftovers(t, dir, "state.json"); len(l) != 0 {
			t.Fatalf("left behind: %v", l)
		}
	}
}

// A write that fails after the temporary file exists leaves the old file
// as it was and removes the temporary file.
func TestWriteFileFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "ledger.json")
	if err := WriteFile(name, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	injected := errors.New("injected sync failure")
	syncFile = func(*os.File) error { return injected }
	defer func() { syncFile = (*os.File).Sync }()
	err := WriteFile(name, []byte("new"), 0o644)
	if !errors.Is(err, injected) {
		t.Fatalf("err %v, want the injected failure", err)
	}
	got, _ := os.ReadFile(name)
	fi, _ := os.Stat(name)
	if string(got) != "old" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("old file changed: %q %v", got, fi.Mode().Perm())
	}
	if l := leftovers(t, dir, "ledger.json"); len(l) != 0 {
		t.Fatalf("left behind: %v", l)
	}
}

// Concurrent writers and readers: every read is one writer's whole
// content, and nothing is left behind.
func TestWriteFileConcurrent(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "f")
	content := func(w int) []byte { return bytes.Repeat([]byte{byte('a' + w)}, 64<<10+w) }
	if err := WriteFile(name, content(0), 0o600); err != nil {
		t.Fatal(err)
	}
	const writers, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds*2)
	done := make(chan struct{})
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if err := WriteFile(name, content(w), 0o600); err != nil {
					errs <- err
				}
			}
		}()
	}
	var rg sync.WaitGroup
	for r := 0; r < 2; r++ {
		rg.Add(1)
		go func() {
			defer rg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				b, err := os.ReadFile(name)
				if err != nil {
					errs <- err
					return
				}
				w := int(b[0] - 'a')
				if w < 0 || w >= writers || !bytes.Equal(b, content(w)) {
					errs <- fmt.Errorf("torn read: %d bytes starting %q", len(b), b[:1])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if l := leftovers(t, dir, "f"); len(l) != 0 {
		t.Fatalf("left behind: %v", l)
	}
}

func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "audit.log.head")
	for _, n := range []string{".audit.log.head.tmp123", ".audit.log.head.tmp", "audit.log.head", "audit.log", ".other.tmp1"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o600)
	}
	RemoveTemps(name)
	if l := leftovers(t, dir, "audit.log.head", "audit.log", ".other.tmp1"); len(l) != 0 {
		t.Fatalf("left behind: %v", l)
	}
	if _, err := os.Stat(filepath.Join(dir, ".other.tmp1")); err != nil {
		t.Fatal("removed another file's temporary")
	}
}
