package arch

import (
	"fmt"
	"runtime"
	"strings"
)

// Arch is a guest architecture.
type Arch struct {
	// Name is Go's GOARCH and Debian's architecture name, which agree for
	// every architecture here: "amd64", "arm64".
	Name string
	// Qemu is the system emulator; QemuPackage the Debian package holding it.
	Qemu, QemuPackage string
	// Machine are the emulator's machine and CPU arguments.
	Machine []string
	// Console is the serial console the kernel writes to.
	Console string
	// Triplet names the multiarch library directory (lib/<Triplet>).
	Triplet string
}

// AMD64 is the x86-64 guest. Software emulation without cmpxchg16b: KVM
// does not boot these kernels on the lab machines, and the emulated
// cmpxchg16b crashes 6.12's slab allocator at random.
var AMD64 = Arch{
	Name:        "amd64",
	Qemu:        "qemu-system-x86_64",
	QemuPackage: "qemu-system-x86",
	Machine:     []string{"-cpu", "max,-cx16"},
	Console:     "ttyS0",
	Triplet:     "x86_64-linux-gnu",
}

// ARM64 is the arm64 guest: QEMU's "virt" board, which boots an arm64
// kernel image directly (no firmware) with a PL011 console. pauth-impdef
// swaps the architected pointer-authentication cipher (QARMA, slow to
// emulate) for QEMU's own, which keeps TCG fast.
var ARM64 = Arch{
	Name:        "arm64",
	Qemu:        "qemu-system-aarch64",
	QemuPackage: "qemu-system-arm",
	Machine:     []string{"-M", "virt", "-cpu", "max,pauth-impdef=on"},
	Console:     "ttyAMA0",
	Triplet:     "aarch64-linux-gnu",
}

// All are the architectures vmlab knows, the default first.
var All = []Arch{AMD64, ARM64}

// Lookup returns the architecture named name; "" is the default, amd64.
func Lookup(name string) (Arch, error) {
	if name == "" {
		return AMD64, nil
	}
	for _, a := range All {
		if a.Name == name {
			return a, nil
		}
	}
	names := make([]string, len(All))
	for i, a := range All {
		names[i] = a.Name
	}
	return Arch{}, fmt.Errorf("unknown architecture %q (known: %s)", name, strings.Join(names, ", "))
}

// Native reports whether a runs the host's own binaries: then the guest
// gets the host's tools, otherwise tools of its own architecture.
func (a Arch) Native() bool { return a.Name == runtime.GOARCH }

// IsZero reports whether a is the zero Arch (callers then mean AMD64).
func (a Arch) IsZero() bool { return a.Name == "" }

// OrDefault returns a, or AMD64 when a is zero.
func (a Arch) OrDefault() Arch {
	if a.IsZero() {
		return AMD64
	}
	return a
}

// Host returns the host's architecture; ok is false when vmlab does not
// know it as a guest architecture.
func Host() (a Arch, ok bool) {
	a, err := Lookup(runtime.GOARCH)
	return a, err == nil
}
