package sentinel

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/pins"
	"github.com/carverauto/fortress/internal/testutil"
)

// TestLabRmRfConfig is the spec's metric: root runs
// rm -rf /etc/serviceradar/sweep.json and the kernel blocks it.
func TestLabRmRfConfig(t *testing.T) {
	l := newLab(t)
	sweep := filepath.Join(l.configDir, "sweep.json")
	l.refuse(attack{name: "rm -rf " + sweep, run: func() error { return sh("rm -rf " + sweep) }})
	if _, err := os.Stat(sweep); err != nil {
		t.Fatalf("sweep.json gone: %v", err)
	}
}

func TestLabConfigAttacks(t *testing.T) {
	l := newLab(t)
	cfg := l.configDir
	sweep := filepath.Join(cfg, "sweep.json")
	l.refuse(
		attack{name: "1 rm -f sweep.json", run: func() error { return sh("rm -f " + sweep) }},
		attack{name: "1 rm -rf config dir", run: func() error { return sh("rm -rf " + cfg) }},
		attack{name: "1 unlink(2)", run: func() error { return unix.Unlink(sweep) }, errno: unix.EPERM},
		attack{name: "2 echo x > sweep.json", run: func() error { return sh("echo x > " + sweep) }},
		attack{name: "2 echo x >> sweep.json", run: func() error { return sh("echo x >> " + sweep) }},
		attack{name: "2 open O_WRONLY", run: func() error { return openWrite(sweep, unix.O_WRONLY) }, errno: unix.EPERM},
		attack{name: "2 open O_RDONLY|O_TRUNC", run: func() error { return openWrite(sweep, unix.O_RDONLY|unix.O_TRUNC) }, errno: unix.EPERM},
		attack{name: "2 reopen /proc/self/fd for write", run: func() error {
			f, err := os.Open(sweep)
			if err != nil {
				return err
			}
			defer f.Close()
			return openWrite(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.O_WRONLY)
		}, errno: unix.EPERM},
		attack{name: "2 write through a hard link made before start", run: func() error { return openWrite("/etc/.sweep-hardlink", unix.O_WRONLY|unix.O_APPEND) }, errno: unix.EPERM},
		attack{name: "3 truncate -s0", run: func() error { return sh("truncate -s0 " + sweep) }},
		attack{name: "3 truncate(2)", run: func() error { return unix.Truncate(sweep, 0) }, errno: unix.EPERM},
		attack{name: "4 mv sweep.json /tmp/", run: func() error { return sh("mv " + sweep + " /tmp/") }},
		attack{name: "4 rename(2) within /etc", run: func() error { return unix.Rename(sweep, "/etc/sweep.json") }, errno: unix.EPERM},
		attack{name: "5 rename over sweep.json", run: func() error {
			must(t, os.WriteFile("/etc/evil.json", []byte("evil"), 0o644))
			defer os.Remove("/etc/evil.json")
			return unix.Rename("/etc/evil.json", sweep)
		}, errno: unix.EPERM},
		attack{name: "5 mv /tmp/evil.json over sweep.json", run: func() error { return sh("mv /tmp/evil.json " + sweep) }},
		attack{name: "6 sed -i", run: func() error { return sh("sed -i s/a/b/ " + sweep) }},
		attack{name: "7 cp /tmp/evil.json", run: func() error { return sh("cp /tmp/evil.json " + sweep) }},
		attack{name: "8 touch new.json", run: func() error { return sh("touch " + filepath.Join(cfg, "new.json")) }},
		attack{name: "8 touch sweep.json (utimes)", run: func() error { return sh("touch " + sweep) }},
		attack{name: "8 mkdir inside", run: func() error { return unix.Mkdir(filepath.Join(cfg, "d"), 0o755) }, errno: unix.EPERM},
		attack{name: "8 mknod fifo inside", run: func() error { return unix.Mkfifo(filepath.Join(cfg, "p"), 0o644) }, errno: unix.EPERM},
		attack{name: "9 chmod 666", run: func() error { return sh("chmod 666 " + sweep) }},
		attack{name: "9 chown nobody", run: func() error { return sh("chown 65534 " + sweep) }},
		attack{name: "9 chmod the dir", run: func() error { return unix.Chmod(cfg, 0o777) }, errno: unix.EPERM},
		attack{name: "10 ln sweep.json /etc/h", run: func() error { return unix.Link(sweep, "/etc/h") }, errno: unix.EPERM},
		attack{name: "11 ln -s into config dir", run: func() error { return sh("ln -s /tmp/evil.json " + filepath.Join(cfg, "a.json")) }},
		attack{name: "12 mv config dir", run: func() error { return sh("mv " + cfg + " /etc/old") }},
		attack{name: "12 rename /etc (ancestor)", run: func() error { return unix.Rename("/etc", "/etc-old") }, errno: unix.EPERM},
		attack{name: "xattr set", run: func() error { return unix.Setxattr(sweep, "user.evil", []byte("1"), 0) }, errno: unix.EPERM},
		attack{name: "xattr remove", run: func() error { return unix.Removexattr(sweep, "user.evil") }, errno: unix.EPERM},
		attack{name: "acl set", run: func() error { return unix.Setxattr(sweep, "system.posix_acl_access", posixACL(), 0) }, errno: unix.EPERM},
		attack{name: "chattr ioctl FS_IOC_SETFLAGS", run: func() error {
			f, err := os.Open(sweep)
			if err != nil {
				return err
			}
			defer f.Close()
			return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, 0x10) // FS_IMMUTABLE_FL
		}, errno: unix.EPERM},
		attack{name: "mount tmpfs over config dir", run: func() error { return unix.Mount("none", cfg, "tmpfs", 0, "") }, errno: unix.EPERM},
		attack{name: "bind mount over sweep.json", run: func() error { return unix.Mount("/tmp/evil.json", sweep, "", unix.MS_BIND, "") }, errno: unix.EPERM},
		attack{name: "mount over /etc (ancestor)", run: func() error { return unix.Mount("none", "/etc", "tmpfs", 0, "") }, errno: unix.EPERM},
		attack{name: "state: overwrite trust key", run: func() error { return openWrite(filepath.Join(l.stateDir, "trust.pub"), unix.O_WRONLY|unix.O_TRUNC) }, errno: unix.EPERM},
		attack{name: "state: rm policy.version", run: func() error { return sh("rm -f " + filepath.Join(l.stateDir, "policy.version")) }},
	)
}

// posixACL is a valid minimal access ACL (user::rwx group::r-- other::r--).
func posixACL() []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range [][2]uint16{{0x01, 7}, {0x04, 4}, {0x20, 4}} {
		b = binary.LittleEndian.AppendUint16(b, e[0])
		b = binary.LittleEndian.AppendUint16(b, e[1])
		b = binary.LittleEndian.AppendUint32(b, 0xffffffff)
	}
	return b
}

func TestLabAgentBinaryAttacks(t *testing.T) {
	l := newLab(t)
	evil := filepath.Join(filepath.Dir(l.agentBin), "evil")
	l.refuse(
		attack{name: "13 cp evil over agent (running: ETXTBSY first)", run: func() error { return sh("cp " + evil + " " + l.agentBin) }, kernelFirst: "text file busy"},
		attack{name: "13 cp evil over the updater binary", run: func() error { return sh("cp " + evil + " " + l.updaterBin) }},
		attack{name: "14 mv evil over agent", run: func() error { return sh("mv " + evil + " " + l.agentBin) }},
		attack{name: "15 rm agent", run: func() error { return sh("rm " + l.agentBin) }},
		attack{name: "rename agent away", run: func() error { return unix.Rename(l.agentBin, evil+"2") }, errno: unix.EPERM},
		attack{name: "hard link to agent", run: func() error { return unix.Link(l.agentBin, evil+"3") }, errno: unix.EPERM},
		attack{name: "chmod agent", run: func() error { return unix.Chmod(l.agentBin, 0o777) }, errno: unix.EPERM},
		attack{name: "write into staging dir", run: func() error { return openWrite(filepath.Join(l.staging, "x"), unix.O_CREAT|unix.O_WRONLY) }, errno: unix.EPERM},
		attack{name: "overwrite updater", run: func() error { return openWrite(l.updaterBin, unix.O_WRONLY) }, errno: unix.EPERM},
		attack{name: "rename the bin dir (ancestor)", run: func() error { return unix.Rename(filepath.Dir(l.agentBin), filepath.Dir(l.agentBin)+"-old") }, errno: unix.EPERM},
	)
	// Exec, read and stat of the agent binary stay open to everyone.
	if err := exec.Command(l.agentBin, "-test.run=^$").Run(); err != nil {
		t.Errorf("exec agent binary: %v", err)
	}
	if _, err := os.ReadFile(l.agentBin); err != nil {
		t.Errorf("read agent binary: %v", err)
	}
}

func TestLabBPFStateAttacks(t *testing.T) {
	l := newLab(t)
	id := l.mustDo("newmap shield_rules")
	shieldPin := l.pinRoot.Path(pins.Shield, "shield_rules")
	objPin := l.pinRoot.Path(pins.Sentinel, "map_"+mapObjects)
	linkPin := l.pinRoot.Path(pins.Sentinel, "link_file_open")
	// bpftool is single-threaded: it may open the link pin (this test
	// process may not, see below).
	out, err := exec.Command("bpftool", "-j", "link", "show", "pinned", linkPin).Output()
	must(t, err)
	var li struct{ ID uint32 }
	must(t, json.Unmarshal(out, &li))
	linkID := strconv.Itoa(int(li.ID))
	l.refuse(
		attack{name: "17 bpftool map update pinned (shield map)", run: func() error {
			return sh("bpftool map update pinned " + shieldPin + " key 1 0 0 0 value 9 9 9 9")
		}},
		attack{name: "17 bpftool map update pinned (sentinel objects)", run: func() error {
			return sh("bpftool map delete pinned " + objPin + " key hex " + strings.Repeat("00 ", 16))
		}},
		attack{name: "18 bpftool map delete id", run: func() error { return sh("bpftool map delete id " + id + " key 1 0 0 0") }},
		attack{name: "18 bpftool map update id", run: func() error { return sh("bpftool map update id " + id + " key 1 0 0 0 value 9 9 9 9") }},
		attack{name: "18 map fd by id read-write", run: func() error {
			n, _ := strconv.Atoi(id)
			m, err := ebpf.NewMapFromID(ebpf.MapID(n))
			if err == nil {
				m.Close()
			}
			return err
		}, errno: unix.EPERM},
		attack{name: "18 write through a read-only pinned fd", run: func() error {
			m, err := ebpf.LoadPinnedMap(shieldPin, &ebpf.LoadPinOptions{ReadOnly: true})
			if err != nil {
				return fmt.Errorf("read-only open must work: %v", err)
			}
			defer m.Close()
			return m.Put(uint32(1), uint32(9))
		}, errno: unix.EPERM},
		attack{name: "19 rm -rf pin root", run: func() error { return sh("rm -rf " + string(l.pinRoot)) }},
		attack{name: "19 mv a pin", run: func() error { return sh("mv " + linkPin + " " + linkPin + "_old") }},
		attack{name: "19 pin a foreign object into the pin dir", run: func() error {
			return sh("bpftool map pin id " + id + " " + l.pinRoot.Path(pins.Shield, "evil"))
		}},
		attack{name: "19 umount the pin bpffs", run: func() error { return unix.Unmount(filepath.Join(l.dir, "bpf"), 0) }, errno: unix.EPERM},
		// LSM (tracing) links have no detach operation: the kernel itself
		// answers EOPNOTSUPP before anything else.
		attack{name: "21 bpftool link detach", run: func() error { return sh("bpftool link detach id " + linkID) }, kernelFirst: "not supported"},
		// A multithreaded process may not get a Fortress link fd at all:
		// another thread could swap it under a command the hook has
		// already allowed.
		attack{name: "21 open a link pin into a shared fd table", run: func() error {
			ln, err := link.LoadPinnedLink(linkPin, nil)
			if err == nil {
				ln.Close()
			}
			return err
		}, errno: unix.EPERM},
		attack{name: "18 fork while holding a read-write map fd", run: func() error {
			return holdAndFork(shieldPin)
		}, errno: unix.EPERM},
		attack{name: "21 BPF_LINK_DETACH", run: func() error {
			ln, err := link.NewFromID(link.ID(li.ID))
			if err != nil {
				return fmt.Errorf("open link: %v", err)
			}
			defer ln.Close()
			return ln.Detach()
		}},
	)
	// Reads stay open: dumps and listings.
	for _, c := range []string{
		"bpftool map dump pinned " + shieldPin,
		"bpftool map dump id " + id,
		"bpftool map dump pinned " + objPin,
		"bpftool map show",
		"bpftool prog show",
		"bpftool link show",
		"ls -l " + l.pinRoot.Dir(pins.Sentinel),
	} {
		if err := sh(c + " >/dev/null"); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
	var v uint32
	m, err := ebpf.LoadPinnedMap(shieldPin, &ebpf.LoadPinOptions{ReadOnly: true})
	must(t, err)
	defer m.Close()
	if err := m.Lookup(uint32(1), &v); err != nil || v != 100 {
		t.Errorf("shield map entry = %d, %v; want 100", v, err)
	}
}

// TestLabRawDevice: the agent's state directory is a filesystem on a block
// device (an ext2 RAM disk). Root may not open that device for writing,
// by its node or by a node of its own made with mknod: dd or debugfs -w
// would change the files under every inode check. Reading the device, and
// writing a RAM disk that holds nothing protected, still work.
func TestLabRawDevice(t *testing.T) {
	testutil.RequireLab(t, testutil.LSMReason)
	const dev, other, state = "/dev/ram0", "/dev/ram1", "/var/lib/serviceradar"
	var st unix.Stat_t
	for _, d := range []string{dev, other} {
		if err := unix.Stat(d, &st); err != nil {
			t.Fatalf("no RAM disk %s (vmlab loads brd): %v", d, err)
		}
	}
	os.RemoveAll(state)
	must(t, os.MkdirAll(state, 0o700))
	if err := sh("mke2fs -F " + dev); err != nil {
		t.Fatal(err)
	}
	// noatime: reads of the protected files must not change the device.
	must(t, unix.Mount(dev, state, "ext4", unix.MS_NOATIME, ""))
	t.Cleanup(func() { unix.Unmount(state, unix.MNT_DETACH) }) // after the lab's teardown
	l := newLab(t)
	if l.snapshot()[filepath.Join(state, "trust.pub")] == "" {
		t.Fatal("state not on the RAM disk")
	}
	node := filepath.Join(l.dir, "rawdisk")
	must(t, unix.Stat(dev, &st))
	must(t, unix.Mknod(node, unix.S_IFBLK|0o600, int(st.Rdev)))
	sum := func() [32]byte {
		t.Helper()
		must(t, sh("sync"))
		b, err := os.ReadFile(dev) // a read-only open: reads stay allowed
		if err != nil {
			t.Fatalf("read %s: %v", dev, err)
		}
		return sha256.Sum256(b)
	}
	before := sum()
	l.refuse(
		attack{name: "dd onto the state directory's block device", run: func() error {
			return sh("dd if=/dev/zero of=" + dev + " bs=64k count=16 conv=notrunc")
		}},
		attack{name: "write the device through a node made with mknod", run: func() error {
			return openWrite(node, unix.O_WRONLY)
		}, errno: unix.EPERM},
	)
	if sum() != before {
		t.Error("the block device changed")
	}
	if err := sh("dd if=/dev/zero of=" + other + " bs=64k count=1"); err != nil {
		t.Errorf("control: write a RAM disk that holds nothing protected: %v", err)
	}
}

// The spare module vmlab copies into the guest without loading it.
const (
	spareModule     = "/lib/modules/vmlab/spare/nls_utf8.ko"
	spareModuleName = "nls_utf8"
)

// stripModuleSignature returns a signed module image without its appended
// signature: the signature, struct module_signature (12 bytes, the
// signature's length big-endian in its last 4) and the magic string.
func stripModuleSignature(b []byte) ([]byte, error) {
	const magic = "~Module signature appended~\n"
	if !bytes.HasSuffix(b, []byte(magic)) {
		return nil, errors.New("module is not signed")
	}
	b = b[:len(b)-len(magic)]
	if len(b) < 12 {
		return nil, errors.New("module signature truncated")
	}
	n := int(binary.BigEndian.Uint32(b[len(b)-4:]))
	if n > len(b)-12 {
		return nil, errors.New("module signature length out of range")
	}
	return b[:len(b)-12-n], nil
}

// TestLabKernelIntegrity: root's ways to write kernel memory, or the
// agent's, around every LSM check: a module without a signature, a
// tracing program with
// bpf_probe_write_user (it could rewrite the agent's buffers as the agent
// reads its trust key), kexec_load, and /dev/mem. Each works before
// Sentinel is loaded (so a refusal is Sentinel's) and is refused, with an
// event naming the lockdown reason, while it enforces.
func TestLabKernelIntegrity(t *testing.T) {
	testutil.RequireLab(t, testutil.LSMReason)
	writeUser := func() error {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type:    ebpf.TracePoint,
			License: "GPL",
			Instructions: asm.Instructions{
				asm.Mov.Imm(asm.R1, 0),
				asm.StoreMem(asm.R10, -8, asm.R1, asm.DWord),
				asm.Mov.Reg(asm.R2, asm.R10),
				asm.Add.Imm(asm.R2, -8),
				asm.Mov.Imm(asm.R3, 8),
				asm.FnProbeWriteUser.Call(),
				asm.Mov.Imm(asm.R0, 0),
				asm.Return(),
			},
		})
		if err == nil {
			p.Close()
		}
		return err
	}
	kexecUnload := func() error { // no segments: unload, a no-op here
		if _, _, e := unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0, 0, 0); e != 0 {
			return e
		}
		return nil
	}
	devMem := func() error {
		f, err := os.Open("/dev/mem")
		if err == nil {
			f.Close()
		}
		return err
	}
	signed, err := os.ReadFile(spareModule)
	if err != nil {
		t.Fatalf("spare module (vmlab copies it): %v", err)
	}
	unsigned, err := stripModuleSignature(signed)
	if err != nil {
		t.Fatal(err)
	}
	loadModule := func(image []byte) func() error {
		return func() error {
			if err := unix.InitModule(image, ""); err != nil {
				return err
			}
			if err := unix.DeleteModule(spareModuleName, 0); err != nil {
				return fmt.Errorf("unload %s: %v (not a refusal)", spareModuleName, err)
			}
			return nil
		}
	}
	attacks := []attack{
		{name: "load a module without a signature", run: loadModule(unsigned), errno: unix.EPERM},
		{name: "load a tracing program that calls bpf_probe_write_user", run: writeUser, errno: unix.EINVAL},
		{name: "kexec_load", run: kexecUnload, errno: unix.EPERM},
		{name: "open /dev/mem", run: devMem, errno: unix.EPERM},
	}
	for _, a := range attacks {
		if err := a.run(); err != nil {
			t.Fatalf("control: %s without Sentinel: %v", a.name, err)
		}
	}
	l := newLab(t)
	mark := l.eventCount()
	l.refuse(attacks...)
	// A module with the distribution's signature still loads.
	if err := loadModule(signed)(); err != nil {
		t.Errorf("control: load the signed module with Sentinel enforcing: %v", err)
	}
	for _, reason := range []string{"LOCKDOWN_MODULE_SIGNATURE", "LOCKDOWN_BPF_WRITE_USER", "LOCKDOWN_KEXEC", "LOCKDOWN_DEV_MEM"} {
		if _, ok := l.waitEvent(mark, func(e Event) bool {
			return e.Op == "lockdown" && e.Verdict == VerdictDenied && e.Detail == reason
		}); !ok {
			t.Errorf("no denied lockdown event naming %s", reason)
		}
	}
}

func TestLabAgentProcessAttacks(t *testing.T) {
	l := newLab(t)
	pid := l.agent.cmd.Process.Pid
	l.refuse(
		attack{name: "24 ptrace attach", run: func() error { return unix.PtraceAttach(pid) }, errno: unix.EPERM},
		attack{name: "24 ptrace seize", run: func() error { return unix.PtraceSeize(pid) }, errno: unix.EPERM},
		attack{name: "24 write /proc/AGENT/mem", run: func() error { return openWrite(fmt.Sprintf("/proc/%d/mem", pid), unix.O_RDWR) }, errno: unix.EACCES},
		attack{name: "24 process_vm_writev", run: func() error {
			local := []unix.Iovec{{Base: &[]byte{0}[0], Len: 1}}
			remote := []unix.RemoteIovec{{Base: 0x400000, Len: 1}}
			_, err := unix.ProcessVMWritev(pid, local, remote, 0)
			return err
		}, errno: unix.EPERM},
		attack{name: "24 pidfd_getfd", run: func() error {
			pfd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				return fmt.Errorf("pidfd_open: %v", err)
			}
			defer unix.Close(pfd)
			fd, err := unix.PidfdGetfd(pfd, 3, 0)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}, errno: unix.EPERM},
	)
	// The agent is alive and still answers.
	l.mustDo("status")
}

// TestLabLegitimate: everything the agent, the updater and readers do
// keeps working, and unprotected paths are untouched by Sentinel.
func TestLabLegitimate(t *testing.T) {
	l := newLab(t)
	sweep := filepath.Join(l.configDir, "sweep.json")
	mark := l.eventCount()
	// The agent writes its config, creates a new file, renames inside.
	l.mustDo("write " + sweep + ` {"networks":["192.0.2.0/24"]}`)
	l.mustDo("write " + filepath.Join(l.configDir, "new.json") + " {}")
	l.mustDo("rename " + filepath.Join(l.configDir, "new.json") + " " + filepath.Join(l.configDir, "new2.json"))
	if b, _ := os.ReadFile(sweep); string(b) != `{"networks":["192.0.2.0/24"]}` {
		t.Errorf("agent write lost: %q", b)
	}
	// A file the agent created later is protected like the others.
	l.refuse(attack{name: "rm a file the agent created", run: func() error { return unix.Unlink(filepath.Join(l.configDir, "new2.json")) }, errno: unix.EPERM})
	// 26: reading, listing, stat by anyone; an open event for a watched path.
	if out, err := exec.Command("cat", sweep).Output(); err != nil || !strings.Contains(string(out), "192.0.2.0") {
		t.Errorf("cat sweep.json: %q %v", out, err)
	}
	if e, ok := l.waitEvent(mark, func(e Event) bool { return e.Op == "open" && e.Comm == "cat" && e.Path == sweep }); !ok {
		t.Errorf("26: no open event for cat of sweep.json")
	} else if e.Verdict != VerdictAllowed {
		t.Errorf("26: cat event verdict %s", e.Verdict)
	}
	for _, c := range []string{"ls -la " + l.configDir, "stat " + sweep, "ls " + l.stateDir, "cat " + filepath.Join(l.stateDir, "policy.version")} {
		if err := sh(c + " >/dev/null"); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
	// 27: writes and unlinks on a watched, unprotected path: allowed, with events.
	w := filepath.Join(l.watched, "w.txt")
	mark = l.eventCount()
	if err := sh("echo changed > " + w + " && rm " + w); err != nil {
		t.Fatalf("27: write/unlink of a watched path: %v", err)
	}
	for _, op := range []string{"open_write", "unlink"} {
		e, ok := l.waitEvent(mark, func(e Event) bool { return e.Op == op && e.Path == w })
		if !ok {
			t.Errorf("27: no %s event for %s", op, w)
			continue
		}
		if e.Verdict != VerdictAllowed || e.PID == 0 || e.TGID == 0 || e.Comm == "" || e.Exe == "" || e.Time.IsZero() {
			t.Errorf("27: incomplete event %+v", e)
		}
		t.Logf("27: %s event: pid=%d uid=%d comm=%s exe=%s path=%s", op, e.PID, e.UID, e.Comm, e.Exe, e.Path)
	}
	// Unprotected paths: every kind of mutation works for anyone.
	f := l.free
	for _, c := range []string{
		"echo a > " + f + "/x", "echo b >> " + f + "/x", "truncate -s0 " + f + "/x", "chmod 600 " + f + "/x",
		"mv " + f + "/x " + f + "/y", "ln " + f + "/y " + f + "/z", "ln -s y " + f + "/s", "mkdir " + f + "/d",
		"touch " + f + "/d/t", "rm -rf " + f + "/d " + f + "/y " + f + "/z " + f + "/s",
		"echo x > /etc/other.json && rm /etc/other.json", "mkdir /etc/otherdir && rmdir /etc/otherdir",
		"cp /tmp/evil.json /tmp/evil2.json && rm /tmp/evil2.json",
	} {
		if err := sh(c); err != nil {
			t.Errorf("unprotected: %s: %v", c, err)
		}
	}
	must(t, unix.Mount("none", f, "tmpfs", 0, ""))
	must(t, unix.Unmount(f, 0))
	// ptrace of an ordinary process works.
	cmd := exec.Command("sleep", "30")
	must(t, cmd.Start())
	defer cmd.Process.Kill()
	if err := unix.PtraceSeize(cmd.Process.Pid); err != nil {
		t.Errorf("ptrace of an ordinary process: %v", err)
	}
	if st, _ := l.mustDoStatus(); st.Stats.Denied == 0 {
		t.Errorf("no denials counted: %+v", st.Stats)
	}
}

func (l *lab) mustDoStatus() (Status, error) {
	var st Status
	err := jsonUnmarshal(l.mustDo("status"), &st)
	return st, err
}

func TestLabUpgrade(t *testing.T) {
	l := newLab(t)
	sweep := filepath.Join(l.configDir, "sweep.json")
	// The new release: another copy of the test binary (new content inode).
	newBin := filepath.Join(l.free, "serviceradar-agent-2")
	must(t, copyFile(l.agentBin, newBin))
	mark := l.eventCount()
	cmd := exec.Command(l.updaterBin, newBin, l.staging, l.agentBin)
	cmd.Env = append(os.Environ(), helperEnv+"=update")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("16: update manager failed: %v %s", err, out)
	}
	if _, ok := l.waitEvent(mark, func(e Event) bool { return e.Op == "identity_learned" }); !ok {
		t.Errorf("16: no identity_learned event")
	}
	// The old agent keeps its authority until it restarts.
	l.mustDo("write " + sweep + " {\"v\":2}")
	// The new binary is the agent now: without any restart of Sentinel.
	w := exec.Command(l.agentBin, sweep, `{"v":3}`)
	w.Env = append(os.Environ(), helperEnv+"=write")
	if out, err := w.CombinedOutput(); err != nil {
		t.Fatalf("16: new agent binary cannot write config: %v %s", err, out)
	}
	// Attackers are still refused, the new binary is protected.
	l.refuse(
		attack{name: "overwrite the new agent binary", run: func() error { return openWrite(l.agentBin, unix.O_WRONLY) }, errno: unix.EPERM},
		attack{name: "rm config after upgrade", run: func() error { return unix.Unlink(sweep) }, errno: unix.EPERM},
	)
	// The agent restarts from the new binary: it adopts the pins and prunes
	// the old identity.
	l.mustDo("exit")
	l.agent.stdin.Close()
	l.agent.cmd.Wait()
	l.agent = nil
	l.startAgent(l.agentBin, true)
	l.mustDo("write " + sweep + " {\"v\":4}")
	// The old binary (still at newBin's content? no: the old inode is gone)
	// and the updater copy in free/ are not the agent.
	x := exec.Command(newBin, sweep, "{}")
	x.Env = append(os.Environ(), helperEnv+"=write")
	if out, err := x.CombinedOutput(); err == nil || !strings.Contains(string(out), "not permitted") {
		t.Errorf("a copy of the agent binary got agent authority: %v %s", err, out)
	}
}

func TestLabPersistence(t *testing.T) {
	l := newLab(t)
	before := l.mustDo("linkids")
	sweep := filepath.Join(l.configDir, "sweep.json")
	l.kill9()
	// 22: with the agent dead, every attack still fails.
	l.refuseNoEvents(
		attack{name: "rm config with agent dead", run: func() error { return unix.Unlink(sweep) }, errno: unix.EPERM},
		attack{name: "write config with agent dead", run: func() error { return openWrite(sweep, unix.O_WRONLY|unix.O_TRUNC) }, errno: unix.EPERM},
		attack{name: "rm pins with agent dead", run: func() error { return sh("rm -rf " + string(l.pinRoot)) }},
		attack{name: "overwrite agent with agent dead", run: func() error { return sh("cp /tmp/evil.json " + l.agentBin) }},
	)
	st := l.startAgent(l.agentBin, true)
	after := l.mustDo("linkids")
	if before != after {
		t.Errorf("restart reloaded something:\nbefore %s\nafter  %s", before, after)
	}
	if len(st.Critical) > 0 {
		t.Errorf("adoption raised: %v", st.Critical)
	}
	// Counters survived: the denials made while the agent was dead.
	if st.Stats.Denied < 4 {
		t.Errorf("denial counter %d after restart, want >= 4", st.Stats.Denied)
	}
	l.refuse(attack{name: "rm config after restart", run: func() error { return unix.Unlink(sweep) }, errno: unix.EPERM})
}

// refuseNoEvents checks refusals and unchanged objects while no agent is
// there to read events.
func (l *lab) refuseNoEvents(attacks ...attack) {
	for _, a := range attacks {
		before := l.snapshot()
		err := a.run()
		if err == nil || (a.errno != nil && !errors.Is(err, a.errno)) {
			l.t.Errorf("%s: %v, want refusal", a.name, err)
		}
		if d := before.diff(l.snapshot()); len(d) > 0 {
			l.t.Errorf("%s: changed: %v", a.name, d)
		}
	}
}

func TestLabModes(t *testing.T) {
	l := newLab(t)
	sweep := filepath.Join(l.configDir, "sweep.json")
	orig, _ := os.ReadFile(sweep)
	// Audit mode: logged, not refused.
	l.mustDo("mode audit 600")
	mark := l.eventCount()
	if err := openWrite(sweep, unix.O_WRONLY|unix.O_APPEND); err != nil {
		t.Errorf("audit mode refused a write: %v", err)
	}
	if _, ok := l.waitEvent(mark, func(e Event) bool { return e.Verdict == VerdictAudited && e.Path == sweep }); !ok {
		t.Errorf("no audited event")
	}
	l.mustDo("write " + sweep + " " + string(orig))
	l.mustDo("mode enforce")
	l.refuse(attack{name: "write after enforce", run: func() error { return openWrite(sweep, unix.O_WRONLY) }, errno: unix.EPERM})

	// Maintenance tokens: bad ones change nothing.
	now := time.Now()
	good := Token{Action: ActionRemove, Host: "vmlab", NotBefore: now.Add(-time.Minute), NotAfter: now.Add(5 * time.Second), Nonce: "t1"}
	_, otherPriv, _ := ed25519GenerateKey()
	forged, _ := SignToken(otherPriv, good)
	expired := good
	expired.NotAfter = now.Add(-time.Second)
	rawExpired, _ := SignToken(l.trustPriv, expired)
	for _, tok := range []string{forged, rawExpired, "garbage"} {
		if _, err := l.do("maint " + tok); err == nil {
			t.Errorf("bad token accepted")
		}
	}
	l.refuse(attack{name: "write after bad tokens", run: func() error { return openWrite(sweep, unix.O_WRONLY) }, errno: unix.EPERM})
	// A valid token opens a window the kernel closes by itself.
	raw, err := SignToken(l.trustPriv, good)
	must(t, err)
	l.mustDo("maint " + raw)
	if err := openWrite(filepath.Join(l.configDir, "maint.json"), unix.O_CREAT|unix.O_WRONLY); err != nil {
		t.Errorf("maintenance window refused a write: %v", err)
	}
	time.Sleep(time.Until(good.NotAfter) + time.Second)
	l.refuse(attack{name: "write after the window closed", run: func() error { return openWrite(sweep, unix.O_WRONLY) }, errno: unix.EPERM})

	// With a fresh window, the operator (not the agent) removes Fortress.
	good.NotAfter = time.Now().Add(time.Minute)
	good.Nonce = "t2"
	raw, _ = SignToken(l.trustPriv, good)
	l.mustDo("maint " + raw)
	l.mustDo("exit")
	l.agent.stdin.Close()
	l.agent.cmd.Wait()
	l.agent = nil
	if err := sh("rm -rf " + l.pinRoot.Dir(pins.Sentinel)); err != nil {
		t.Fatalf("operator removal during maintenance: %v", err)
	}
	// Nothing is enforced any more.
	if err := openWrite(sweep, unix.O_WRONLY|unix.O_APPEND); err != nil {
		t.Errorf("write after removal: %v", err)
	}
}

// TestLabEventFlood: 100,000 opens of a watched path. Enforcement is not
// affected and every event is either delivered or counted as lost.
func TestLabEventFlood(t *testing.T) {
	l := newLab(t)
	w := filepath.Join(l.watched, "w.txt")
	const n = 100000
	mark := l.eventCount()
	for i := 0; i < n; i++ {
		fd, err := unix.Open(w, unix.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
	}
	// Enforcement does not depend on an event being delivered: the ring
	// buffer may still be full here, so this denial's event may be one
	// of the lost ones.
	sweep := filepath.Join(l.configDir, "sweep.json")
	if err := unix.Unlink(sweep); !errors.Is(err, unix.EPERM) {
		t.Errorf("28 rm config during the flood: %v, want EPERM", err)
	}
	if _, err := os.Stat(sweep); err != nil {
		t.Fatalf("28: sweep.json gone during the flood: %v", err)
	}
	var got, lost uint64
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		got, lost = 0, 0
		for _, e := range l.eventsSince(mark) {
			switch {
			case e.Op == "open" && e.Path == w:
				got++
			case e.Op == OpEventsLost:
				lost += e.Arg
			}
		}
		if got+lost >= n {
			break
		}
		time.Sleep(time.Second)
	}
	st, _ := l.mustDoStatus()
	t.Logf("28: %d opens: %d events delivered, %d reported lost (kernel lost counter %d)", n, got, lost, st.Stats.Lost)
	if got+lost < n {
		t.Errorf("28: %d delivered + %d lost < %d opens: events vanished silently", got, lost, n)
	}
	if lost > 0 && st.Stats.Lost < lost {
		t.Errorf("lost reported %d > kernel counter %d", lost, st.Stats.Lost)
	}
	// Once the backlog is drained, denials are reported again.
	l.refuse(attack{name: "28 rm config after the flood", run: func() error { return unix.Unlink(sweep) }, errno: unix.EPERM})
}

// TestLabTamperedPinFailsClosed: a pinned Sentinel program that is not the
// embedded one is replaced on adoption, with a critical event, and
// enforcement is back.
func TestLabTamperedPinFailsClosed(t *testing.T) {
	l := newLab(t)
	sweep := filepath.Join(l.configDir, "sweep.json")
	l.mustDo("tamper")
	l.mustDo("exit")
	l.agent.stdin.Close()
	l.agent.cmd.Wait()
	l.agent = nil
	// The tampered hook lets a write-open through now: the damage is real.
	if err := openWrite(sweep, unix.O_WRONLY|unix.O_APPEND); err != nil {
		t.Logf("write-open after tampering: %v", err)
	}
	mark := l.eventCount()
	st := l.startAgent(l.agentBin, false)
	if len(st.Critical) == 0 {
		t.Errorf("no critical condition reported after adopting a tampered pin: %+v", st)
	}
	if _, ok := l.waitEvent(mark, func(e Event) bool { return e.Op == OpIntegrity && e.Verdict == VerdictCritical }); !ok {
		t.Errorf("no critical integrity event")
	}
	l.refuse(attack{name: "write-open after re-adoption", run: func() error { return openWrite(sweep, unix.O_WRONLY) }, errno: unix.EPERM})
	// And a restart now adopts cleanly.
	l.mustDo("exit")
	l.agent.stdin.Close()
	l.agent.cmd.Wait()
	l.agent = nil
	if st := l.startAgent(l.agentBin, true); len(st.Critical) > 0 {
		t.Errorf("second adoption still critical: %v", st.Critical)
	}
}

// holdAndFork runs a process of this binary that opens pin read-write on a
// thread with a private fd table (allowed: no other thread can swap the fd)
// and then forks. It returns the fork's error; a fork before the open must
// work.
func holdAndFork(pin string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, pin)
	cmd.Env = append(os.Environ(), helperEnv+"=holdfork")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("holdfork helper: %v: %s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 || f[0] != "fork" {
		return fmt.Errorf("holdfork helper: %q", out)
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return fmt.Errorf("holdfork helper: %q", out)
	}
	if n == 0 {
		return nil
	}
	return unix.Errno(n)
}
