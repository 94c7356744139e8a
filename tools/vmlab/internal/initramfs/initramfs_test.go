package initramfs

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// entry is one archive member as read back.
type entry struct {
	mode cpio.FileMode
	body string
}

// readArchive decompresses and reads a whole archive, in order.
func readArchive(t *testing.T, data []byte) (names []string, entries map[string]entry) {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	r := cpio.NewReader(gz)
	entries = map[string]entry{}
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read cpio: %v", err)
		}
		body, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if h.Mode&^cpio.ModePerm == cpio.TypeSymlink {
			body = []byte(h.Linkname)
		}
		names = append(names, h.Name)
		entries[h.Name] = entry{mode: h.Mode, body: string(body)}
	}
	return names, entries
}

func TestWriter(t *testing.T) {
	host := t.TempDir()
	if err := os.MkdirAll(filepath.Join(host, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(host, "sub", "data.txt"), []byte("payload"), 0o640)
	os.WriteFile(filepath.Join(host, "tool"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("sub/data.txt", filepath.Join(host, "link"))

	var buf bytes.Buffer
	w := NewWriter(&buf)
	steps := []error{
		w.Dir("/tmp", fs.ModeSticky|0o777),
		w.File("/init", 0o755, []byte("#!/bin/sh\necho hi\n")),
		w.File("/etc/hosts", 0o644, []byte("127.0.0.1 localhost\n")),
		w.CopyFile("/usr/local/bin/tool", filepath.Join(host, "tool"), 0),
		w.Symlink("/bin/ls", "/bin/busybox"),
		w.CopyTree("/lab/extra", host),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := w.File("/init", 0o755, nil); err == nil {
		t.Error("writing /init twice succeeded")
	}
	if err := w.Dir("/init", 0o755); err == nil {
		t.Error("a directory over a file succeeded")
	}
	if !w.Has("/usr/local/bin/tool") || !w.Has("usr/local") || w.Has("/nope") {
		t.Error("Has does not reflect the written paths")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	names, got := readArchive(t, buf.Bytes())
	if sorted := slices.Sorted(slices.Values(names)); !reflect.DeepEqual(sorted, w.Entries()) {
		t.Errorf("archive has %q, writer reports %q", sorted, w.Entries())
	}
	// Every parent directory comes before its children.
	seen := map[string]bool{}
	for _, n := range names {
		if d := filepath.Dir(n); d != "." && !seen[d] {
			t.Errorf("%s written before its directory %s", n, d)
		}
		seen[n] = true
	}
	checks := map[string]entry{
		"tmp":                    {cpio.TypeDir | cpio.ModeSticky | 0o777, ""},
		"init":                   {cpio.TypeReg | 0o755, "#!/bin/sh\necho hi\n"},
		"etc":                    {cpio.TypeDir | 0o755, ""},
		"etc/hosts":              {cpio.TypeReg | 0o644, "127.0.0.1 localhost\n"},
		"usr/local/bin/tool":     {cpio.TypeReg | 0o755, "#!/bin/sh\n"},
		"bin/ls":                 {cpio.TypeSymlink | 0o777, "/bin/busybox"},
		"lab/extra/sub":          {cpio.TypeDir | 0o750, ""},
		"lab/extra/sub/data.txt": {cpio.TypeReg | 0o640, "payload"},
		"lab/extra/link":         {cpio.TypeSymlink | 0o777, "sub/data.txt"},
		"lab/extra/tool":         {cpio.TypeReg | 0o755, "#!/bin/sh\n"},
	}
	for name, want := range checks {
		e, ok := got[name]
		if !ok {
			t.Errorf("%s missing from the archive", name)
			continue
		}
		if e.mode != want.mode || e.body != want.body {
			t.Errorf("%s = (%v, %q), want (%v, %q)", name, e.mode, e.body, want.mode, want.body)
		}
	}
	if _, ok := got["TRAILER!!!"]; ok {
		t.Error("trailer read as an entry")
	}
}

func TestParseLdd(t *testing.T) {
	out := `	linux-vdso.so.1 (0x00007ffd2b1f5000)
	libelf.so.1 => /lib/x86_64-linux-gnu/libelf.so.1 (0x00007f2a874f9000)
	libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f2a874da000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2a872ec000)
	/lib64/ld-linux-x86-64.so.2 (0x00007f2a875b0000)
`
	libs, err := ParseLdd(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/lib/x86_64-linux-gnu/libelf.so.1",
		"/lib/x86_64-linux-gnu/libz.so.1",
		"/lib/x86_64-linux-gnu/libc.so.6",
		"/lib64/ld-linux-x86-64.so.2",
	}
	if !reflect.DeepEqual(libs, want) {
		t.Errorf("ParseLdd = %q, want %q", libs, want)
	}
	if _, err := ParseLdd("\tlibbpf.so.1 => not found\n"); err == nil || !strings.Contains(err.Error(), "libbpf.so.1") {
		t.Errorf("missing library: err = %v", err)
	}
	if libs, err := ParseLdd("\tstatically linked\n"); err != nil || len(libs) != 0 {
		t.Errorf("static binary: %q, %v", libs, err)
	}
}

func TestParseApplets(t *testing.T) {
	got := ParseApplets("bin/sh\nsbin/ip\nusr/bin/awk\n\n")
	want := []string{"/bin/sh", "/sbin/ip", "/usr/bin/awk"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseApplets = %q, want %q", got, want)
	}
}

func TestIsStatic(t *testing.T) {
	if _, err := IsStatic(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("IsStatic on a missing file succeeded")
	}
	// The test binary itself: static when built without cgo, dynamic
	// otherwise; either answer is fine, an error is not.
	self, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	if _, err := IsStatic(self); err != nil {
		t.Errorf("IsStatic(%s): %v", self, err)
	}
}
