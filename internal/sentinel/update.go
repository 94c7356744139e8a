package sentinel

import (
	"fmt"
	"os"
	"path/filepath"
)

// InstallAgent is the update manager's step: it writes the new agent binary
// into the protected staging directory (which only the updater identity may
// write, so nobody can change it between verification and install), syncs
// it, and renames it over the agent binary. Sentinel's rename hook makes the
// new inode an agent identity in the same step, so the agent is never
// locked out. staging must be on the agent binary's filesystem.
func InstallAgent(binary []byte, staging, dest string) error {
	tmp := filepath.Join(staging, filepath.Base(dest)+"-new")
	os.Remove(tmp) // a leftover of an interrupted update
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return fmt.Errorf("stage new agent: %w", err)
	}
	if _, err := f.Write(binary); err != nil {
		f.Close()
		return fmt.Errorf("stage new agent: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync new agent: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("stage new agent: %w", err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("install new agent: %w", err)
	}
	if d, err := os.Open(filepath.Dir(dest)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
