package kernel

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/carverauto/fortress/tools/vmlab/internal/apt"
)

// index is the cache's private apt index (Dir/apt), kept fresh enough,
// and the lock on the cache that keeps concurrent vmlab runs from
// downloading into each other. Kernels and packages are resolved and
// downloaded through it.
type index struct {
	dir    string // the cache's Dir
	arch   string // Debian architecture, never empty
	etcApt string // the machine's apt configuration directory
	maxAge time.Duration
	log    io.Writer
	repo   *apt.Repo
}

// index is c's apt index, with the defaults of unset fields filled in.
func (c *Cache) index() *index {
	x := &index{dir: c.Dir, arch: c.Arch, etcApt: c.EtcApt, maxAge: c.MaxAge, log: c.Log}
	if x.arch == "" {
		x.arch = "amd64"
	}
	if x.etcApt == "" {
		x.etcApt = "/etc/apt"
	}
	if x.maxAge <= 0 {
		x.maxAge = DefaultMaxAge
	}
	x.repo = &apt.Repo{Dir: filepath.Join(c.Dir, "apt"), Arch: x.arch, Log: nil}
	return x
}

func (x *index) logf(format string, args ...any) {
	if x.log != nil {
		fmt.Fprintf(x.log, "vmlab: "+format+"\n", args...)
	}
}

// lock takes an exclusive lock on the cache, so that concurrent vmlab runs
// do not download into each other.
func (x *index) lock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(x.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock cache: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock cache: %w", err)
	}
	return func() { f.Close() }, nil
}

// refresh downloads the package index when it is older than maxAge (or
// missing) and returns the time of the index in use. On error the index
// is as it was: stale, or absent (repo.HasLists says which).
func (x *index) refresh(ctx context.Context) (time.Time, error) {
	updated := x.repo.Updated()
	if time.Since(updated) <= x.maxAge && x.repo.HasLists() {
		return updated, nil
	}
	x.logf("refreshing the %s package index", x.arch)
	err := x.writeSources()
	if err == nil {
		err = x.repo.Update(ctx)
	}
	if err != nil {
		return updated, err
	}
	return x.repo.Updated(), nil
}

// writeSources writes the private sources list: the machine's Debian
// mirror URIs with the suites of every line.
func (x *index) writeSources() error {
	sys, err := apt.SystemSources(x.etcApt)
	if err != nil {
		return err
	}
	m, err := apt.FindMirror(sys)
	if err != nil {
		return err
	}
	archive, security := suites(LinesFor(x.arch))
	srcs := []apt.Source{{Types: []string{"deb"}, URIs: []string{m.Archive}, Suites: archive, Components: []string{"main"}, SignedBy: m.SignedBy}}
	if m.Security != "" {
		srcs = append(srcs, apt.Source{Types: []string{"deb"}, URIs: []string{m.Security}, Suites: security, Components: []string{"main"}, SignedBy: m.SignedBy})
	} else {
		x.logf("note: the apt sources name no Debian security archive; searching %s only", strings.Join(archive, ", "))
	}
	return x.repo.WriteSources(srcs, x.arch)
}
