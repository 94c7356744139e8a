package initramfs

import (
	"bufio"
	"context"
	"debug/elf"
	"fmt"
	"os/exec"
	"path"
	"strings"
)

// ParseLdd returns the absolute paths of the libraries (and the dynamic
// loader) in ldd's output, in order, without the vDSO. A library ldd could
// not find is an error.
func ParseLdd(out string) ([]string, error) {
	var libs []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.Contains(line, "statically linked") {
			continue
		}
		if name, target, ok := strings.Cut(line, "=>"); ok {
			target = strings.TrimSpace(target)
			if strings.HasPrefix(target, "not found") {
				return nil, fmt.Errorf("ldd: %s not found", strings.TrimSpace(name))
			}
			if f := strings.Fields(target); len(f) > 0 && strings.HasPrefix(f[0], "/") {
				libs = append(libs, f[0])
			}
			continue
		}
		// "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no path.
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "/") {
			libs = append(libs, f[0])
		}
	}
	return libs, sc.Err()
}

// Libraries returns the shared libraries and dynamic loader that the host
// binary bin needs, as ldd lists them; none for a static binary.
func Libraries(ctx context.Context, bin string) ([]string, error) {
	static, err := IsStatic(bin)
	if err != nil {
		return nil, err
	}
	if static {
		return nil, nil
	}
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	libs, err := ParseLdd(string(out))
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	return libs, nil
}

// IsStatic reports whether the ELF binary bin has no program interpreter.
func IsStatic(bin string) (bool, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return false, fmt.Errorf("read elf %s: %w", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

// ParseApplets parses "busybox --list-full" output (one "dir/name" per
// line) into absolute guest paths.
func ParseApplets(out string) []string {
	var paths []string
	for _, l := range strings.Fields(out) {
		paths = append(paths, path.Clean("/"+l))
	}
	return paths
}

// Applets lists the applets of the busybox binary at bin.
func Applets(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, bin, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w", err)
	}
	return ParseApplets(string(out)), nil
}
