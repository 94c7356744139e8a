//go:build linux

package fortress

import (
	"github.com/carverauto/fortress/internal/pins"
	"github.com/carverauto/fortress/internal/sentinel"
)

// ErrNotProtected says an input read with ReadInput is not the object
// Sentinel protects under its path.
var ErrNotProtected = sentinel.ErrNotProtected

// MaxInputBytes bounds what ReadInput reads.
const MaxInputBytes = 4 << 20

// ReadInput reads a file that the host agent trusts because of where it
// lives (its configuration, a trust key, TLS files). Where Sentinel is
// loaded under pinRoot ("" means DefaultPinRoot), the file descriptor the
// kernel returned must be the inode Sentinel protects: a file handed in
// by someone else (a seccomp supervisor injecting its own file for the
// open) fails with ErrNotProtected. Checked says whether Sentinel was
// there to ask; before its first load the file is read unchecked, and the
// caller should read it again once Fortress has started.
func ReadInput(pinRoot, path string) (data []byte, checked bool, err error) {
	return sentinel.ReadInput(pins.Root(pinRoot), path, MaxInputBytes)
}
