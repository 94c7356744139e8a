//go:build linux

package fortress

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/carverauto/fortress/pkg/paths"
)

// releaseDefaults selects ServiceRadar's release layout for an agent
// binary inside its release root (bin resolved: a version's binary, or
// the current symlink's path to it) unless a layout is configured, and
// fills in ServiceRadar's updater and seed where they exist.
func releaseDefaults(sc SentinelConfig, bin string) SentinelConfig {
	if sc.ReleaseDir != "" {
		return sc
	}
	if !strings.HasPrefix(filepath.Clean(bin), paths.ServiceRadarReleases+"/") {
		return sc
	}
	sc.ReleaseDir = paths.ServiceRadarReleases
	if sc.ReleaseBinary == "" {
		sc.ReleaseBinary = paths.ServiceRadarAgentName
	}
	if sc.UpdaterBinary == "" && regular(paths.ServiceRadarUpdater) {
		sc.UpdaterBinary = paths.ServiceRadarUpdater
	}
	if sc.SeedBinary == "" && regular(paths.ServiceRadarSeed) {
		sc.SeedBinary = paths.ServiceRadarSeed
	}
	return sc
}

func regular(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
