//go:build linux

package fortress

import (
	"path/filepath"
	"testing"

	"github.com/carverauto/fortress/pkg/paths"
)

func TestReleaseDefaults(t *testing.T) {
	inTree := filepath.Join(paths.ServiceRadarReleases, "versions", "1.2.3", paths.ServiceRadarAgentName)
	sc := releaseDefaults(SentinelConfig{}, inTree)
	if sc.ReleaseDir != paths.ServiceRadarReleases || sc.ReleaseBinary != paths.ServiceRadarAgentName {
		t.Errorf("agent in ServiceRadar's tree: layout %q %q", sc.ReleaseDir, sc.ReleaseBinary)
	}
	// Through the current symlink: the same.
	if sc := releaseDefaults(SentinelConfig{}, filepath.Join(paths.ServiceRadarReleases, "current", "serviceradar-agent")); sc.ReleaseDir == "" {
		t.Error("agent through current: no layout")
	}
	// Elsewhere, or a sibling whose name only starts the same: none.
	for _, bin := range []string{"/usr/local/bin/fortress-agent", paths.ServiceRadarReleases + "-old/versions/1/serviceradar-agent"} {
		if sc := releaseDefaults(SentinelConfig{}, bin); sc.ReleaseDir != "" {
			t.Errorf("%s: layout %q selected", bin, sc.ReleaseDir)
		}
	}
	// A configured layout is kept as it is.
	own := SentinelConfig{ReleaseDir: "/opt/agent", ReleaseBinary: "agent"}
	if sc := releaseDefaults(own, inTree); sc.ReleaseDir != own.ReleaseDir || sc.ReleaseBinary != own.ReleaseBinary || sc.UpdaterBinary != "" || sc.SeedBinary != "" {
		t.Errorf("configured layout changed: %+v", sc)
	}
}
