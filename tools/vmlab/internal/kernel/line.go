package kernel

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/carverauto/fortress/tools/vmlab/internal/apt"
)

// Line is a series of Debian cloud kernels vmlab can boot.
type Line struct {
	// Name is how the line is named on the command line: "5.10", "6.1",
	// "6.12".
	Name string
	// Pattern is the POSIX extended regular expression, for apt-cache
	// search, that matches the line's image package names.
	Pattern string
	// Suites are the Debian suites searched for the line's packages.
	Suites []string
	// Cmdline is added to the kernel command line when booting the line.
	Cmdline string
}

// Lines are the kernel lines vmlab knows, oldest first.
var Lines = []Line{
	{
		Name:    "5.10",
		Pattern: `^linux-image-5\.10\.0-[0-9]+-cloud-amd64-unsigned$`,
		Suites:  []string{"bullseye", "bullseye-security"},
		// BPF LSM is built in but not in 5.10's default LSM list.
		Cmdline: "lsm=lockdown,yama,bpf",
	},
	{
		Name:    "6.1",
		Pattern: `^linux-image-6\.1\.0-[0-9][0-9a-z.+]*-cloud-amd64-unsigned$`,
		Suites:  []string{"bookworm", "bookworm-security"},
	},
	{
		Name:    "6.12",
		Pattern: `^linux-image-6\.12\.[0-9][0-9a-z.+]*-cloud-amd64-unsigned$`,
		Suites:  []string{"bookworm-backports", "trixie", "trixie-security"},
	},
}

// LookupLine returns the line named name.
func LookupLine(name string) (Line, error) {
	for _, l := range Lines {
		if l.Name == name {
			return l, nil
		}
	}
	names := make([]string, len(Lines))
	for i, l := range Lines {
		names[i] = l.Name
	}
	return Line{}, fmt.Errorf("unknown kernel %q (known: %s)", name, strings.Join(names, ", "))
}

// Newest returns the candidates served by one of suites, newest first and
// without duplicates. Versions are ordered by Debian version comparison;
// equal versions by the package name, compared the same way, so that the
// ABI in linux-image-5.10.0-32-... beats the one in linux-image-5.10.0-9-...
func Newest(cands []apt.Candidate, suites []string) []apt.Candidate {
	var out []apt.Candidate
	for _, c := range cands {
		if !slices.Contains(suites, c.Suite) {
			continue
		}
		if slices.ContainsFunc(out, func(o apt.Candidate) bool { return o.Package == c.Package && o.Version == c.Version }) {
			continue
		}
		out = append(out, c)
	}
	slices.SortStableFunc(out, func(a, b apt.Candidate) int {
		return cmp.Or(
			apt.CompareVersions(b.Version, a.Version),
			apt.CompareVersions(b.Package, a.Package),
		)
	})
	return out
}

// suites returns every suite any line needs, split into the main archive's
// and the security archive's.
func suites() (archive, security []string) {
	for _, l := range Lines {
		for _, s := range l.Suites {
			if strings.HasSuffix(s, "-security") {
				security = append(security, s)
			} else {
				archive = append(archive, s)
			}
		}
	}
	return archive, security
}
