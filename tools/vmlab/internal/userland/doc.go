// Package userland assembles the guest's own programs when the guest's
// architecture is not the host's: static busybox, dash as /bin/sh,
// iproute2's ip and bpftool, taken from Debian packages of the guest's
// architecture, with every shared library (and the dynamic loader) their
// ELF headers name, followed through the packages' symbolic links without
// ever leaving them. For the host's own architecture the lab copies the
// host's tools instead.
package userland
