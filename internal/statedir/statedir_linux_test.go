package statedir

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A directory that refuses new entries (read-only mount, or permissions
// for a user other than root) fails the write before anything changes.
func TestWriteFileUnwritableDir(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "sub", "f")
	err := WriteFile(name, []byte("x"), 0o600)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing directory: %v", err)
	}
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	name = filepath.Join(ro, "f")
	if err := WriteFile(name, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(ro, ro, "", syscall.MS_BIND, ""); err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("bind mount: %v", err)
		}
		// Unprivileged: a directory without write permission does the same.
		if err := os.Chmod(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(ro, 0o755)
	} else {
		defer syscall.Unmount(ro, syscall.MNT_DETACH)
		if err := syscall.Mount("", ro, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
			t.Fatalf("remount read-only: %v", err)
		}
	}
	if err := WriteFile(name, []byte("new"), 0o600); err == nil {
		t.Fatal("write into a read-only directory succeeded")
	}
	if got, _ := os.ReadFile(name); string(got) != "old" {
		t.Fatalf("old file changed: %q", got)
	}
	if l := leftovers(t, ro, "f"); len(l) != 0 {
		t.Fatalf("left behind: %v", l)
	}
}

// Only a regular file is replaced; anything else stays as it is.
func TestWriteFileRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("kept"), 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(target, link)
	sub := filepath.Join(dir, "dir")
	os.Mkdir(sub, 0o755)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{link, sub, fifo} {
		if err := WriteFile(name, []byte("x"), 0o600); !errors.Is(err, ErrNotRegular) {
			t.Errorf("%s: %v, want ErrNotRegular", name, err)
		}
	}
	if got, _ := os.ReadFile(target); string(got) != "kept" {
		t.Fatalf("symlink target changed: %q", got)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("symlink replaced")
	}
	if l := leftovers(t, dir, "target", "link", "dir", "fifo"); len(l) != 0 {
		t.Fatalf("left behind: %v", l)
	}
}
