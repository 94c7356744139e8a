package apt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Repo is a private apt package index kept in Dir: its own sources list,
// lists directory and cache, so it never touches the machine's apt state.
//
//	Dir/sources.sources  the private sources (deb822)
//	Dir/lists/           downloaded indexes
//	Dir/cache/           apt's binary caches
//	Dir/updated          its mtime is the last successful update
type Repo struct {
	Dir string
	// Arch is the Debian architecture apt works for (APT::Architecture),
	// so that another architecture's packages go by their plain names;
	// empty means the host's.
	Arch string
	// Log receives apt's progress output; nil discards it.
	Log io.Writer
}

// WriteSources replaces the private sources list with srcs.
func (r *Repo) WriteSources(srcs []Source, arch string) error {
	for _, d := range []string{r.Dir, filepath.Join(r.Dir, "lists", "partial"), filepath.Join(r.Dir, "cache", "archives", "partial")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create apt dir: %w", err)
		}
	}
	var b bytes.Buffer
	if err := WriteDeb822(&b, srcs, arch); err != nil {
		return fmt.Errorf("write sources: %w", err)
	}
	path := r.sourcesPath()
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b.Bytes()) {
		return nil
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write sources: %w", err)
	}
	// New sources invalidate the lists: make the next Updated say so.
	if err := os.Remove(r.stampPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reset update stamp: %w", err)
	}
	return nil
}

func (r *Repo) sourcesPath() string { return filepath.Join(r.Dir, "sources.sources") }
func (r *Repo) stampPath() string   { return filepath.Join(r.Dir, "updated") }

// options are the apt options that point every tool at the private state
// (and architecture).
func (r *Repo) options() []string {
	opts := []string{
		"-o", "Dir::Etc::SourceList=" + r.sourcesPath(),
		"-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::State::Lists=" + filepath.Join(r.Dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(r.Dir, "cache"),
		// Downloads land in directories the _apt user may not enter.
		"-o", "APT::Sandbox::User=root",
	}
	if r.Arch != "" {
		opts = append(opts, "-o", "APT::Architecture="+r.Arch, "-o", "APT::Architectures="+r.Arch)
	}
	return opts
}

// Updated returns the time of the last successful Update, zero if none.
func (r *Repo) Updated() time.Time {
	fi, err := os.Stat(r.stampPath())
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// HasLists reports whether an index was ever downloaded (it may be stale).
func (r *Repo) HasLists() bool {
	m, _ := filepath.Glob(filepath.Join(r.Dir, "lists", "*_Packages*"))
	return len(m) > 0
}

// Update downloads the package indexes ("apt-get update").
func (r *Repo) Update(ctx context.Context) error {
	args := append(r.options(), "-q", "update")
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Stdout = io.MultiWriter(&out, r.log())
	cmd.Stderr = io.MultiWriter(&out, r.log())
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apt-get update: %w: %s", err, lastLines(out.String(), 5))
	}
	// apt-get update exits 0 when some sources failed; it says so with
	// "W:"/"E:" lines. A partial index could hide a kernel line, so count
	// any fetch error as a failure.
	if s := out.String(); strings.Contains(s, "\nE: ") || strings.Contains(s, "Failed to fetch") {
		return fmt.Errorf("apt-get update: %s", lastLines(s, 5))
	}
	if err := os.WriteFile(r.stampPath(), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return fmt.Errorf("write update stamp: %w", err)
	}
	return nil
}

// Candidate is one available version of a package, as apt-cache madison
// reports it.
type Candidate struct {
	Package string
	Version string
	// Suite is the suite serving it, e.g. "bookworm-security".
	Suite string
}

// Search returns the names of the packages whose name matches the POSIX
// regular expression re ("apt-cache search --names-only").
func (r *Repo) Search(ctx context.Context, re string) ([]string, error) {
	out, err := r.cache(ctx, "search", "--names-only", re)
	if err != nil {
		return nil, err
	}
	var names []string
	for line := range strings.Lines(out) {
		if name, _, ok := strings.Cut(line, " - "); ok {
			names = append(names, strings.TrimSpace(name))
		}
	}
	return names, nil
}

// Madison returns every available version of the named packages.
func (r *Repo) Madison(ctx context.Context, names ...string) ([]Candidate, error) {
	if len(names) == 0 {
		return nil, nil
	}
	out, err := r.cache(ctx, append([]string{"madison"}, names...)...)
	if err != nil {
		return nil, err
	}
	return ParseMadison(out), nil
}

// ParseMadison parses "apt-cache madison" output:
//
//	pkg | version | http://mirror/debian bookworm-security/main amd64 Packages
//
// Source-package lines ("Sources") are skipped.
func ParseMadison(out string) []Candidate {
	var cs []Candidate
	for line := range strings.Lines(out) {
		f := strings.Split(line, "|")
		if len(f) != 3 {
			continue
		}
		src := strings.Fields(f[2])
		if len(src) < 2 || src[len(src)-1] == "Sources" {
			continue
		}
		suite := src[1]
		if i := strings.LastIndexByte(suite, '/'); i >= 0 {
			suite = suite[:i] // drop the component
		}
		cs = append(cs, Candidate{
			Package: strings.TrimSpace(f[0]),
			Version: strings.TrimSpace(f[1]),
			Suite:   suite,
		})
	}
	return cs
}

// Download fetches pkg at version into dir ("apt-get download") and
// returns the path of the .deb.
func (r *Repo) Download(ctx context.Context, dir, pkg, version string) (string, error) {
	tmp, err := os.MkdirTemp(dir, ".download-")
	if err != nil {
		return "", fmt.Errorf("download %s: %w", pkg, err)
	}
	defer os.RemoveAll(tmp)
	args := append(r.options(), "-q", "download", pkg+"="+version)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Dir = tmp
	cmd.Stdout = io.MultiWriter(&out, r.log())
	cmd.Stderr = io.MultiWriter(&out, r.log())
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("download %s=%s: %w: %s", pkg, version, err, lastLines(out.String(), 1))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("download %s=%s: expected one .deb, found %d", pkg, version, len(debs))
	}
	dst := filepath.Join(dir, filepath.Base(debs[0]))
	if err := os.Rename(debs[0], dst); err != nil {
		return "", fmt.Errorf("download %s: %w", pkg, err)
	}
	return dst, nil
}

// cache runs apt-cache with the private options and returns its stdout.
func (r *Repo) cache(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "apt-cache", append(r.options(), args...)...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("apt-cache %s: %w: %s", args[0], err, lastLines(stderr.String(), 3))
	}
	return stdout.String(), nil
}

func (r *Repo) log() io.Writer {
	if r.Log == nil {
		return io.Discard
	}
	return r.Log
}

// lastLines returns the last n non-empty lines of s, joined by "; ".
func lastLines(s string, n int) string {
	var lines []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}
