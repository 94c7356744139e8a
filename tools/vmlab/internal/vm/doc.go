// Package vm boots a kernel and initramfs in QEMU (software emulation) and
// reads the guest's serial console: it streams the guest command's output,
// finds the end marker with the command's exit code, and recognises kernel
// panics and oopses, which make the run a lab failure rather than a test
// result.
package vm
