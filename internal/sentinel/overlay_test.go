package sentinel

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/testutil"
)

func TestParseMountInfo(t *testing.T) {
	in := `22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
95 22 0:52 / /var/lib/docker/overlay2/abc/merged rw,relatime - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,upperdir=/var/lib/docker/overlay2/abc/diff,workdir=/var/lib/docker/overlay2/abc/work
96 22 0:52 /etc/serviceradar /etc/serviceradar rw,relatime shared:5 master:2 - overlay overlay rw,lowerdir=/l\0401:/l2,upperdir=/u,workdir=/w
`
	ms, err := parseMountInfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[2].root != "/etc/serviceradar" || ms[2].fsType != "overlay" || ms[0].fsType != "ext4" {
		t.Fatalf("parsed %+v", ms)
	}
	m, rel, ok := mountOf(ms, "/etc/serviceradar/sweep.json")
	if !ok || m.mountPoint != "/etc/serviceradar" || rel != "/etc/serviceradar/sweep.json" {
		t.Fatalf("bind-mounted overlay subdir: %+v %q %v", m, rel, ok)
	}
	m, rel, _ = mountOf(ms, "/etc/serviceradarX/a")
	if m.fsType != "ext4" || rel != "/etc/serviceradarX/a" {
		t.Fatalf("a sibling with a longer name is not under the mount: %+v %q", m, rel)
	}
	m, rel, _ = mountOf(ms, "/var/lib/docker/overlay2/abc/merged/usr/bin/x")
	if m.fsType != "overlay" || rel != "/usr/bin/x" {
		t.Fatalf("container root: %+v %q", m, rel)
	}
	layers, err := parseOverlayOpts(ms[2].superOpts)
	if err != nil {
		t.Fatal(err)
	}
	want := overlayLayers{upper: "/u", work: "/w", lowers: []string{"/l 1", "/l2"}}
	if !reflect.DeepEqual(layers, want) {
		t.Fatalf("layers %+v, want %+v", layers, want)
	}
	if _, err := parseMountInfo(strings.NewReader("1 2 3\n")); err == nil {
		t.Fatal("a malformed line parsed")
	}
}

func TestParseOverlayOpts(t *testing.T) {
	for _, c := range []struct {
		opts string
		want overlayLayers
		err  string
	}{
		{opts: `rw,lowerdir=/a\:b:/c,upperdir=/u\,x,workdir=/w`, want: overlayLayers{upper: "/u,x", work: "/w", lowers: []string{"/a:b", "/c"}}},
		{opts: "ro,lowerdir=/a::/data", want: overlayLayers{lowers: []string{"/a", "/data"}}},
		{opts: "rw,lowerdir+=/a,lowerdir+=/b,datadir+=/d,upperdir=/u,workdir=/w", want: overlayLayers{upper: "/u", work: "/w", lowers: []string{"/a", "/b", "/d"}}},
		{opts: "rw,upperdir=/u,workdir=/w", err: "no lower layer"},
		{opts: "rw,lowerdir=/a,upperdir=/u", err: "without a work dir"},
		{opts: "rw,lowerdir=a", err: "not an absolute path"},
	} {
		got, err := parseOverlayOpts(c.opts)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.opts, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v %v, want %+v", c.opts, got, err, c.want)
		}
	}
}

// TestProtectLayers builds a policy for a config directory on a real
// overlay mount (in a private mount namespace) and checks what it protects
// in each layer.
func TestProtectLayers(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	lower1, lower2 := filepath.Join(dir, "lower1"), filepath.Join(dir, "lower2")
	upper, work, merged := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	cfg := filepath.Join(dir, "cfg")
	for _, d := range []string{filepath.Join(lower1, "etc"), filepath.Join(lower2, "etc/serviceradar"), upper, work, merged, cfg} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(filepath.Join(lower2, "etc/serviceradar/sweep.json"), []byte("{}"), 0o644))
	link2 := filepath.Join(dir, "l2")
	must(t, os.Symlink("lower2", link2))
	errc := make(chan error, 1)
	var entries map[Inode]Entry
	var stack overlayStack
	stat := map[string]Inode{}
	go func() {
		// The thread stays locked and dies with the goroutine: its mount
		// namespace is never seen by another goroutine.
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return err
			}
			// lower2 is named through a link, as Docker names its
			// lower layers (overlay2/l/ID -> ../ID/diff).
			opts := fmt.Sprintf("lowerdir=%s:%s,upperdir=%s,workdir=%s", lower1, link2, upper, work)
			if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
				return fmt.Errorf("mount overlay: %w", err)
			}
			if err := unix.Mount(filepath.Join(merged, "etc/serviceradar"), cfg, "", unix.MS_BIND, ""); err != nil {
				return err
			}
			p := newPolicy()
			if err := p.protectTree(cfg, RoleAgent); err != nil {
				return err
			}
			st, ok, err := stackOf(cfg)
			if err != nil || !ok || st.root {
				return fmt.Errorf("stack of the config dir: %+v %v %v", st, ok, err)
			}
			if root, _, _ := stackOf(merged); !root.root || root.key != st.key {
				return fmt.Errorf("the overlay's root is not its root: %+v", root)
			}
			stack = st
			entries = map[Inode]Entry{}
			for _, e := range p.Entries() {
				entries[e.Inode] = e
			}
			for _, path := range []string{
				lower1, filepath.Join(lower1, "etc"), lower2, filepath.Join(lower2, "etc/serviceradar"),
				filepath.Join(lower2, "etc/serviceradar/sweep.json"), upper, filepath.Join(upper, "etc/serviceradar"), work,
				filepath.Join(cfg, "sweep.json"), link2,
			} {
				st, err := lstat(path)
				if err != nil {
					return err
				}
				stat[path] = inodeOf(st)
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path  string
		flags uint32
		allow Role
	}{
		{filepath.Join(cfg, "sweep.json"), flagProtected, RoleAgent},                           // the merged view
		{filepath.Join(lower2, "etc/serviceradar/sweep.json"), flagProtected, RoleAgent},       // not copied up
		{filepath.Join(lower2, "etc/serviceradar"), flagProtected | flagChildren, RoleAgent},   // the tree in its layer
		{filepath.Join(lower1, "etc"), flagProtected | flagAncestor | flagChildren, RoleAgent}, // would take a shadowing dir
		{lower1, flagProtected | flagAncestor, RoleAgent},
		{filepath.Join(upper, "etc/serviceradar"), flagProtected | flagChildren, RoleAgent}, // copied up by the policy build
		{upper, flagProtected | flagAncestor, 0},
		{work, flagProtected | flagAncestor, 0},
		{link2, flagProtected, 0}, // keeps leading to lower2
	} {
		e, ok := entries[stat[c.path]]
		if !ok {
			t.Errorf("%s: not in the policy", c.path)
			continue
		}
		if e.Flags&c.flags != c.flags || e.Allow != c.allow {
			t.Errorf("%s: flags %#x allow %v, want flags %#x allow %v", c.path, e.Flags, e.Allow, c.flags, c.allow)
		}
	}
	// The stack names upper, lower1, lower2 by their directories, all on
	// one filesystem.
	if stack.key.Layers != 3 || stack.key.Layer[0] != key(stat[upper]) || stack.key.Layer[1] != key(stat[lower1]) ||
		stack.key.Layer[2] != key(stat[lower2]) || stack.key.Layer[3] != (sentinelSentinelInode{}) || stack.backing != stat[upper].Dev {
		t.Errorf("stack %+v", stack)
	}
	if e := entries[stat[filepath.Join(lower2, "etc/serviceradar/sweep.json")]]; e.Flags&flagChildren != 0 {
		t.Errorf("a file got flagChildren")
	}
}
