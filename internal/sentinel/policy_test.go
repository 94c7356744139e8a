package sentinel

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/testutil"
)

func TestKernelDev(t *testing.T) {
	for _, c := range []struct {
		major, minor uint32
		want         uint32
	}{{8, 1, 8<<20 | 1}, {0, 25, 25}, {259, 70000, 259<<20 | 70000}} {
		if got := kernelDev(unix.Mkdev(c.major, c.minor)); got != c.want {
			t.Errorf("kernelDev(%d:%d) = %#x, want %#x", c.major, c.minor, got, c.want)
		}
	}
}

func TestPolicyResolvesInodes(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "etc", "serviceradar")
	if err := os.MkdirAll(filepath.Join(cfg, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	sweep := filepath.Join(cfg, "sweep.json")
	os.WriteFile(sweep, []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(cfg, "sub", "x.json"), []byte("{}"), 0o644)
	bin := filepath.Join(dir, "bin", "agent")
	os.MkdirAll(filepath.Dir(bin), 0o755)
	os.WriteFile(bin, []byte("x"), 0o755)
	link := filepath.Join(dir, "bin", "agent-link")
	os.Symlink(bin, link)

	p := newPolicy()
	if err := p.protectTree(cfg, RoleAgent); err != nil {
		t.Fatal(err)
	}
	if err := p.protectFile(link, flagAgentBinary, RoleUpdater); err != nil {
		t.Fatal(err)
	}
	get := func(path string, follow bool) Entry {
		t.Helper()
		var st unix.Stat_t
		var err error
		if follow {
			err = unix.Stat(path, &st)
		} else {
			err = unix.Lstat(path, &st)
		}
		if err != nil {
			t.Fatal(err)
		}
		e, ok := p.entries[inodeOf(&st)]
		if !ok {
			t.Fatalf("%s not in policy", path)
		}
		return *e
	}
	if e := get(cfg, false); e.Flags != flagProtected|flagChildren || e.Allow != RoleAgent {
		t.Errorf("config dir: %+v", e)
	}
	if e := get(filepath.Join(cfg, "sub"), false); e.Flags != flagProtected|flagChildren {
		t.Errorf("sub dir: %+v", e)
	}
	if e := get(sweep, false); e.Flags != flagProtected || e.Allow != RoleAgent {
		t.Errorf("sweep.json: %+v", e)
	}
	// A hard link is the same inode: the same entry.
	hl := filepath.Join(dir, "hardlink")
	if err := os.Link(sweep, hl); err != nil {
		t.Fatal(err)
	}
	if e := get(hl, false); e.Path != sweep {
		t.Errorf("hard link resolved to %+v", e)
	}
	if e := get(bin, true); e.Flags&(flagProtected|flagAgentBinary) != flagProtected|flagAgentBinary || e.Allow != RoleUpdater {
		t.Errorf("symlink target: %+v", e)
	}
	if e := get(link, false); e.Flags&flagProtected == 0 {
		t.Errorf("symlink itself: %+v", e)
	}
	if e := get(filepath.Dir(cfg), false); e.Flags != flagAncestor || e.Allow != 0 {
		t.Errorf("ancestor: %+v", e)
	}
	if e := get("/", false); e.Flags != flagAncestor {
		t.Errorf("root: %+v", e)
	}
	// An unrelated file is not in the policy.
	other := filepath.Join(dir, "other")
	os.WriteFile(other, nil, 0o644)
	var st unix.Stat_t
	unix.Stat(other, &st)
	if _, ok := p.entries[inodeOf(&st)]; ok {
		t.Error("unrelated file in policy")
	}
}

func TestSelectProgramsHostKernel(t *testing.T) {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	spec, err := loadSentinel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := selectPrograms(spec, kernel); err != nil {
		t.Fatal(err)
	}
	hooks := map[string]string{}
	for name, p := range spec.Programs {
		if prev, dup := hooks[p.AttachTo]; dup {
			t.Errorf("hook %s has %s and %s", p.AttachTo, prev, name)
		}
		hooks[p.AttachTo] = name
	}
	for _, h := range []string{"file_open", "inode_setattr", "inode_unlink", "inode_rename", "inode_setxattr", "bpf_map", "bpf", "ptrace_access_check", "sb_mount"} {
		if _, ok := hooks[h]; !ok {
			t.Errorf("no program for %s", h)
		}
	}
	t.Logf("programs for this kernel: %v", hooks)
}

func TestCheckAllowlist(t *testing.T) {
	spec, err := loadSentinel()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkAllowlist(spec); err != nil {
		t.Fatal(err)
	}
}

// The filter's size and hash are defined twice, in sentinel.c and here.
func TestListedFilter(t *testing.T) {
	spec, err := loadSentinel()
	if err != nil {
		t.Fatal(err)
	}
	m := spec.Maps[mapListed]
	if m == nil || m.MaxEntries != 1<<listedBits || m.ValueSize != 1 || m.Flags != 0 {
		t.Fatalf("%s spec %+v, want %d one-byte slots and no flags (not mmapable)", mapListed, m, 1<<listedBits)
	}
	for ino, want := range map[uint64]uint32{0: 0, 1: 0x278d, 2: 0x0f1b, 1 << 40: 0x129f, ^uint64(0): 0x1872} {
		if got := listedSlot(ino); got != want {
			t.Errorf("listedSlot(%d) = %#x, want %#x", ino, got, want)
		}
	}
}

// A protected file on a block device protects the device from write opens
// (no role allowed); on an anonymous device (tmpfs, major 0) there is none.
func TestPolicyBlockDevice(t *testing.T) {
	p := newPolicy()
	disk := uint32(8<<20 | 1)
	p.add(Inode{Dev: disk, Ino: 12}, flagProtected, RoleAgent, "/etc/serviceradar/sweep.json")
	p.add(Inode{Dev: disk, Ino: 13}, flagProtected|flagAgentBinary, RoleUpdater, "/usr/local/bin/serviceradar-agent")
	p.add(Inode{Dev: disk, Ino: 2}, flagAncestor, 0, "/etc")
	p.add(Inode{Dev: 45, Ino: 7}, flagProtected|flagChildren, RoleAgent, "/run/fortress")
	var got []Entry
	for _, e := range p.Entries() {
		if e.Flags&flagBlockDev != 0 {
			got = append(got, e)
		}
	}
	if len(got) != 1 {
		t.Fatalf("block device entries: %+v, want one", got)
	}
	e := got[0]
	if e.Inode != (Inode{Dev: disk}) || e.Flags != flagBlockDev || e.Allow != 0 || e.Path != "block device of /etc/serviceradar/sweep.json" {
		t.Errorf("block device entry %+v", e)
	}
}

// Lockdown reasons are named from the running kernel's BTF, whose values
// differ between kernels.
func TestLockdownReasonNames(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		testutil.MissingFeature(t, "kernel BTF: "+err.Error())
	}
	var e *btf.Enum
	if err := spec.TypeByName("lockdown_reason", &e); err != nil {
		testutil.MissingFeature(t, "enum lockdown_reason in kernel BTF: "+err.Error())
	}
	seen := 0
	for _, v := range e.Values {
		if v.Name == "LOCKDOWN_DEV_MEM" || v.Name == "LOCKDOWN_BPF_WRITE_USER" {
			seen++
			if got := lockdownReason(v.Value); got != v.Name {
				t.Errorf("lockdownReason(%d) = %q, want %q", v.Value, got, v.Name)
			}
		}
	}
	if seen != 2 {
		t.Errorf("kernel enum lockdown_reason lacks DEV_MEM or BPF_WRITE_USER: %+v", e.Values)
	}
	if got := lockdownReason(1 << 40); got != "lockdown reason 1099511627776" {
		t.Errorf("unknown reason: %q", got)
	}
}
