package demo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/netlab"
)

// LockDir holds one lock file per demo name.
const LockDir = "/run/lock"

var validName = regexp.MustCompile(`^[a-z0-9]{1,13}$`)

// checkName refuses names that do not fit interface names (f<name>a).
func checkName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("name %q: use 1 to 13 lower-case letters and digits", name)
	}
	return nil
}

// runLock is the lock a running demo holds on its name. It records the
// demo's pid and work directory, so that a later run under the same name
// finds what a run that did not finish (kill -9, a crash) left behind.
type runLock struct {
	f    *os.File
	path string
}

// lockName takes the lock of name. When another live demo holds it, the
// error says which and how to run a second demo beside it.
func lockName(name string) (*runLock, string, error) {
	if err := os.MkdirAll(LockDir, 0o755); err != nil {
		return nil, "", fmt.Errorf("lock dir: %w", err)
	}
	path := filepath.Join(LockDir, "fortress-demo-"+name+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid, _, _ := strings.Cut(string(b), " ")
			return nil, "", fmt.Errorf("another fortress-demo runs under the name %q (pid %s, lock %s): it owns the namespaces fortress-%s-a/-b; "+
				"to run a second demo beside it, pass --name with another name and --listen 127.0.0.1:0 (or another free port)", name, pid, path, name)
		}
		return nil, "", fmt.Errorf("lock %s: %w", path, err)
	}
	prev, _ := os.ReadFile(path)
	return &runLock{f: f, path: path}, strings.TrimSpace(string(prev)), nil
}

// record writes the holder's pid and work directory.
func (l *runLock) record(work string) error {
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	_, err := l.f.WriteAt([]byte(strconv.Itoa(os.Getpid())+" "+work+"\n"), 0)
	return err
}

// release unlocks; clean empties the record first (the run removed all it
// made).
func (l *runLock) release(clean bool) error {
	var err error
	if clean {
		err = l.f.Truncate(0)
	}
	return errors.Join(err, l.f.Close())
}

// cleanLeftovers removes what an earlier run under the same name left: its
// namespaces and its work directory with the private bpffs mounted in it
// (where Shield stayed pinned). prev is that run's lock record.
func cleanLeftovers(name, prev string, logf func(string, ...any)) error {
	var errs []error
	for _, side := range []string{"a", "b"} {
		ns := "fortress-" + name + "-" + side
		if netlab.NamedExists(ns) {
			logf("removing leftover namespace %s of an earlier run", ns)
			if err := netlab.RemoveNamed(ns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	_, work, _ := strings.Cut(prev, " ")
	work = strings.TrimSpace(work)
	// Only a work directory this demo made: a temporary fortress-demo-* one.
	if work != "" && filepath.Dir(work) == filepath.Clean(os.TempDir()) && strings.HasPrefix(filepath.Base(work), "fortress-demo-") {
		if _, err := os.Stat(work); err == nil {
			logf("removing leftover work directory %s of an earlier run", work)
			bpf := filepath.Join(work, "bpf")
			for range 8 {
				if unix.Unmount(bpf, unix.MNT_DETACH) != nil {
					break
				}
			}
			if err := os.RemoveAll(work); err != nil {
				errs = append(errs, fmt.Errorf("remove leftover %s: %w", work, err))
			}
		}
	}
	return errors.Join(errs...)
}
