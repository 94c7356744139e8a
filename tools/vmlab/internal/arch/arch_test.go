package arch

import (
	"slices"
	"testing"
)

func TestLookup(t *testing.T) {
	for _, tt := range []struct {
		name, want, console, qemu string
	}{
		{"", "amd64", "ttyS0", "qemu-system-x86_64"},
		{"amd64", "amd64", "ttyS0", "qemu-system-x86_64"},
		{"arm64", "arm64", "ttyAMA0", "qemu-system-aarch64"},
	} {
		a, err := Lookup(tt.name)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", tt.name, err)
		}
		if a.Name != tt.want || a.Console != tt.console || a.Qemu != tt.qemu {
			t.Errorf("Lookup(%q) = %+v", tt.name, a)
		}
	}
	for _, bad := range []string{"x86_64", "aarch64", "riscv64", "ARM64"} {
		if _, err := Lookup(bad); err == nil {
			t.Errorf("Lookup(%q) accepted", bad)
		}
	}
}

func TestMachine(t *testing.T) {
	// The x86 guest must keep cmpxchg16b off (6.12 slab crashes); the arm64
	// guest needs the virt board and cheap pointer authentication.
	if !slices.Equal(AMD64.Machine, []string{"-cpu", "max,-cx16"}) {
		t.Errorf("amd64 machine = %q", AMD64.Machine)
	}
	if !slices.Equal(ARM64.Machine, []string{"-M", "virt", "-cpu", "max,pauth-impdef=on"}) {
		t.Errorf("arm64 machine = %q", ARM64.Machine)
	}
	if (Arch{}).OrDefault().Name != "amd64" || ARM64.OrDefault().Name != "arm64" {
		t.Error("OrDefault")
	}
}
