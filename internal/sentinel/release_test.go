package sentinel

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// srLayout builds ServiceRadar's release layout under a temporary dir:
// versions/1.0.0 and versions/2.0.0 with the agent binary, current -> 2.0.0.
func srLayout(t *testing.T) Releases {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "agent")
	for _, v := range []string{"1.0.0", "2.0.0"} {
		must(t, os.MkdirAll(filepath.Join(dir, ReleaseVersions, v), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, ReleaseVersions, v, "serviceradar-agent"), []byte(v), 0o755))
	}
	// A version being installed (no binary yet) and a stray file.
	must(t, os.MkdirAll(filepath.Join(dir, ReleaseVersions, ".staging-3.0.0"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, ReleaseVersions, "manifest.json"), []byte("{}"), 0o644))
	must(t, os.Symlink(filepath.Join(ReleaseVersions, "2.0.0"), filepath.Join(dir, ReleaseCurrent)))
	return Releases{Dir: dir, Binary: "serviceradar-agent"}
}

func TestReleasesValidate(t *testing.T) {
	good := srLayout(t)
	if err := good.validate(); err != nil {
		t.Fatalf("valid layout refused: %v", err)
	}
	if err := (Releases{}).validate(); err != nil {
		t.Errorf("no layout refused: %v", err)
	}
	outside := t.TempDir()
	bad := []struct {
		name  string
		r     func() Releases
		wants string
	}{
		{"relative dir", func() Releases { return Releases{Dir: "agent", Binary: "a"} }, "clean absolute"},
		{"unclean dir", func() Releases { return Releases{Dir: good.Dir + "/", Binary: "a"} }, "clean absolute"},
		{"binary with slash", func() Releases { r := good; r.Binary = "bin/agent"; return r }, "not a file name"},
		{"binary dot dot", func() Releases { r := good; r.Binary = ".."; return r }, "not a file name"},
		{"binary too long", func() Releases { r := good; r.Binary = strings.Repeat("a", 64); return r }, "longer than 63"},
		{"relative seed", func() Releases { r := good; r.Seed = "seed"; return r }, "seed"},
		{"no versions", func() Releases { return Releases{Dir: outside, Binary: "a"} }, "versions"},
		{"versions a file", func() Releases {
			d := t.TempDir()
			must(t, os.WriteFile(filepath.Join(d, ReleaseVersions), nil, 0o644))
			return Releases{Dir: d, Binary: "a"}
		}, "not a directory"},
		{"current a directory", func() Releases {
			d := t.TempDir()
			must(t, os.MkdirAll(filepath.Join(d, ReleaseVersions), 0o755))
			must(t, os.MkdirAll(filepath.Join(d, ReleaseCurrent), 0o755))
			return Releases{Dir: d, Binary: "a"}
		}, "not a symlink"},
		{"current leads outside", func() Releases {
			d := t.TempDir()
			must(t, os.MkdirAll(filepath.Join(d, ReleaseVersions), 0o755))
			must(t, os.Symlink(outside, filepath.Join(d, ReleaseCurrent)))
			return Releases{Dir: d, Binary: "a"}
		}, "not to a version"},
		{"current dangling", func() Releases {
			d := t.TempDir()
			must(t, os.MkdirAll(filepath.Join(d, ReleaseVersions), 0o755))
			must(t, os.Symlink(filepath.Join(ReleaseVersions, "9"), filepath.Join(d, ReleaseCurrent)))
			return Releases{Dir: d, Binary: "a"}
		}, "resolve"},
	}
	for _, c := range bad {
		err := c.r().validate()
		if err == nil || !errors.Is(err, errReleaseLayout) || !strings.Contains(err.Error(), c.wants) {
			t.Errorf("%s: %v, want a release layout error naming %q", c.name, err, c.wants)
		}
	}
}

func TestReleasesPolicy(t *testing.T) {
	r := srLayout(t)
	seed := filepath.Join(t.TempDir(), "serviceradar-agent-seed")
	must(t, os.WriteFile(seed, []byte("seed"), 0o755))
	r.Seed = seed
	bins, err := r.binaries()
	must(t, err)
	want := []string{seed, filepath.Join(r.Dir, ReleaseVersions, "1.0.0", "serviceradar-agent"),
		filepath.Join(r.Dir, ReleaseVersions, "2.0.0", "serviceradar-agent")}
	if !slices.Equal(bins, want) {
		t.Errorf("binaries %v, want %v", bins, want)
	}
	p := newPolicy()
	must(t, p.protectReleases(r))
	entry := func(path string) Entry {
		t.Helper()
		st, err := lstat(path)
		must(t, err)
		e, ok := p.entries[inodeOf(st)]
		if !ok {
			t.Fatalf("%s not in the policy", path)
		}
		return *e
	}
	dirFlags := flagProtected | flagChildren | flagInherit
	for _, c := range []struct {
		path  string
		flags uint32
		allow Role
	}{
		{r.Dir, dirFlags, RoleUpdater},
		{filepath.Join(r.Dir, ReleaseVersions), dirFlags | flagReleases, RoleUpdater},
		{filepath.Join(r.Dir, ReleaseVersions, "1.0.0"), dirFlags, RoleUpdater},
		{filepath.Join(r.Dir, ReleaseVersions, ".staging-3.0.0"), dirFlags, RoleUpdater},
		{filepath.Join(r.Dir, ReleaseVersions, "manifest.json"), flagProtected, RoleUpdater},
		{filepath.Join(r.Dir, ReleaseCurrent), flagProtected, RoleUpdater}, // the symlink itself
		{want[1], flagProtected | flagAgentBinary, RoleUpdater},
		{want[2], flagProtected | flagAgentBinary, RoleUpdater},
		{seed, flagProtected | flagAgentBinary, 0},
	} {
		e := entry(c.path)
		if e.Flags&^flagAncestor != c.flags || e.Allow != c.allow {
			t.Errorf("%s: flags %#x allow %d, want %#x allow %d", c.path, e.Flags, e.Allow, c.flags, c.allow)
		}
	}
	// The current symlink is also an ancestor of the running agent's path;
	// the updater may still swap it.
	agent := filepath.Join(r.Dir, ReleaseCurrent, "serviceradar-agent")
	must(t, p.protectFile(agent, flagAgentBinary, RoleUpdater))
	if e := entry(filepath.Join(r.Dir, ReleaseCurrent)); e.Flags != flagProtected|flagAncestor || e.Allow != RoleUpdater {
		t.Errorf("current after the agent path: flags %#x allow %d, want protected ancestor for the updater", e.Flags, e.Allow)
	}
	var st unix.Stat_t
	must(t, unix.Stat(agent, &st))
	if e := p.entries[inodeOf(&st)]; e == nil || e.Path != want[2] && e.Path != agent {
		t.Errorf("agent path through current does not resolve to version 2.0.0's binary: %+v", e)
	}
}

func TestReleasesLayoutValue(t *testing.T) {
	v := Releases{Dir: "/x", Binary: "serviceradar-agent"}.layout()
	var got []byte
	for _, c := range v.Binary {
		if c == 0 {
			break
		}
		got = append(got, byte(c))
	}
	if string(got) != "serviceradar-agent" || v.Binary[len("serviceradar-agent")] != 0 {
		t.Errorf("layout binary %q", got)
	}
	if z := (Releases{Binary: "serviceradar-agent"}).layout(); z.Binary[0] != 0 {
		t.Errorf("no release dir must leave the kernel's layout empty")
	}
}
