package sentinel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Releases is a versioned release layout, ServiceRadar's: Dir holds
// versions/<version>/<Binary>, one directory per installed version, and
// the symlink current naming the version in use (the agent runs as
// Dir/current/<Binary>).
//
// The whole tree is the updater's. It alone may add a version, switch
// current (an upgrade or a rollback) or remove a version; what it creates
// in the tree is protected by the kernel from the moment it has a name,
// and nothing made elsewhere may be moved or linked in. The agent binary
// of a version becomes an agent identity the first time it runs, so an
// upgrade or a rollback never locks the agent out, and root can do
// neither by hand.
type Releases struct {
	// Dir is the release root (ServiceRadar: /var/lib/serviceradar/agent).
	// Empty: no release layout.
	Dir string
	// Binary is the agent binary's name in a version directory (default:
	// the base name of the agent binary).
	Binary string
	// Seed (optional) is an agent binary outside the tree that the agent
	// runs from before the first version is installed (ServiceRadar:
	// /usr/local/lib/serviceradar/agent/serviceradar-agent-seed). It is
	// an agent identity and protected; nobody may replace it while
	// Sentinel runs (a package upgrade of it needs a maintenance window).
	Seed string
}

// The fixed names inside a release root.
const (
	ReleaseVersions = "versions"
	ReleaseCurrent  = "current"
)

// maxReleaseBinary is the longest binary name the kernel compares
// (struct sentinel_release holds it with its terminating zero).
const maxReleaseBinary = len(sentinelSentinelRelease{}.Binary) - 1

var errReleaseLayout = errors.New("release layout")

// validate checks the layout's shape on disk: Dir/versions a directory,
// Dir/current (if there is one) a symlink to a version in it.
func (r Releases) validate() error {
	if r.Dir == "" {
		return nil
	}
	if !filepath.IsAbs(r.Dir) || filepath.Clean(r.Dir) != r.Dir {
		return fmt.Errorf("%w: %q is not a clean absolute path", errReleaseLayout, r.Dir)
	}
	if r.Seed != "" && (!filepath.IsAbs(r.Seed) || filepath.Clean(r.Seed) != r.Seed) {
		return fmt.Errorf("%w: seed %q is not a clean absolute path", errReleaseLayout, r.Seed)
	}
	if r.Binary == "" || strings.ContainsAny(r.Binary, "/\x00") || r.Binary == "." || r.Binary == ".." {
		return fmt.Errorf("%w: %q is not a file name", errReleaseLayout, r.Binary)
	}
	if len(r.Binary) > maxReleaseBinary {
		return fmt.Errorf("%w: binary name %q is longer than %d bytes", errReleaseLayout, r.Binary, maxReleaseBinary)
	}
	st, err := lstat(filepath.Join(r.Dir, ReleaseVersions))
	if err != nil {
		return fmt.Errorf("%w: %w", errReleaseLayout, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%w: %s is not a directory", errReleaseLayout, filepath.Join(r.Dir, ReleaseVersions))
	}
	cur := filepath.Join(r.Dir, ReleaseCurrent)
	st, err = lstat(cur)
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing installed yet: the seed runs
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errReleaseLayout, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return fmt.Errorf("%w: %s is not a symlink", errReleaseLayout, cur)
	}
	real, err := filepath.EvalSymlinks(cur)
	if err != nil {
		return fmt.Errorf("%w: resolve %s: %w", errReleaseLayout, cur, err)
	}
	versions, err := filepath.EvalSymlinks(filepath.Join(r.Dir, ReleaseVersions))
	if err != nil {
		return fmt.Errorf("%w: %w", errReleaseLayout, err)
	}
	if filepath.Dir(real) != versions {
		return fmt.Errorf("%w: %s leads to %s, not to a version in %s", errReleaseLayout, cur, real, versions)
	}
	return nil
}

// binaries lists the seed and the agent binary of every installed version.
func (r Releases) binaries() ([]string, error) {
	if r.Dir == "" {
		return nil, nil
	}
	dir := filepath.Join(r.Dir, ReleaseVersions)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errReleaseLayout, err)
	}
	var out []string
	if r.Seed != "" {
		if _, err := executableInode(r.Seed); err != nil {
			return nil, fmt.Errorf("%w: seed: %w", errReleaseLayout, err)
		}
		out = append(out, r.Seed)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		bin := filepath.Join(dir, e.Name(), r.Binary)
		st, err := lstat(bin)
		if errors.Is(err, os.ErrNotExist) {
			continue // a version being installed, or without the agent
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errReleaseLayout, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil, fmt.Errorf("%w: %s is not a regular file", errReleaseLayout, bin)
		}
		out = append(out, bin)
	}
	return out, nil
}

// protectReleases makes the tree the updater's: every directory inherits
// (SENTINEL_OBJ_INHERIT), versions/ is the releases directory, and each
// installed version's agent binary is an agent binary.
func (p *policy) protectReleases(r Releases) error {
	if r.Dir == "" {
		return nil
	}
	if err := p.protectTreeDirs(r.Dir, RoleUpdater, flagInherit); err != nil {
		return err
	}
	versions := filepath.Join(r.Dir, ReleaseVersions)
	st, err := lstat(versions)
	if err != nil {
		return err
	}
	p.add(inodeOf(st), flagReleases, RoleUpdater, versions)
	bins, err := r.binaries()
	if err != nil {
		return err
	}
	p.releaseBins = bins
	for _, bin := range bins {
		if bin == r.Seed {
			if err := p.protectFile(bin, flagAgentBinary, 0); err != nil {
				return fmt.Errorf("protect seed binary: %w", err)
			}
			continue
		}
		st, err := lstat(bin)
		if err != nil {
			return err
		}
		p.add(inodeOf(st), flagProtected|flagAgentBinary, RoleUpdater, bin)
	}
	return nil
}

// layout is the kernel's copy of the release layout (sentinel_layout).
func (r Releases) layout() sentinelSentinelRelease {
	var v sentinelSentinelRelease
	if r.Dir == "" {
		return v
	}
	for i := 0; i < len(r.Binary) && i < maxReleaseBinary; i++ {
		v.Binary[i] = int8(r.Binary[i])
	}
	return v
}

func (w *policyWriter) writeLayout() error {
	m, err := w.k.live()
	if err == nil {
		err = m.SentinelLayout.Put(uint32(0), w.cfg.Releases.layout())
	}
	w.rec("map_update", mapLayout, err, map[string]any{"releases": w.cfg.Releases.Dir, "binary": w.cfg.Releases.Binary})
	if err != nil {
		return fmt.Errorf("write release layout: %w", err)
	}
	return nil
}
