package fortress

import (
	"errors"
	"fmt"
)

// ErrUnsupported is what Start returns, wrapped, on a platform without
// eBPF (anything but Linux). A host agent that embeds Fortress tests for
// it with errors.Is, reports Fortress as unsupported and keeps running.
var ErrUnsupported = errors.New("fortress needs Linux with eBPF")

// unsupportedOn is the error of every call that cannot work on goos/goarch.
func unsupportedOn(goos, goarch string) error {
	return fmt.Errorf("fortress on %s/%s: %w", goos, goarch, ErrUnsupported)
}
