package pins

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/carverauto/fortress/pkg/paths"
)

// DefaultRoot is the production pin root.
const DefaultRoot = paths.PinRoot

// Layer names a subtree of the pin root.
type Layer string

const (
	Shield   Layer = "shield"
	Sentinel Layer = "sentinel"
)

// Root is a pin root directory on a bpffs mount.
type Root string

// Dir returns the directory of a layer.
func (r Root) Dir(l Layer) string { return filepath.Join(string(r), string(l)) }

// Path returns the pin path of object name in layer l.
func (r Root) Path(l Layer, name string) string { return filepath.Join(string(r), string(l), name) }

// Ensure creates the layer directory (and the root) if missing.
func (r Root) Ensure(l Layer) error {
	if err := os.MkdirAll(r.Dir(l), 0o700); err != nil {
		return fmt.Errorf("create pin dir %s: %w", r.Dir(l), err)
	}
	return nil
}
