package apt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Source is one apt source entry: a deb822 stanza, or one line of the
// one-line format.
type Source struct {
	Types      []string
	URIs       []string
	Suites     []string
	Components []string
	// SignedBy is the keyring path (or the folded inline key) the entry
	// names, empty when it names none.
	SignedBy string
}

// ParseDeb822 parses a deb822 sources file (*.sources). Comments and
// stanzas with "Enabled: no" are skipped; field names are case-insensitive.
func ParseDeb822(r io.Reader) ([]Source, error) {
	var (
		out    []Source
		fields = map[string]string{}
		last   string
	)
	flush := func() {
		if len(fields) == 0 {
			return
		}
		if !strings.EqualFold(fields["enabled"], "no") {
			out = append(out, Source{
				Types:      strings.Fields(fields["types"]),
				URIs:       strings.Fields(fields["uris"]),
				Suites:     strings.Fields(fields["suites"]),
				Components: strings.Fields(fields["components"]),
				SignedBy:   fields["signed-by"],
			})
		}
		fields = map[string]string{}
		last = ""
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case strings.HasPrefix(line, "#"):
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				fields[last] += "\n" + line
			}
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				return nil, fmt.Errorf("parse deb822: no field name in %q", line)
			}
			last = strings.ToLower(strings.TrimSpace(name))
			fields[last] = strings.TrimSpace(value)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse deb822: %w", err)
	}
	flush()
	return out, nil
}

// ParseOneLine parses the one-line sources format (sources.list, *.list):
// "deb [options] uri suite component...".
func ParseOneLine(r io.Reader) ([]Source, error) {
	var out []Source
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		src := Source{Types: []string{f[0]}}
		f = f[1:]
		if len(f) > 0 && strings.HasPrefix(f[0], "[") {
			end := slices.IndexFunc(f, func(s string) bool { return strings.HasSuffix(s, "]") })
			if end < 0 {
				return nil, fmt.Errorf("parse sources line %q: unterminated options", sc.Text())
			}
			for _, opt := range f[:end+1] {
				opt = strings.Trim(opt, "[]")
				if k, v, ok := strings.Cut(opt, "="); ok && k == "signed-by" {
					src.SignedBy = v
				}
			}
			f = f[end+1:]
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("parse sources line %q: too few fields", sc.Text())
		}
		src.URIs = []string{f[0]}
		src.Suites = []string{f[1]}
		src.Components = f[2:]
		out = append(out, src)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse sources list: %w", err)
	}
	return out, nil
}

// SystemSources reads the machine's apt sources below etcApt (normally
// /etc/apt): sources.list, sources.list.d/*.list and sources.list.d/*.sources.
// Files with other names (for example "*.disabled") are ignored, as apt does.
func SystemSources(etcApt string) ([]Source, error) {
	files := []string{filepath.Join(etcApt, "sources.list")}
	parts, err := filepath.Glob(filepath.Join(etcApt, "sources.list.d", "*"))
	if err != nil {
		return nil, fmt.Errorf("list apt sources: %w", err)
	}
	files = append(files, parts...)
	var out []Source
	for _, name := range files {
		var parse func(io.Reader) ([]Source, error)
		switch filepath.Ext(name) {
		case ".sources":
			parse = ParseDeb822
		case ".list":
			parse = ParseOneLine
		default:
			continue
		}
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read apt sources: %w", err)
		}
		srcs, err := parse(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		out = append(out, srcs...)
	}
	return out, nil
}

// debianCodenames are the Debian release names (and aliases) by which a
// sources entry is recognised as Debian's own archive.
var debianCodenames = []string{
	"buster", "bullseye", "bookworm", "trixie", "forky", "duke",
	"sid", "unstable", "testing", "stable", "oldstable", "oldoldstable",
}

// Mirror is the machine's Debian archive as its apt sources name it.
type Mirror struct {
	// Archive is the URI serving the main suites (bookworm, trixie, ...).
	Archive string
	// Security is the URI serving the "-security" suites; empty when the
	// machine's sources list none.
	Security string
	// SignedBy is the keyring the machine's Debian entry uses.
	SignedBy string
}

// FindMirror picks the machine's Debian archive and security archive from
// its sources: the first "deb" entry with component main whose suite is a
// Debian codename (plain, or with a "-security" or "/updates" suffix for the
// security archive).
func FindMirror(srcs []Source) (Mirror, error) {
	var m Mirror
	for _, s := range srcs {
		if !slices.Contains(s.Types, "deb") || !slices.Contains(s.Components, "main") || len(s.URIs) == 0 {
			continue
		}
		for _, suite := range s.Suites {
			base, security := debianSuite(suite)
			if !slices.Contains(debianCodenames, base) {
				continue
			}
			switch {
			case security && m.Security == "":
				m.Security = s.URIs[0]
			case !security && m.Archive == "":
				m.Archive = s.URIs[0]
				m.SignedBy = s.SignedBy
			}
		}
	}
	if m.Archive == "" {
		return Mirror{}, errors.New("find debian mirror: no deb entry for a debian suite with component main in the apt sources")
	}
	return m, nil
}

// debianSuite returns a suite's codename and whether it is a security suite.
func debianSuite(suite string) (base string, security bool) {
	if b, ok := strings.CutSuffix(suite, "-security"); ok {
		return b, true
	}
	if b, ok := strings.CutSuffix(suite, "/updates"); ok {
		return b, true
	}
	base, _, _ = strings.Cut(suite, "-")
	return base, false
}

// WriteDeb822 writes srcs in deb822 form, each limited to the Packages index
// target (vmlab needs no translations or AppStream data) and to arch.
func WriteDeb822(w io.Writer, srcs []Source, arch string) error {
	var b strings.Builder
	for i, s := range srcs {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "Types: %s\n", strings.Join(s.Types, " "))
		fmt.Fprintf(&b, "URIs: %s\n", strings.Join(s.URIs, " "))
		fmt.Fprintf(&b, "Suites: %s\n", strings.Join(s.Suites, " "))
		fmt.Fprintf(&b, "Components: %s\n", strings.Join(s.Components, " "))
		fmt.Fprintf(&b, "Architectures: %s\n", arch)
		b.WriteString("Targets: Packages\n")
		if s.SignedBy != "" {
			fmt.Fprintf(&b, "Signed-By: %s\n", s.SignedBy)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
