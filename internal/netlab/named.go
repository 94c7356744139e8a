package netlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces live, as with ip netns.
const NetnsDir = "/run/netns"

// prepareNetnsDir makes NetnsDir a shared mount point, as ip netns does:
// a namespace's bind mount, and its removal, then propagate to every mount
// namespace made later. Without it a copy of the mount in another mount
// namespace keeps the file busy and removal fails with EBUSY.
func prepareNetnsDir() error {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	bound := false
	for {
		err := unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINVAL) || bound {
			return fmt.Errorf("netlab: make %s a shared mount: %w", NetnsDir, err)
		}
		// Not a mount point yet: bind it onto itself first.
		if err := unix.Mount(NetnsDir, NetnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("netlab: bind %s onto itself: %w", NetnsDir, err)
		}
		bound = true
	}
}

// NamedExists reports whether a named namespace file exists.
func NamedExists(name string) bool {
	_, err := os.Lstat(filepath.Join(NetnsDir, name))
	return err == nil
}

// createNamed makes a new network namespace and binds it to
// NetnsDir/name. The calling thread is left inside the new namespace; the
// caller has locked it and switches back.
func createNamed(name string) (netns.NsHandle, error) {
	if err := prepareNetnsDir(); err != nil {
		return netns.None(), err
	}
	path := filepath.Join(NetnsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return netns.None(), fmt.Errorf("netlab: create %s: %w", path, err)
	}
	f.Close()
	ns, err := netns.New()
	if err != nil {
		os.Remove(path)
		return netns.None(), fmt.Errorf("netlab: new netns: %w", err)
	}
	self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
		ns.Close()
		os.Remove(path)
		return netns.None(), fmt.Errorf("netlab: bind netns to %s: %w", path, err)
	}
	return ns, nil
}

// RemoveNamed unmounts and removes NetnsDir/name, as ip netns delete does.
// A name that does not exist is not an error. It retries a busy file for a
// few seconds (a process may still be leaving the namespace).
func RemoveNamed(name string) error {
	path := filepath.Join(NetnsDir, name)
	var err error
	for range 50 {
		// Every mount stacked on the file (a bind made twice, or one that
		// propagated back) goes, until it is no mount point at all.
		for range 16 {
			uerr := unix.Unmount(path, unix.MNT_DETACH)
			if uerr == nil {
				continue
			}
			if !errors.Is(uerr, unix.EINVAL) && !errors.Is(uerr, unix.ENOENT) {
				err = fmt.Errorf("netlab: unmount %s: %w", path, uerr)
			}
			break
		}
		rerr := os.Remove(path)
		if rerr == nil || errors.Is(rerr, os.ErrNotExist) {
			return nil
		}
		err = fmt.Errorf("netlab: remove %s: %w", path, rerr)
		if !errors.Is(rerr, unix.EBUSY) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}
