package apt

import (
	"slices"
	"strings"
	"testing"
)

func TestRepoOptionsArch(t *testing.T) {
	opts := (&Repo{Dir: "/c/apt", Arch: "arm64"}).options()
	for _, want := range []string{"APT::Architecture=arm64", "APT::Architectures=arm64", "Dir::Etc::SourceList=/c/apt/sources.sources", "Dir::Etc::SourceParts=/dev/null"} {
		if !slices.Contains(opts, want) {
			t.Errorf("options %q lack %q", opts, want)
		}
	}
	// Without an architecture, apt works for the host's.
	if opts := (&Repo{Dir: "/c/apt"}).options(); strings.Contains(strings.Join(opts, " "), "APT::Architecture") {
		t.Errorf("options %q name an architecture", opts)
	}
}
