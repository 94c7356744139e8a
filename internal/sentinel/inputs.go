package sentinel

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/pins"
)

// ErrNotProtected says an input the agent read by path is not the object
// Sentinel protects under that path: the file descriptor it got names
// another inode (a supervisor could hand the agent a file of its own in
// place of its trust key), or the path is not protected at all.
var ErrNotProtected = errors.New("not the protected object")

// ReadInput reads an input the agent trusts because of where it lives
// (configuration, trust key, TLS files, release key), at most limit bytes.
// Where Sentinel is loaded under root, the opened file must be an inode
// Sentinel protects: listed itself, or an entry of a protected directory
// that the path names. Checked reports whether Sentinel was there to ask;
// before the first load (nothing pinned) the file is read unchecked.
func ReadInput(root pins.Root, path string, limit int64) (data []byte, checked bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, fmt.Errorf("read input: %w", err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, false, fmt.Errorf("read input %s: %w", path, err)
	}
	checked, err = protectedInput(root, path, inodeOf(&st))
	if err != nil {
		return nil, checked, err
	}
	data, err = io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, checked, fmt.Errorf("read input %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, checked, fmt.Errorf("read input %s: larger than %d bytes", path, limit)
	}
	return data, checked, nil
}

// protectedInput checks in against the pinned sentinel_objects map.
func protectedInput(root pins.Root, path string, in Inode) (bool, error) {
	if root == "" {
		root = pins.DefaultRoot
	}
	m, err := ebpf.LoadPinnedMap(root.Path(pins.Sentinel, pinName("map", mapObjects)), &ebpf.LoadPinOptions{ReadOnly: true})
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // Sentinel is not loaded: nothing protects anything yet
	}
	if err != nil {
		return false, fmt.Errorf("read input %s: open sentinel objects: %w", path, err)
	}
	defer m.Close()
	flags := func(in Inode) uint32 {
		var o sentinelSentinelObject
		if err := m.Lookup(key(in), &o); err != nil {
			return 0
		}
		return o.Flags
	}
	if flags(in)&flagProtected != 0 {
		return true, nil
	}
	// A file made in a protected directory after the policy was built is
	// protected by its directory: the path must name the inode the file
	// descriptor has, and the directory must protect its entries.
	if named, err := lstat(path); err == nil && inodeOf(named) == in {
		if dir, err := lstat(filepath.Dir(path)); err == nil && flags(inodeOf(dir))&flagChildren != 0 {
			return true, nil
		}
	}
	return true, fmt.Errorf("read input %s: %w (the file opened is inode %s)", path, ErrNotProtected, in)
}
