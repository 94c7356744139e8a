// Package arch describes the guest architectures vmlab boots: which QEMU
// system emulator and machine, which serial console, which Debian
// architecture and library directory, and which kernel lines exist for it.
package arch
