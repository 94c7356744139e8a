package sentinel

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/carverauto/fortress/internal/statedir"
)

// InstallAgent is the update manager's step: it writes the new agent binary
// into the protected staging directory (which only the updater identity may
// write, so nobody can change it between verification and install), syncs
// it, and renames it over the agent binary. Sentinel's rename hook makes the
// new inode an agent identity in the same step, so the agent is never
// locked out. staging must be on the agent binary's filesystem.
func InstallAgent(binary []byte, staging, dest string) error {
	tmp := filepath.Join(staging, filepath.Base(dest)+"-new")
	statedir.RemoveTemps(tmp) // leftovers of an interrupted update
	if err := statedir.WriteFile(tmp, binary, 0o755); err != nil {
		return fmt.Errorf("stage new agent: %w", err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("install new agent: %w", err)
	}
	if err := statedir.SyncDir(filepath.Dir(dest)); err != nil {
		return fmt.Errorf("install new agent: %w", err)
	}
	return nil
}
