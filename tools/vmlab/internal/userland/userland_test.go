package userland

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/carverauto/fortress/tools/vmlab/internal/arch"
)

// tree lays out files (contents) and symbolic links ("-> target") below a
// temporary root.
func tree(t *testing.T, entries map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for rel, v := range entries {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(v, "-> "); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestResolve(t *testing.T) {
	root := tree(t, map[string]string{
		"lib/aarch64-linux-gnu/ld-linux-aarch64.so.1": "loader",
		"lib/ld-linux-aarch64.so.1":                   "-> aarch64-linux-gnu/ld-linux-aarch64.so.1",
		"lib/aarch64-linux-gnu/libz.so.1.2.13":        "zlib",
		"lib/aarch64-linux-gnu/libz.so.1":             "-> libz.so.1.2.13",
		"usr/lib/aarch64-linux-gnu/libabs.so.1":       "-> /lib/aarch64-linux-gnu/libz.so.1",
		"usr/lib/aarch64-linux-gnu/libup.so.1":        "-> ../../../lib/aarch64-linux-gnu/libz.so.1",
		"bin/escape":                                  "-> /etc/passwd",
		"bin/escape2":                                 "-> ../../../../../../etc/passwd",
		"bin/loop":                                    "-> loop",
		"bin/dir":                                     "-> /lib",
	})
	for rel, want := range map[string]string{
		"lib/ld-linux-aarch64.so.1":              "loader",
		"/lib/ld-linux-aarch64.so.1":             "loader",
		"lib/aarch64-linux-gnu/libz.so.1":        "zlib",
		"usr/lib/aarch64-linux-gnu/libabs.so.1":  "zlib",
		"usr/lib/aarch64-linux-gnu/libup.so.1":   "zlib",
		"bin/dir/aarch64-linux-gnu/libz.so.1":    "zlib",
		"bin/../lib/aarch64-linux-gnu/libz.so.1": "zlib",
	} {
		p, err := Resolve(root, rel)
		if err != nil {
			t.Errorf("Resolve(%s): %v", rel, err)
			continue
		}
		if !strings.HasPrefix(p, root+"/") {
			t.Errorf("Resolve(%s) = %s, outside the root", rel, p)
		}
		if b, _ := os.ReadFile(p); string(b) != want {
			t.Errorf("Resolve(%s) reads %q, want %q", rel, b, want)
		}
	}
	// Links that lead out of the root resolve inside it, where the host's
	// file is not; loops and directories are errors.
	for _, rel := range []string{"bin/escape", "bin/escape2", "bin/loop", "bin/dir", "lib/missing.so"} {
		if p, err := Resolve(root, rel); err == nil {
			t.Errorf("Resolve(%s) = %s, want an error", rel, p)
		}
	}
}

func TestParseDpkgSearch(t *testing.T) {
	out := `libbpf1:amd64: /usr/lib/x86_64-linux-gnu/libbpf.so.1
lib32z1: /usr/lib32/libz.so.1
zlib1g:amd64: /lib/x86_64-linux-gnu/libz.so.1
libc6:amd64, libc6:i386: /lib/x86_64-linux-gnu/libc.so.6
diversion by foo from: /lib/x86_64-linux-gnu/libz.so.1
libc6:amd64: /usr/share/doc/libc.so.6
libbpf1:amd64: /usr/lib/x86_64-linux-gnu/libbpf.so.1.1.0
`
	got := ParseDpkgSearch(out, "x86_64-linux-gnu")
	if want := []string{"libbpf1", "zlib1g", "libc6"}; !slices.Equal(got, want) {
		t.Errorf("ParseDpkgSearch = %q, want %q", got, want)
	}
	if got := ParseDpkgSearch(out, "aarch64-linux-gnu"); len(got) != 0 {
		t.Errorf("other triplet: %q", got)
	}
}

// hostPackages lays out fake packages from the host's dash, C library and
// loader, as Debian's amd64 packages hold them: "dash" (bin/dash),
// "libc6" (the loader, and a link to it from lib64) and "libcx" (libc).
func hostPackages(t *testing.T) map[string]string {
	t.Helper()
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Skipf("host file: %v", err)
		}
		return string(b)
	}
	return map[string]string{
		"dash": tree(t, map[string]string{"bin/dash": read("/bin/dash")}),
		"libc6": tree(t, map[string]string{
			"lib/x86_64-linux-gnu/ld-linux-x86-64.so.2": read("/lib64/ld-linux-x86-64.so.2"),
			"lib64/ld-linux-x86-64.so.2":                "-> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		}),
		"libcx": tree(t, map[string]string{"usr/lib/x86_64-linux-gnu/libc.so.6": read("/lib/x86_64-linux-gnu/libc.so.6")}),
	}
}

func TestAssemble(t *testing.T) {
	pkgs := hostPackages(t)
	var fetched []string
	fetch := func(_ context.Context, name string) (string, error) {
		fetched = append(fetched, name)
		if d, ok := pkgs[name]; ok {
			return d, nil
		}
		return "", errors.New("no such package")
	}
	var asked []string
	providers := func(_ context.Context, soname string) ([]string, error) {
		asked = append(asked, soname)
		if soname == "libc.so.6" {
			return []string{"libcx"}, nil
		}
		return nil, nil
	}
	tools := []Tool{{Package: "dash", Paths: []string{"usr/bin/dash", "bin/dash"}, Dest: "/bin/sh"}}
	files, err := Assemble(context.Background(), arch.AMD64, tools, fetch, providers)
	if err != nil {
		t.Fatal(err)
	}
	var dests []string
	for _, f := range files {
		dests = append(dests, f.Dest)
		if _, err := os.Stat(f.Src); err != nil {
			t.Errorf("%s: %v", f.Dest, err)
		}
	}
	want := []string{"/bin/sh", "/lib64/ld-linux-x86-64.so.2", "/usr/lib/x86_64-linux-gnu/libc.so.6"}
	if !slices.Equal(dests, want) {
		t.Errorf("files = %q, want %q", dests, want)
	}
	if !slices.Equal(fetched, []string{"dash", "libc6", "libcx"}) {
		t.Errorf("fetched %q", fetched)
	}
	if !slices.Equal(asked, []string{"libc.so.6"}) {
		t.Errorf("asked providers for %q", asked)
	}
	if files[1].Src != filepath.Join(pkgs["libc6"], "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2") {
		t.Errorf("loader from %s, want the link followed inside its package", files[1].Src)
	}

	// Binaries of another architecture are refused, as are libraries no
	// package provides.
	if _, err := Assemble(context.Background(), arch.ARM64, tools, fetch, providers); err == nil || !strings.Contains(err.Error(), "EM_X86_64") {
		t.Errorf("x86 dash for arm64: %v", err)
	}
	delete(pkgs, "libcx")
	fetched = nil
	if _, err := Assemble(context.Background(), arch.AMD64, tools, fetch, providers); err == nil || !strings.Contains(err.Error(), "libcx") {
		t.Errorf("missing libc package: %v", err)
	}
	none := func(context.Context, string) ([]string, error) { return nil, nil }
	if _, err := Assemble(context.Background(), arch.AMD64, tools, fetch, none); err == nil || !strings.Contains(err.Error(), "no package provides it") {
		t.Errorf("no provider: %v", err)
	}
}
