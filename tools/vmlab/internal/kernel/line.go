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
	// CPUs, if set, is how many vCPUs the line boots with (else the VM's
	// default, two).
	CPUs int
}

// lines are the kernel lines vmlab knows, oldest first, with the image
// package's release part as a pattern and the architectures each is
// tested on. arm64 has no 5.10 line: arm64 kernels before 6.4 cannot
// attach BPF LSM programs at all, and 6.1 already shows that.
var lines = []struct {
	Line
	release string
	arches  []string
}{
	{
		Line: Line{
			Name:   "5.10",
			Suites: []string{"bullseye", "bullseye-security"},
			// BPF LSM is built in but not in 5.10's default LSM list.
			Cmdline: "lsm=lockdown,yama,bpf",
		},
		release: `5\.10\.0-[0-9]+`,
		arches:  []string{"amd64"},
	},
	{
		Line:    Line{Name: "6.1", Suites: []string{"bookworm", "bookworm-security"}},
		release: `6\.1\.0-[0-9][0-9a-z.+]*`,
		arches:  []string{"amd64", "arm64"},
	},
	{
		Line:    Line{Name: "6.12", Suites: []string{"bookworm-backports", "trixie", "trixie-security"}},
		release: `6\.12\.[0-9][0-9a-z.+]*`,
		arches:  []string{"amd64", "arm64"},
	},
}

// LinesFor returns the kernel lines of architecture a (Debian's name:
// "amd64", "arm64"), oldest first, with patterns for its cloud kernels
// (linux-image-<release>-cloud-<a>-unsigned).
func LinesFor(a string) []Line {
	var out []Line
	for _, l := range lines {
		if !slices.Contains(l.arches, a) {
			continue
		}
		line := l.Line
		line.Suites = slices.Clone(l.Suites)
		if a == "amd64" {
			// With two vCPUs the emulator trips over kernel text that one
			// vCPU live-patches while the other runs it (the XDP
			// dispatcher, updated under traffic): 6.12 panicked on an int3
			// in both of two full runs, 12 and 14 min in, and 5.10 hung
			// with a CPU stuck in the next. On one vCPU the whole 6.12
			// suite passed in about the time two take.
			line.CPUs = 1
		}
		line.Pattern = "^linux-image-" + l.release + "-cloud-" + a + "-unsigned$"
		out = append(out, line)
	}
	return out
}

// Lines are the kernel lines of the default architecture, amd64.
var Lines = LinesFor("amd64")

// LookupLine returns the amd64 line named name.
func LookupLine(name string) (Line, error) { return LookupLineFor("amd64", name) }

// LookupLineFor returns architecture a's line named name.
func LookupLineFor(a, name string) (Line, error) {
	ls := LinesFor(a)
	for _, l := range ls {
		if l.Name == name {
			return l, nil
		}
	}
	names := make([]string, len(ls))
	for i, l := range ls {
		names[i] = l.Name
	}
	return Line{}, fmt.Errorf("unknown kernel %q for %s (known: %s)", name, a, strings.Join(names, ", "))
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

// suites returns every suite the lines need, split into the main archive's
// and the security archive's.
func suites(ls []Line) (archive, security []string) {
	for _, l := range ls {
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
