//go:build !linux

package serviceradar

import (
	"context"
	"errors"
	"testing"

	"github.com/carverauto/fortress/pkg/fortress"
)

// Off Linux, Open says unsupported and the nil Service claims nothing.
func TestOpenUnsupported(t *testing.T) {
	s, err := Open(context.Background(), Config{}, nil)
	if !errors.Is(err, fortress.ErrUnsupported) || s != nil {
		t.Fatalf("Open: %v, %v", s, err)
	}
	if s.Capabilities() != nil {
		t.Error("capabilities without Fortress")
	}
}

// inLab: the VM lab is Linux.
func inLab() bool { return false }
