package kernel

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/carverauto/fortress/tools/vmlab/internal/apt"
	"github.com/ulikunitz/xz"
)

func TestNewest(t *testing.T) {
	cands := apt.ParseMadison(`linux-image-5.10.0-9-cloud-amd64-unsigned | 5.10.70-1 | http://m/debian bullseye/main amd64 Packages
linux-image-5.10.0-32-cloud-amd64-unsigned | 5.10.223-1 | http://m/debian bullseye/main amd64 Packages
linux-image-5.10.0-46-cloud-amd64-unsigned | 5.10.262-1 | http://m/debian-security bullseye-security/main amd64 Packages
linux-image-5.10.0-43-cloud-amd64-unsigned | 5.10.251-5 | http://m/debian-security bullseye-security/main amd64 Packages
linux-image-5.10.0-46-cloud-amd64-unsigned | 5.10.262-1 | http://m/debian-security bullseye-security/main amd64 Packages
linux-image-5.10.0-99-cloud-amd64-unsigned | 5.10.999-1 | http://m/debian sid/main amd64 Packages
`)
	line, err := LookupLine("5.10")
	if err != nil {
		t.Fatal(err)
	}
	got := Newest(cands, line.Suites)
	var order []string
	for _, c := range got {
		order = append(order, c.Version)
	}
	want := []string{"5.10.262-1", "5.10.251-5", "5.10.223-1", "5.10.70-1"}
	if !slices.Equal(order, want) {
		t.Errorf("Newest order = %q, want %q (sid filtered out, duplicate dropped)", order, want)
	}
}

func TestNewestComparesABIWhenVersionsTie(t *testing.T) {
	cands := []apt.Candidate{
		{Package: "linux-image-5.10.0-9-cloud-amd64-unsigned", Version: "5.10.0-1", Suite: "bullseye"},
		{Package: "linux-image-5.10.0-32-cloud-amd64-unsigned", Version: "5.10.0-1", Suite: "bullseye"},
	}
	got := Newest(cands, []string{"bullseye"})
	if got[0].Package != "linux-image-5.10.0-32-cloud-amd64-unsigned" {
		t.Errorf("newest = %s, want the 5.10.0-32 package", got[0].Package)
	}
}

func TestNewestPrefersTrixieOverBackport(t *testing.T) {
	line, _ := LookupLine("6.12")
	got := Newest([]apt.Candidate{
		{Package: "linux-image-6.12.117+deb12-cloud-amd64-unsigned", Version: "6.12.117-1~deb12u1", Suite: "bookworm-backports"},
		{Package: "linux-image-6.12.117+deb13-cloud-amd64-unsigned", Version: "6.12.117-1", Suite: "trixie"},
		{Package: "linux-image-6.12.95+deb12-cloud-amd64-unsigned", Version: "6.12.95-1~deb12u1", Suite: "bookworm-backports"},
	}, line.Suites)
	if got[0].Package != "linux-image-6.12.117+deb13-cloud-amd64-unsigned" {
		t.Errorf("newest = %+v", got[0])
	}
}

func TestLinePatterns(t *testing.T) {
	tests := []struct {
		line, pkg string
		match     bool
	}{
		{"5.10", "linux-image-5.10.0-32-cloud-amd64-unsigned", true},
		{"5.10", "linux-image-5.10.0-32-cloud-amd64", false},
		{"5.10", "linux-image-5.10.0-32-cloud-amd64-unsigned-dbg", false},
		{"5.10", "linux-image-5.10.0-32-amd64-unsigned", false},
		{"6.1", "linux-image-6.1.0-56-cloud-amd64-unsigned", true},
		{"6.1", "linux-image-6.1.0-0.deb11.52-cloud-amd64-unsigned", true},
		{"6.1", "linux-image-6.10.0-1-cloud-amd64-unsigned", false},
		{"6.12", "linux-image-6.12.117+deb13-cloud-amd64-unsigned", true},
		{"6.12", "linux-image-6.12.95+deb12-cloud-amd64-unsigned", true},
		{"6.12", "linux-image-6.1.0-56-cloud-amd64-unsigned", false},
	}
	for _, tt := range tests {
		line, err := LookupLine(tt.line)
		if err != nil {
			t.Fatal(err)
		}
		// The patterns are POSIX extended regular expressions for apt-cache;
		// these use only syntax that RE2 reads the same way.
		if got := regexp.MustCompile(line.Pattern).MatchString(tt.pkg); got != tt.match {
			t.Errorf("%s pattern on %s = %v, want %v", tt.line, tt.pkg, got, tt.match)
		}
	}
	if _, err := LookupLine("4.19"); err == nil {
		t.Error("LookupLine accepted an unknown line")
	}
}

func TestLinePatternsARM64(t *testing.T) {
	tests := []struct {
		line, pkg string
		match     bool
	}{
		{"6.1", "linux-image-6.1.0-50-cloud-arm64-unsigned", true},
		{"6.1", "linux-image-6.1.0-50-cloud-amd64-unsigned", false},
		{"6.1", "linux-image-6.1.0-50-arm64-unsigned", false},
		{"6.1", "linux-image-6.1.0-50-cloud-arm64", false},
		{"6.12", "linux-image-6.12.57+deb13-cloud-arm64-unsigned", true},
		{"6.12", "linux-image-6.12.57+deb13-cloud-arm64-unsigned-dbg", false},
		{"6.12", "linux-image-6.12.57+deb13-arm64-16k-unsigned", false},
		{"6.12", "linux-image-6.1.0-50-cloud-arm64-unsigned", false},
	}
	for _, tt := range tests {
		line, err := LookupLineFor("arm64", tt.line)
		if err != nil {
			t.Fatal(err)
		}
		if got := regexp.MustCompile(line.Pattern).MatchString(tt.pkg); got != tt.match {
			t.Errorf("arm64 %s pattern on %s = %v, want %v", tt.line, tt.pkg, got, tt.match)
		}
	}
	// arm64 has no 5.10 line; amd64's lines are unchanged.
	if _, err := LookupLineFor("arm64", "5.10"); err == nil {
		t.Error("arm64 has a 5.10 line")
	}
	var names []string
	for _, l := range LinesFor("arm64") {
		names = append(names, l.Name)
	}
	if !slices.Equal(names, []string{"6.1", "6.12"}) {
		t.Errorf("arm64 lines = %q", names)
	}
	if len(Lines) != 3 || Lines[0].Name != "5.10" || Lines[0].Pattern != `^linux-image-5\.10\.0-[0-9]+-cloud-amd64-unsigned$` {
		t.Errorf("amd64 lines = %+v", Lines)
	}
	if len(LinesFor("riscv64")) != 0 {
		t.Error("lines for an unknown architecture")
	}
	// Changing one architecture's suites must not change the other's.
	LinesFor("arm64")[0].Suites[0] = "changed"
	if LinesFor("arm64")[0].Suites[0] != "bookworm" {
		t.Error("LinesFor shares its suites")
	}
}

func TestDirFor(t *testing.T) {
	for a, want := range map[string]string{"": "/c", "amd64": "/c", "arm64": "/c/arm64"} {
		if got := DirFor("/c", a); got != want {
			t.Errorf("DirFor(/c, %q) = %s, want %s", a, got, want)
		}
	}
	archive, security := suites(LinesFor("arm64"))
	if !slices.Equal(archive, []string{"bookworm", "bookworm-backports", "trixie"}) || !slices.Equal(security, []string{"bookworm-security", "trixie-security"}) {
		t.Errorf("arm64 suites = %q, %q", archive, security)
	}
}

func TestUnpacked(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	p := &packages{idx: c.index()}
	for _, d := range []string{"libc6_2.36-9+deb12u9", "libc6_2.36-9+deb12u13", "libc6-dev_2.36-9", "busybox-static_1:1.35.0-4+b3"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, "packages", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got := p.unpacked("libc6")
	var names []string
	for _, d := range got {
		names = append(names, filepath.Base(d))
	}
	if !slices.Equal(names, []string{"libc6_2.36-9+deb12u13", "libc6_2.36-9+deb12u9"}) {
		t.Errorf("unpacked(libc6) = %q", names)
	}
	if got := p.unpacked("busybox-static"); len(got) != 1 {
		t.Errorf("unpacked(busybox-static) = %q", got)
	}
}

func TestSuites(t *testing.T) {
	archive, security := suites(Lines)
	if !slices.Equal(archive, []string{"bullseye", "bookworm", "bookworm-backports", "trixie"}) {
		t.Errorf("archive suites = %q", archive)
	}
	if !slices.Equal(security, []string{"bullseye-security", "bookworm-security", "trixie-security"}) {
		t.Errorf("security suites = %q", security)
	}
	for _, l := range Lines {
		if l.Name == "5.10" && l.Cmdline != "lsm=lockdown,yama,bpf" {
			t.Errorf("5.10 cmdline = %q, want bpf in the LSM list", l.Cmdline)
		}
	}
}

// fakePackage lays out an unpacked kernel package: the image, its config,
// and the lab's modules (xz-compressed under usr/lib when compress is set).
// It returns each module's uncompressed contents by base name.
func fakePackage(t *testing.T, release string, compress bool) (root string, mods map[string][]byte) {
	t.Helper()
	root = t.TempDir()
	write := func(rel string, data []byte) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("boot/vmlinuz-"+release, []byte("bzImage"))
	write("boot/config-"+release, []byte("CONFIG_BPF_LSM=y\n"))
	mods = map[string][]byte{}
	for _, m := range Modules {
		data := bytes.Repeat([]byte("\x7fELF "+m+" "), 1000)
		mods[filepath.Base(m)] = data
		if !compress {
			write("lib/modules/"+release+"/"+m, data)
			continue
		}
		var b bytes.Buffer
		w, err := xz.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		write("usr/lib/modules/"+release+"/"+m+".xz", b.Bytes())
	}
	return root, mods
}

func TestExtract(t *testing.T) {
	for _, compress := range []bool{false, true} {
		release := "6.12.117+deb13-cloud-amd64"
		root, want := fakePackage(t, release, compress)
		dst := filepath.Join(t.TempDir(), "kernel")
		k := &Kernel{Line: "6.12", Package: "p", Version: "v"}
		if err := extract(root, dst, k); err != nil {
			t.Fatalf("compress=%v: %v", compress, err)
		}
		if k.Release != release {
			t.Errorf("release = %q, want %q", k.Release, release)
		}
		k.Dir = dst
		if b, err := os.ReadFile(k.Vmlinuz()); err != nil || string(b) != "bzImage" {
			t.Errorf("vmlinuz = %q, %v", b, err)
		}
		mods := k.ModuleFiles()
		if len(mods) != len(Modules) || filepath.Base(mods[0]) != "veth.ko" {
			t.Fatalf("modules = %q, want %d starting with veth.ko", mods, len(Modules))
		}
		for _, m := range mods {
			if b, _ := os.ReadFile(m); !bytes.Equal(b, want[filepath.Base(m)]) {
				t.Errorf("compress=%v: %s not extracted verbatim (%d bytes)", compress, filepath.Base(m), len(b))
			}
		}
		loaded, err := load(dst)
		if err != nil || loaded.Release != release || loaded.Package != "p" {
			t.Errorf("load = %+v, %v", loaded, err)
		}
	}
}

func TestExtractMissingModule(t *testing.T) {
	root, _ := fakePackage(t, "5.10.0-32-cloud-amd64", false)
	os.Remove(filepath.Join(root, "lib/modules/5.10.0-32-cloud-amd64", Modules[len(Modules)-1]))
	if err := extract(root, filepath.Join(t.TempDir(), "k"), &Kernel{}); err == nil {
		t.Error("extract succeeded without a module")
	}
}

func TestCurrent(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	line := Lines[0]
	if c.current(line) != nil {
		t.Fatal("current kernel in an empty cache")
	}
	root, _ := fakePackage(t, "5.10.0-32-cloud-amd64", false)
	dir := c.kernelDir(apt.Candidate{Package: "linux-image-5.10.0-32-cloud-amd64-unsigned", Version: "5.10.223-1"})
	k := &Kernel{Line: line.Name, Package: "linux-image-5.10.0-32-cloud-amd64-unsigned", Version: "5.10.223-1"}
	if err := extract(root, dir, k); err != nil {
		t.Fatal(err)
	}
	k.Dir = dir
	k.Resolved = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	if err := c.setCurrent(line, k); err != nil {
		t.Fatal(err)
	}
	got := c.current(line)
	if got == nil || got.Release != "5.10.0-32-cloud-amd64" || !got.Resolved.Equal(k.Resolved) {
		t.Errorf("current = %+v", got)
	}
	// A kernel extracted before a module was added to Modules is stale.
	meta := filepath.Join(dir, "kernel.json")
	b, _ := os.ReadFile(meta)
	os.WriteFile(meta, bytes.Replace(b, []byte(Modules[1]), []byte("old.ko"), 1), 0o644)
	if c.current(line) != nil {
		t.Error("current kernel lacking a module")
	}
	os.WriteFile(meta, b, 0o644)
	os.Remove(got.Vmlinuz())
	if c.current(line) != nil {
		t.Error("current kernel without its image")
	}
}

// TestLineCPUs: the amd64 lines boot with one vCPU (the emulator trips
// over live-patched kernel text with two); arm64 keeps the VM's default.
func TestLineCPUs(t *testing.T) {
	for _, a := range []string{"amd64", "arm64"} {
		for _, l := range LinesFor(a) {
			want := 0
			if a == "amd64" {
				want = 1
			}
			if l.CPUs != want {
				t.Errorf("%s %s boots with %d vCPUs (0: the default), want %d", a, l.Name, l.CPUs, want)
			}
		}
	}
}
