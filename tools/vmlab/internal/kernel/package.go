package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/carverauto/fortress/tools/vmlab/internal/apt"
)

// packages keeps unpacked Debian packages below the cache's Dir, resolved
// and downloaded through the cache's index:
//
//	Dir/packages/<name>_<version>/   the package's files (dpkg-deb -x)
type packages struct {
	idx *index
}

// Package returns the directory holding the unpacked newest version of the
// Debian package name (of the cache's architecture) that one of suites
// serves, downloading and unpacking it when the cache lacks it. When the
// index cannot be refreshed or read, or the download fails, the newest
// version already unpacked is used, with a warning.
func (c *Cache) Package(ctx context.Context, name string, suites []string) (string, error) {
	return (&packages{idx: c.index()}).get(ctx, name, suites)
}

// get is Package.
func (p *packages) get(ctx context.Context, name string, suites []string) (string, error) {
	idx := p.idx
	if err := os.MkdirAll(filepath.Join(idx.dir, "packages"), 0o755); err != nil {
		return "", fmt.Errorf("create cache: %w", err)
	}
	unlock, err := idx.lock()
	if err != nil {
		return "", err
	}
	defer unlock()

	cached := p.unpacked(name)
	if _, err := idx.refresh(ctx); err != nil {
		if len(cached) > 0 {
			idx.logf("warning: %v; using cached %s", err, filepath.Base(cached[0]))
			return cached[0], nil
		}
		if !idx.repo.HasLists() {
			return "", fmt.Errorf("package %s: %w", name, err)
		}
		idx.logf("warning: %v; using the stale package index", err)
	}
	all, err := idx.repo.Madison(ctx, name)
	if err == nil && len(Newest(all, suites)) == 0 {
		err = fmt.Errorf("no %s package for %s in %s", name, idx.arch, strings.Join(suites, ", "))
	}
	if err != nil {
		if len(cached) > 0 {
			idx.logf("warning: %v; using cached %s", err, filepath.Base(cached[0]))
			return cached[0], nil
		}
		return "", fmt.Errorf("package %s: %w", name, err)
	}
	cand := Newest(all, suites)[0]
	dir := p.dir(cand)
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return dir, nil
	}
	if err := p.unpack(ctx, cand, dir); err != nil {
		if ctx.Err() != nil || len(cached) == 0 {
			return "", err
		}
		idx.logf("warning: %v; using cached %s", err, filepath.Base(cached[0]))
		return cached[0], nil
	}
	return dir, nil
}

func (p *packages) dir(cand apt.Candidate) string {
	return filepath.Join(p.idx.dir, "packages", cand.Package+"_"+cand.Version)
}

// unpacked lists the unpacked versions of package name, newest first.
func (p *packages) unpacked(name string) []string {
	dirs, _ := filepath.Glob(filepath.Join(p.idx.dir, "packages", name+"_*"))
	var out []string
	for _, d := range dirs {
		// Package names have no "_": what follows the first is the version.
		if n, _, _ := strings.Cut(filepath.Base(d), "_"); n == name {
			out = append(out, d)
		}
	}
	version := func(d string) string { _, v, _ := strings.Cut(filepath.Base(d), "_"); return v }
	slices.SortFunc(out, func(a, b string) int { return apt.CompareVersions(version(b), version(a)) })
	return out
}

// unpack downloads cand and unpacks it into dir.
func (p *packages) unpack(ctx context.Context, cand apt.Candidate, dir string) error {
	idx := p.idx
	idx.logf("downloading %s:%s %s", cand.Package, idx.arch, cand.Version)
	downloads := filepath.Join(idx.dir, "downloads")
	if err := os.MkdirAll(downloads, 0o755); err != nil {
		return fmt.Errorf("create downloads dir: %w", err)
	}
	deb, err := idx.repo.Download(ctx, downloads, cand.Package, cand.Version)
	if err != nil {
		return err
	}
	defer os.Remove(deb)
	tmp, err := os.MkdirTemp(filepath.Join(idx.dir, "packages"), ".unpack-")
	if err != nil {
		return fmt.Errorf("unpack %s: %w", cand.Package, err)
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w: %s", filepath.Base(deb), err, strings.TrimSpace(string(out)))
	}
	if err := os.Rename(root, dir); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("store %s: %w", cand.Package, err)
	}
	return nil
}
