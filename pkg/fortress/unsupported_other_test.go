//go:build !linux

package fortress

import (
	"context"
	"errors"
	"testing"
)

func TestStartUnsupported(t *testing.T) {
	f, err := Start(context.Background(), Config{AgentID: "edge-01"})
	if !errors.Is(err, ErrUnsupported) || f != nil {
		t.Fatalf("Start = %v, %v; want nil and an error wrapping ErrUnsupported", f, err)
	}
	if _, err := f.ApplyBundle(nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("ApplyBundle: %v; want ErrUnsupported", err)
	}
}
