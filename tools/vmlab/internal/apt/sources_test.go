package apt

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const debianSources = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`

func TestParseDeb822(t *testing.T) {
	srcs, err := ParseDeb822(strings.NewReader(debianSources + `
Types: deb
URIs: http://off.example/debian
Suites: trixie
Components: main
Enabled: no

types: deb deb-src
uris: http://inline.example/
suites: stable
components: main contrib
signed-by:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 xyz
 -----END PGP PUBLIC KEY BLOCK-----
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 3 {
		t.Fatalf("got %d sources, want 3 (the disabled one skipped): %+v", len(srcs), srcs)
	}
	want := Source{
		Types:      []string{"deb"},
		URIs:       []string{"http://mirror.example/debian"},
		Suites:     []string{"bookworm", "bookworm-updates"},
		Components: []string{"main"},
		SignedBy:   "/usr/share/keyrings/debian-archive-keyring.gpg",
	}
	if !reflect.DeepEqual(srcs[0], want) {
		t.Errorf("first source = %+v, want %+v", srcs[0], want)
	}
	if got := srcs[2].SignedBy; !strings.HasPrefix(got, "\n -----BEGIN") || !strings.HasSuffix(got, "-----END PGP PUBLIC KEY BLOCK-----") {
		t.Errorf("inline key not kept folded: %q", got)
	}
	if !reflect.DeepEqual(srcs[2].Components, []string{"main", "contrib"}) {
		t.Errorf("lower-case field names not read: %+v", srcs[2])
	}
}

func TestParseOneLine(t *testing.T) {
	srcs, err := ParseOneLine(strings.NewReader(`# comment
deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib
deb-src http://mirror.example/debian bookworm main # trailing comment

deb http://security.example/debian-security bullseye/updates main
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Source{
		{Types: []string{"deb"}, URIs: []string{"http://mirror.example/debian"}, Suites: []string{"bookworm"}, Components: []string{"main", "contrib"}, SignedBy: "/k.gpg"},
		{Types: []string{"deb-src"}, URIs: []string{"http://mirror.example/debian"}, Suites: []string{"bookworm"}, Components: []string{"main"}},
		{Types: []string{"deb"}, URIs: []string{"http://security.example/debian-security"}, Suites: []string{"bullseye/updates"}, Components: []string{"main"}},
	}
	if !reflect.DeepEqual(srcs, want) {
		t.Errorf("got %+v\nwant %+v", srcs, want)
	}
	if _, err := ParseOneLine(strings.NewReader("deb [signed-by=/k http://x bookworm main\n")); err == nil {
		t.Error("unterminated options accepted")
	}
}

func TestFindMirror(t *testing.T) {
	srcs, err := ParseDeb822(strings.NewReader(debianSources))
	if err != nil {
		t.Fatal(err)
	}
	// Entries that are not Debian's archive come first and are ignored.
	other := []Source{
		{Types: []string{"deb"}, URIs: []string{"https://nodes.example/node_20.x"}, Suites: []string{"nodistro"}, Components: []string{"main"}},
		{Types: []string{"deb-src"}, URIs: []string{"http://src.example/debian"}, Suites: []string{"bookworm"}, Components: []string{"main"}},
	}
	m, err := FindMirror(append(other, srcs...))
	if err != nil {
		t.Fatal(err)
	}
	want := Mirror{
		Archive:  "http://mirror.example/debian",
		Security: "http://mirror.example/debian-security",
		SignedBy: "/usr/share/keyrings/debian-archive-keyring.gpg",
	}
	if m != want {
		t.Errorf("FindMirror = %+v, want %+v", m, want)
	}
	if _, err := FindMirror(other); err == nil {
		t.Error("FindMirror found a Debian mirror among non-Debian sources")
	}
}

func TestSystemSources(t *testing.T) {
	etc := t.TempDir()
	d := filepath.Join(etc, "sources.list.d")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		filepath.Join(d, "debian.sources"):            debianSources,
		filepath.Join(d, "extra.list"):                "deb http://extra.example/ stable main\n",
		filepath.Join(d, "old.list.disabled-by-farm"): "deb http://disabled.example/ stable main\n",
	}
	for name, body := range files {
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srcs, err := SystemSources(etc) // no sources.list: not an error
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, s := range srcs {
		uris = append(uris, s.URIs...)
	}
	want := []string{"http://mirror.example/debian", "http://mirror.example/debian-security", "http://extra.example/"}
	if !reflect.DeepEqual(uris, want) {
		t.Errorf("URIs = %q, want %q", uris, want)
	}
}

func TestWriteDeb822RoundTrip(t *testing.T) {
	in := []Source{
		{Types: []string{"deb"}, URIs: []string{"http://mirror.example/debian"}, Suites: []string{"bullseye", "trixie"}, Components: []string{"main"}, SignedBy: "/k.gpg"},
		{Types: []string{"deb"}, URIs: []string{"http://mirror.example/debian-security"}, Suites: []string{"bullseye-security"}, Components: []string{"main"}},
	}
	var b strings.Builder
	if err := WriteDeb822(&b, in, "amd64"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Targets: Packages\n") || !strings.Contains(b.String(), "Architectures: amd64\n") {
		t.Errorf("output lacks Targets/Architectures:\n%s", b.String())
	}
	out, err := ParseDeb822(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("round trip: got %+v, want %+v", out, in)
	}
}

func TestParseMadison(t *testing.T) {
	out := ` linux-image-5.10.0-46-cloud-amd64-unsigned | 5.10.262-1 | http://mirror.example/debian-security bullseye-security/main amd64 Packages
linux-image-5.10.0-32-cloud-amd64-unsigned | 5.10.223-1 | http://mirror.example/debian bullseye/main amd64 Packages
     linux | 5.10.223-1 | http://mirror.example/debian bullseye/main Sources
linux-image-5.10.0-9-cloud-amd64-unsigned | 5.10.70-1 | http://old.example/debian-security bullseye/updates/main amd64 Packages
not a madison line
`
	want := []Candidate{
		{"linux-image-5.10.0-46-cloud-amd64-unsigned", "5.10.262-1", "bullseye-security"},
		{"linux-image-5.10.0-32-cloud-amd64-unsigned", "5.10.223-1", "bullseye"},
		{"linux-image-5.10.0-9-cloud-amd64-unsigned", "5.10.70-1", "bullseye/updates"},
	}
	if got := ParseMadison(out); !reflect.DeepEqual(got, want) {
		t.Errorf("ParseMadison = %+v\nwant %+v", got, want)
	}
}
