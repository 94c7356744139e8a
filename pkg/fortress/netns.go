//go:build linux

package fortress

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNetns runs f on a thread inside the network namespace at path (the
// current one when path is empty). Interface lookups and XDP attachment
// resolve interfaces in the calling thread's namespace.
func inNetns(path string, f func() error) error {
	if path == "" {
		return f()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("enter netns %s: %w", path, err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the other namespace; keep it locked so
		// that the runtime discards it instead of reusing it.
		runtime.LockOSThread()
		return errors.Join(ferr, fmt.Errorf("leave netns %s: %w", path, err))
	}
	return ferr
}
