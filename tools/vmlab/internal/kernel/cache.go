package kernel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/carverauto/fortress/tools/vmlab/internal/apt"
	"github.com/ulikunitz/xz"
)

// Modules are the kernel modules, relative to lib/modules/<release>/, that
// the lab copies into the guest and loads at boot, in load order. The cloud
// kernels build them as modules where a typical host has them loaded: veth
// for test networks, the netlink families (XFRM, netfilter) that netlink
// libraries open a socket for by default, brd's RAM disks (/dev/ram0-15,
// 4 MiB each) for filesystems on a block device, overlayfs (what container
// images are made of), and one spare module with no dependencies that tests
// load themselves.
var Modules = []string{
	"kernel/drivers/net/veth.ko",
	"kernel/net/xfrm/xfrm_algo.ko",
	"kernel/net/xfrm/xfrm_user.ko", // needs xfrm_algo
	"kernel/net/netfilter/nfnetlink.ko",
	"kernel/drivers/block/brd.ko",
	"kernel/fs/overlayfs/overlay.ko",
	"kernel/fs/nls/nls_utf8.ko", // spare: not loaded at boot
}

// Spare reports whether module m (an entry of Modules, or its base name)
// is copied into the guest without being loaded at boot, for tests that
// load a module themselves.
func Spare(m string) bool { return filepath.Base(m) == "nls_utf8.ko" }

// DefaultMaxAge is how long a downloaded package index is used before it is
// refreshed.
const DefaultMaxAge = 24 * time.Hour

// Kernel is one extracted kernel in the cache.
type Kernel struct {
	Line     string    `json:"line"`
	Package  string    `json:"package"`
	Version  string    `json:"version"`
	Release  string    `json:"release"`
	Resolved time.Time `json:"resolved"`
	// Modules are the entries of Modules extracted with the kernel.
	Modules []string `json:"modules"`
	// Dir holds vmlinuz, config and modules/*.ko.
	Dir string `json:"-"`
}

// Vmlinuz is the path of the kernel image.
func (k *Kernel) Vmlinuz() string { return filepath.Join(k.Dir, "vmlinuz") }

// ModuleFiles are the paths of the extracted (uncompressed) modules, in
// load order.
func (k *Kernel) ModuleFiles() []string {
	var out []string
	for _, m := range Modules {
		p := filepath.Join(k.Dir, "modules", filepath.Base(m))
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Cache resolves, downloads and keeps kernels below Dir:
//
//	Dir/apt/                      private apt index (see index)
//	Dir/kernels/<pkg>_<version>/  one extracted kernel
//	Dir/kernels/current-<line>.json  the kernel last resolved for a line
//
// and, through Package, unpacked Debian packages (see packages).
type Cache struct {
	Dir string
	// Arch is the Debian architecture of the kernels (and packages) the
	// cache holds; empty means amd64. Use DirFor to keep architectures
	// apart.
	Arch string
	// EtcApt is the machine's apt configuration directory, read for the
	// Debian mirror URI; normally /etc/apt.
	EtcApt string
	// MaxAge bounds the age of the package index before a refresh.
	MaxAge time.Duration
	// Log receives warnings and progress.
	Log io.Writer
}

// DefaultDir is ${XDG_CACHE_HOME:-$HOME/.cache}/fortress-vmlab.
func DefaultDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find cache dir: %w", err)
	}
	return filepath.Join(base, "fortress-vmlab"), nil
}

// DirFor is the cache directory for architecture a below base: base
// itself for amd64 (where the lab's cache has always been), base/<a> for
// the others.
func DirFor(base, a string) string {
	if a == "" || a == "amd64" {
		return base
	}
	return filepath.Join(base, a)
}

// Get returns the newest kernel of line, downloading it when the cache does
// not have it. The package index is refreshed when older than MaxAge; when
// the refresh fails, a cached kernel is used with a warning.
func (c *Cache) Get(ctx context.Context, line Line) (*Kernel, error) {
	if err := os.MkdirAll(filepath.Join(c.Dir, "kernels"), 0o755); err != nil {
		return nil, fmt.Errorf("create cache: %w", err)
	}
	idx := c.index()
	unlock, err := idx.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()

	cur := c.current(line)
	updated, err := idx.refresh(ctx)
	if err != nil {
		switch {
		case cur != nil:
			idx.logf("warning: %v; using cached kernel %s", err, cur.Release)
			return cur, nil
		case !idx.repo.HasLists():
			return nil, fmt.Errorf("kernel %s: %w", line.Name, err)
		default:
			idx.logf("warning: %v; using the stale package index", err)
		}
	}
	if cur != nil && !cur.Resolved.Before(updated) {
		return cur, nil
	}

	cands, err := c.resolve(ctx, idx.repo, line)
	if err != nil {
		if cur != nil {
			idx.logf("warning: %v; using cached kernel %s", err, cur.Release)
			return cur, nil
		}
		return nil, err
	}
	for _, cand := range cands {
		k, err := c.fetch(ctx, idx, line, cand)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			idx.logf("warning: %v; trying an older package", err)
			continue
		}
		if err := c.setCurrent(line, k); err != nil {
			return nil, err
		}
		return k, nil
	}
	if cur != nil {
		idx.logf("warning: no %s kernel could be downloaded; using cached kernel %s", line.Name, cur.Release)
		return cur, nil
	}
	return nil, fmt.Errorf("kernel %s: no package could be downloaded (%d candidates)", line.Name, len(cands))
}

// resolve lists the line's available packages, newest first.
func (c *Cache) resolve(ctx context.Context, repo *apt.Repo, line Line) ([]apt.Candidate, error) {
	names, err := repo.Search(ctx, line.Pattern)
	if err != nil {
		return nil, fmt.Errorf("resolve kernel %s: %w", line.Name, err)
	}
	all, err := repo.Madison(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("resolve kernel %s: %w", line.Name, err)
	}
	cands := Newest(all, line.Suites)
	if len(cands) == 0 {
		return nil, fmt.Errorf("resolve kernel %s: no package matches %s in %s", line.Name, line.Pattern, strings.Join(line.Suites, ", "))
	}
	return cands, nil
}

// kernelDir is where the candidate is (or will be) extracted.
func (c *Cache) kernelDir(cand apt.Candidate) string {
	return filepath.Join(c.Dir, "kernels", cand.Package+"_"+cand.Version)
}

// fetch returns the cached kernel of cand, downloading and extracting it
// first when needed.
func (c *Cache) fetch(ctx context.Context, idx *index, line Line, cand apt.Candidate) (*Kernel, error) {
	dir := c.kernelDir(cand)
	if k, err := load(dir); err == nil {
		k.Resolved = time.Now()
		return k, nil
	}
	idx.logf("downloading %s %s", cand.Package, cand.Version)
	downloads := filepath.Join(c.Dir, "downloads")
	if err := os.MkdirAll(downloads, 0o755); err != nil {
		return nil, fmt.Errorf("create downloads dir: %w", err)
	}
	deb, err := idx.repo.Download(ctx, downloads, cand.Package, cand.Version)
	if err != nil {
		return nil, err
	}
	defer os.Remove(deb)

	tmp, err := os.MkdirTemp(filepath.Join(c.Dir, "kernels"), ".extract-")
	if err != nil {
		return nil, fmt.Errorf("extract %s: %w", cand.Package, err)
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg-deb -x %s: %w: %s", filepath.Base(deb), err, strings.TrimSpace(string(out)))
	}
	k := &Kernel{Line: line.Name, Package: cand.Package, Version: cand.Version, Resolved: time.Now()}
	if err := extract(root, filepath.Join(tmp, "kernel"), k); err != nil {
		return nil, fmt.Errorf("extract %s: %w", cand.Package, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("replace %s: %w", dir, err)
	}
	if err := os.Rename(filepath.Join(tmp, "kernel"), dir); err != nil {
		return nil, fmt.Errorf("store kernel: %w", err)
	}
	k.Dir = dir
	return k, nil
}

// extract copies the kernel image, its config and the lab's modules from an
// unpacked package at root into dst and fills in k.Release.
func extract(root, dst string, k *Kernel) error {
	images, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return fmt.Errorf("expected one boot/vmlinuz-*, found %d", len(images))
	}
	k.Release = strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	if err := os.MkdirAll(filepath.Join(dst, "modules"), 0o755); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(dst, "vmlinuz"), images[0]); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(dst, "config"), filepath.Join(root, "boot", "config-"+k.Release)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// Newer packages install modules under usr/lib (merged /usr).
	for _, m := range Modules {
		if err := extractModule(root, k.Release, m, filepath.Join(dst, "modules", filepath.Base(m))); err != nil {
			return err
		}
	}
	k.Modules = slices.Clone(Modules)
	meta, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dst, "kernel.json"), append(meta, '\n'), 0o644)
}

// extractModule finds module m (plain or .xz-compressed, under lib/ or
// usr/lib/) and writes it uncompressed to dst: busybox insmod cannot load a
// compressed module.
func extractModule(root, release, m, dst string) error {
	for _, lib := range []string{"lib", "usr/lib"} {
		base := filepath.Join(root, lib, "modules", release, m)
		for _, ext := range []string{"", ".xz"} {
			f, err := os.Open(base + ext)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			defer f.Close()
			var r io.Reader = f
			if ext == ".xz" {
				if r, err = xz.NewReader(f); err != nil {
					return fmt.Errorf("decompress %s: %w", m, err)
				}
			}
			return writeFile(dst, r)
		}
	}
	return fmt.Errorf("module %s not in the package", m)
}

func copyFile(dst, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return writeFile(dst, f)
}

func writeFile(dst string, r io.Reader) error {
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(dst), err)
	}
	return out.Close()
}

// load reads an extracted kernel's metadata and checks that its image and
// every module in Modules are there; a kernel extracted when the list was
// shorter is not.
func load(dir string) (*Kernel, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kernel.json"))
	if err != nil {
		return nil, err
	}
	var k Kernel
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	k.Dir = dir
	if _, err := os.Stat(k.Vmlinuz()); err != nil {
		return nil, err
	}
	for _, m := range Modules {
		if !slices.Contains(k.Modules, m) {
			return nil, fmt.Errorf("read %s: module %s not extracted", dir, m)
		}
	}
	return &k, nil
}

func (c *Cache) currentPath(line Line) string {
	return filepath.Join(c.Dir, "kernels", "current-"+line.Name+".json")
}

// current returns the kernel last resolved for line, nil if none is cached.
func (c *Cache) current(line Line) *Kernel {
	b, err := os.ReadFile(c.currentPath(line))
	if err != nil {
		return nil
	}
	var ptr struct {
		Dir      string    `json:"dir"`
		Resolved time.Time `json:"resolved"`
	}
	if json.Unmarshal(b, &ptr) != nil {
		return nil
	}
	k, err := load(filepath.Join(c.Dir, "kernels", ptr.Dir))
	if err != nil {
		return nil
	}
	k.Resolved = ptr.Resolved
	return k
}

// setCurrent records k as line's current kernel, resolved now.
func (c *Cache) setCurrent(line Line, k *Kernel) error {
	b, err := json.Marshal(map[string]any{"dir": filepath.Base(k.Dir), "resolved": k.Resolved})
	if err != nil {
		return err
	}
	tmp := c.currentPath(line) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("record current kernel: %w", err)
	}
	if err := os.Rename(tmp, c.currentPath(line)); err != nil {
		return fmt.Errorf("record current kernel: %w", err)
	}
	return nil
}
