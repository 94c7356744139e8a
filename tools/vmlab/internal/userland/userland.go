package userland

import (
	"bufio"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/carverauto/fortress/tools/vmlab/internal/arch"
)

// Tool is one guest program taken from a Debian package.
type Tool struct {
	// Package is the Debian package holding it.
	Package string
	// Paths are where the package may hold it, first match wins (Debian
	// moves files from /bin to /usr/bin between releases).
	Paths []string
	// Dest is its path in the guest.
	Dest string
}

// Tools are the guest programs. /bin/sh is dash, not busybox's shell:
// Debian builds busybox with FEATURE_SH_STANDALONE, whose shell runs its
// own applets before any program in PATH, so "ip" in a script would never
// reach iproute2.
var Tools = []Tool{
	{Package: "busybox-static", Paths: []string{"bin/busybox", "usr/bin/busybox"}, Dest: "/bin/busybox"},
	{Package: "dash", Paths: []string{"bin/dash", "usr/bin/dash"}, Dest: "/bin/sh"},
	{Package: "iproute2", Paths: []string{"bin/ip", "usr/bin/ip", "sbin/ip", "usr/sbin/ip"}, Dest: "/usr/sbin/ip"},
	{Package: "bpftool", Paths: []string{"usr/sbin/bpftool", "sbin/bpftool"}, Dest: "/usr/sbin/bpftool"},
}

// loaderPackage holds the dynamic loader and the C library.
const loaderPackage = "libc6"

// File is one file of the guest: its guest path and the host file with
// its contents (symbolic links already followed).
type File struct {
	Dest, Src string
}

// Fetch returns the directory of the unpacked Debian package name, of the
// guest's architecture.
type Fetch func(ctx context.Context, name string) (dir string, err error)

// Providers returns the Debian packages that hold a shared library named
// soname (on the host, for the host's architecture: the packages are
// multi-arch, so the guest's architecture has packages of the same name).
type Providers func(ctx context.Context, soname string) ([]string, error)

// machines are the ELF machines of the guest architectures.
var machines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// Assemble returns the guest files for a: each of tools (normally Tools)
// at its Dest, then the libraries and the loader they need, at their paths
// in the packages. It fetches the tools' packages and libc6, and then the
// packages that providers names for each library not found yet.
func Assemble(ctx context.Context, a arch.Arch, tools []Tool, fetch Fetch, providers Providers) ([]File, error) {
	machine, ok := machines[a.Name]
	if !ok {
		return nil, fmt.Errorf("userland: no ELF machine known for %s", a.Name)
	}
	r := &resolver{arch: a, machine: machine, fetch: fetch, providers: providers, fetched: map[string]bool{}}
	var files []File
	for _, t := range tools {
		if err := r.add(ctx, t.Package); err != nil {
			return nil, err
		}
		src, err := r.find(t.Paths)
		if err != nil {
			return nil, fmt.Errorf("userland: %s: %w", t.Package, err)
		}
		files = append(files, File{Dest: t.Dest, Src: src})
	}
	if err := r.add(ctx, loaderPackage); err != nil {
		return nil, err
	}
	libs, err := r.closure(ctx, files)
	if err != nil {
		return nil, err
	}
	return append(files, libs...), nil
}

type resolver struct {
	arch      arch.Arch
	machine   elf.Machine
	fetch     Fetch
	providers Providers
	roots     []string // unpacked packages, in fetch order
	fetched   map[string]bool
}

func (r *resolver) add(ctx context.Context, pkg string) error {
	if r.fetched[pkg] {
		return nil
	}
	r.fetched[pkg] = true
	dir, err := r.fetch(ctx, pkg)
	if err != nil {
		return fmt.Errorf("userland: fetch %s:%s: %w", pkg, r.arch.Name, err)
	}
	r.roots = append(r.roots, dir)
	return nil
}

// find returns the host path of the first of rels (paths relative to a
// package root) that some package holds.
func (r *resolver) find(rels []string) (string, error) {
	for _, rel := range rels {
		for _, root := range r.roots {
			if p, err := Resolve(root, rel); err == nil {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("none of %s in the packages", strings.Join(rels, ", "))
}

// libDirs are where the loader looks for libraries without an
// ld.so.cache (Debian's multiarch directories first).
func (r *resolver) libDirs() []string {
	t := r.arch.Triplet
	return []string{"lib/" + t, "usr/lib/" + t, "lib", "usr/lib"}
}

// closure follows the ELF dependencies of files and returns the libraries
// and loaders they need, each once: a library that is the loader (libc
// names the loader by its soname) is not copied again, since the loader
// satisfies it.
func (r *resolver) closure(ctx context.Context, files []File) ([]File, error) {
	var out []File
	have := map[string]bool{} // guest paths and host files taken
	for _, f := range files {
		have[f.Dest], have[f.Src] = true, true
	}
	queue := slices.Clone(files)
	for len(queue) > 0 {
		f := queue[0]
		queue = queue[1:]
		deps, err := Needs(f.Src, r.machine)
		if err != nil {
			return nil, fmt.Errorf("userland: %s: %w", f.Dest, err)
		}
		if deps.Interp != "" && !have[deps.Interp] {
			rel := strings.TrimPrefix(deps.Interp, "/")
			src, err := r.find([]string{rel, "usr/" + rel})
			if err != nil {
				return nil, fmt.Errorf("userland: loader %s of %s: %w", deps.Interp, f.Dest, err)
			}
			have[deps.Interp], have[src] = true, true
			lib := File{Dest: deps.Interp, Src: src}
			out = append(out, lib)
			queue = append(queue, lib)
		}
		for _, soname := range deps.Libraries {
			dest, src, err := r.library(ctx, soname)
			if err != nil {
				return nil, fmt.Errorf("userland: %s needs %s: %w", f.Dest, soname, err)
			}
			if have[dest] || have[src] {
				continue
			}
			have[dest], have[src] = true, true
			lib := File{Dest: dest, Src: src}
			out = append(out, lib)
			queue = append(queue, lib)
		}
	}
	return out, nil
}

// library finds soname in the packages fetched so far, fetching the
// packages that provide it when none has it.
func (r *resolver) library(ctx context.Context, soname string) (dest, src string, err error) {
	if strings.Contains(soname, "/") {
		return "", "", fmt.Errorf("library names a path")
	}
	lookup := func() (string, string, bool) {
		for _, dir := range r.libDirs() {
			rel := path.Join(dir, soname)
			for _, root := range r.roots {
				if p, err := Resolve(root, rel); err == nil {
					return "/" + rel, p, true
				}
			}
		}
		return "", "", false
	}
	if d, s, ok := lookup(); ok {
		return d, s, nil
	}
	pkgs, err := r.providers(ctx, soname)
	if err != nil {
		return "", "", err
	}
	if len(pkgs) == 0 {
		return "", "", errors.New("no package provides it")
	}
	for _, p := range pkgs {
		if err := r.add(ctx, p); err != nil {
			return "", "", err
		}
	}
	if d, s, ok := lookup(); ok {
		return d, s, nil
	}
	return "", "", fmt.Errorf("not in %s:%s", strings.Join(pkgs, ", "), r.arch.Name)
}

// Deps are what an ELF file needs at run time.
type Deps struct {
	// Interp is the dynamic loader's path; empty for a static binary and
	// for libraries.
	Interp string
	// Libraries are the DT_NEEDED names.
	Libraries []string
}

// Needs reads the dependencies of the ELF file at p, which must be built
// for machine.
func Needs(p string, machine elf.Machine) (Deps, error) {
	f, err := elf.Open(p)
	if err != nil {
		return Deps{}, err
	}
	defer f.Close()
	if f.Machine != machine {
		return Deps{}, fmt.Errorf("built for %v, not %v", f.Machine, machine)
	}
	var d Deps
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			return Deps{}, fmt.Errorf("read interpreter: %w", err)
		}
		d.Interp = strings.TrimRight(string(b), "\x00")
	}
	libs, err := f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return Deps{}, fmt.Errorf("read needed libraries: %w", err)
	}
	d.Libraries = libs
	return d, nil
}

// maxLinks bounds symbolic-link hops, as the kernel's ELOOP limit does.
const maxLinks = 40

// Resolve returns the host path of the regular file at rel inside the
// unpacked package root, following symbolic links as the guest would
// (absolute targets from root), never outside root.
func Resolve(root, rel string) (string, error) {
	todo := strings.Split(strings.Trim(path.Clean("/"+rel), "/"), "/")
	var done []string // resolved components, relative to root
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		p := filepath.Join(root, filepath.Join(done...), c)
		fi, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		if hops++; hops > maxLinks {
			return "", fmt.Errorf("resolve %s: too many symbolic links", rel)
		}
		target, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			done = nil
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	p := filepath.Join(root, filepath.Join(done...))
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("resolve %s: not a regular file", rel)
	}
	return p, nil
}

// HostProviders asks the host's package database which of its packages
// hold soname in its own multiarch directory (triplet); Debian's library
// packages are multi-arch, so the same names serve the guest.
func HostProviders(triplet string) Providers {
	return func(ctx context.Context, soname string) ([]string, error) {
		out, err := exec.CommandContext(ctx, "dpkg-query", "-S", "*/"+soname).Output()
		if err != nil {
			return nil, fmt.Errorf("no host package holds %s (dpkg-query -S: %v); install the host package of the same tool", soname, err)
		}
		return ParseDpkgSearch(string(out), triplet), nil
	}
}

// ParseDpkgSearch reads "dpkg-query -S" output ("pkg[:arch][, pkg...]:
// path" per line) and returns the packages holding a path in one of the
// multiarch library directories of triplet, each once.
func ParseDpkgSearch(out, triplet string) []string {
	var pkgs []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "diversion by") {
			continue
		}
		names, p, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		dir := path.Dir(strings.TrimSpace(p))
		if dir != "/lib/"+triplet && dir != "/usr/lib/"+triplet {
			continue
		}
		for n := range strings.SplitSeq(names, ",") {
			n, _, _ = strings.Cut(strings.TrimSpace(n), ":")
			if n != "" && !slices.Contains(pkgs, n) {
				pkgs = append(pkgs, n)
			}
		}
	}
	return pkgs
}
