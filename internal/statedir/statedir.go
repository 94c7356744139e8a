package statedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The files of the state directory.
const (
	// LastBundle is the last applied bundle, as it was signed.
	LastBundle = "last-applied.bundle"
	// Lists holds the lists bundles reference, each named by its SHA-256.
	Lists = "lists"
	// ReportedCounters is the rule counters already reported, so that a
	// restarted agent reports only what is new.
	ReportedCounters = "counters-reported.json"
	// UsedTokens is the ledger of maintenance tokens already honoured.
	UsedTokens = "maintenance-used.json"
)

// ErrNotRegular refuses to replace something that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// syncFile is (*os.File).Sync; tests replace it to make a write fail.
var syncFile = (*os.File).Sync

// WriteFile replaces name with data atomically and durably, with mode perm.
// On error name is as it was and no temporary file is left. It replaces
// only a regular file: a device (sign --out /dev/null as root), fifo,
// socket, directory or symlink at name is refused with ErrNotRegular and
// left as it is.
func WriteFile(name string, data []byte, perm fs.FileMode) error {
	if err := checkReplaceable(name); err != nil {
		return err
	}
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, tempPrefix(base)+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	err = fill(f, data, perm)
	if err == nil {
		// Checked again just before the rename: the window is the write.
		err = checkReplaceable(name)
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		if errors.Is(err, ErrNotRegular) {
			return err
		}
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// fill writes data to f, sets its mode, syncs and closes it.
func fill(f *os.File, data []byte, perm fs.FileMode) error {
	err := f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = syncFile(f)
	}
	return errors.Join(err, f.Close())
}

// SyncDir makes the entries of dir (a file just created, renamed or
// removed in it) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// RemoveTemps deletes the temporary files that writes of name left behind
// when the process died between creating and renaming them. The caller
// makes sure that no write of name is running.
func RemoveTemps(name string) {
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tempPrefix(base)) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func tempPrefix(base string) string { return "." + base + ".tmp" }

// checkReplaceable refuses a name that exists and is not a regular file.
func checkReplaceable(name string) error {
	fi, err := os.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("write %s: %w", name, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("refusing to replace %s: %w (%s)", name, ErrNotRegular, fileKind(fi.Mode()))
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m.IsDir():
		return "directory"
	}
	return m.Type().String()
}
