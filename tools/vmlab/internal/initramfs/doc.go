// Package initramfs writes the gzip-compressed newc cpio archives vmlab
// boots as the guest's root file system, and finds what goes in them: the
// shared libraries a host binary needs (from ldd) and busybox's applets.
package initramfs
