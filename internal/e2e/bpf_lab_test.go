package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/netlab"
	"github.com/carverauto/fortress/internal/testutil"
	"github.com/carverauto/fortress/pkg/fortress"
)

// TestBPFBackdoorsInLab: root goes around the bpf(2) commands Sentinel
// checks. It maps a Shield table writable from a thread with a private fd
// table (and then tries to fork), loads a program of its own that
// references a Shield map through a read-only fd (a program may write any
// map it references), extends Shield's program, and opens Shield's link
// from a multithreaded process. All are refused; a read-only mapping still
// works and Shield keeps dropping.
func TestBPFBackdoorsInLab(t *testing.T) {
	r := newRig(t)
	p := netip.MustParsePrefix
	pair, err := netlab.New(netlab.Config{
		Name:   fmt.Sprintf("bk%d", time.Now().UnixNano()%10000),
		AddrsA: []netip.Prefix{p("10.71.0.1/16"), p("10.71.1.2/16")},
		AddrsB: []netip.Prefix{p("10.71.0.2/16")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	rx, err := pair.B.ListenUDP(7779)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	state := filepath.Join(r.dir, "state")
	os.MkdirAll(state, 0o700)
	raw, err := bundle.Sign(bundle.Body{Version: 1, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{"lab-agent"},
		Payload: bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldEnforce, Rules: []bundle.Rule{{CIDR: "10.71.1.0/24", Action: "drop"}}}}}, r.priv)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(state, bundle.StateFile), raw, 0o600)
	r.writeConfig(pair.B.Iface, "/run/netns/"+pair.B.NSName)
	r.startAgent(fortress.SentinelEnforcing)
	defer r.logOnFailure()
	a := netip.MustParseAddr
	blocked, allowed, dst := a("10.71.1.2"), a("10.71.0.1"), a("10.71.0.2")
	check := func(when string, round int) {
		t.Helper()
		pair.A.SendUDP(blocked, dst, 7779, 10)
		pair.A.SendUDP(allowed, dst, 7779, 1)
		deadline := time.Now().Add(20 * time.Second)
		for rx.Count(allowed) < round && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if rx.Count(allowed) < round {
			t.Fatalf("%s: allowed traffic does not arrive", when)
		}
		if n := rx.Count(blocked); n != 0 {
			t.Fatalf("%s: %d blocked datagrams arrived", when, n)
		}
	}
	check("before the attacks", 1)

	dir := filepath.Join(r.pinRoot, "shield", "v4_dir")
	if err := mmapAttack(dir); err != nil {
		t.Error(err)
	}
	check("after the mmap attack", 2)

	if err := programAttack(filepath.Join(r.pinRoot, "shield", "shield_state")); err != nil {
		t.Error(err)
	}
	check("after the program attack", 3)

	if err := freplaceAttack(filepath.Join(r.pinRoot, "shield", "xdp_shield")); err != nil {
		t.Error(err)
	}
	check("after the extension attack", 4)

	if err := linkAttack(filepath.Join(r.pinRoot, "shield")); err != nil {
		t.Error(err)
	}
	check("after the link attack", 5)
}

// linkAttack opens Shield's pinned XDP link from this (multithreaded)
// process. Any other thread could put that fd under a BPF_LINK_DETACH
// another thread has started with a harmless fd, so the open itself is
// refused; the kernel offers no hook on BPF_OBJ_GET of a link.
func linkAttack(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	n := 0
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "link_") {
			continue
		}
		n++
		l, err := link.LoadPinnedLink(filepath.Join(dir, e.Name()), nil)
		if err == nil {
			l.Close()
			return fmt.Errorf("a multithreaded process got Shield's link %s", e.Name())
		}
		if !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("open Shield's link %s: %w, want EPERM", e.Name(), err)
		}
	}
	if n == 0 {
		return fmt.Errorf("no link pinned in %s", dir)
	}
	return nil
}

// freplaceAttack loads an extension program that would take the place of
// Shield's XDP entry function and pass every packet. The same extension
// aimed at a program of the test's own must load (the control), so a
// refusal means Sentinel, not a broken attack.
func freplaceAttack(pin string) error {
	spec, err := loadAttack()
	if err != nil {
		return err
	}
	own, err := ebpf.NewProgram(spec.Programs["xdp_target"])
	if err != nil {
		return fmt.Errorf("control target: %w", err)
	}
	defer own.Close()
	ext := spec.Programs["replace"].Copy()
	ext.AttachTarget, ext.AttachTo = own, "xdp_target"
	ctl, err := ebpf.NewProgram(ext)
	if err != nil {
		return fmt.Errorf("control: extension of the test's own program: %w", err)
	}
	ctl.Close()

	target, err := ebpf.LoadPinnedProgram(pin, nil)
	if err != nil {
		return fmt.Errorf("open shield's program (show must stay allowed): %w", err)
	}
	defer target.Close()
	ext = spec.Programs["replace"].Copy()
	ext.AttachTarget, ext.AttachTo = target, "xdp_shield"
	p, err := ebpf.NewProgram(ext)
	if err == nil {
		p.Close()
		return errors.New("root loaded an extension of Shield's XDP program")
	}
	if !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("extension load: %w, want EPERM", err)
	}
	return nil
}

// TestMain lets the test binary re-run itself as an attacker process.
func TestMain(m *testing.M) {
	if pin := os.Getenv("E2E_MMAP_ATTACK"); pin != "" {
		if err := mmapAttackHere(pin); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// mmapAttack runs mmapAttackHere in a process of its own, so that the
// private fd table it makes never reaches the test process.
func mmapAttack(pin string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "E2E_MMAP_ATTACK="+pin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("mmap attack: %v: %s", err, out)
	}
	return nil
}

// mmapAttackHere opens a pinned Shield table read-write on a thread whose
// fd table is its own (so no other thread can swap the fd), then asks for a
// shared writable mapping. Only a read-only mapping may be granted.
func mmapAttackHere(pin string) error {
	runtime.LockOSThread() // never unlocked: the process exits after this
	if err := unix.Unshare(unix.CLONE_FILES); err != nil {
		return fmt.Errorf("unshare files: %w", err)
	}
	if err := testutil.Fork(); err != nil {
		return fmt.Errorf("control: fork before holding a Fortress fd: %w", err)
	}
	fd, err := testutil.ObjGet(pin)
	if err != nil {
		return fmt.Errorf("open %s read-write from a private fd table: %w", pin, err)
	}
	defer unix.Close(fd)
	// Holding it, the thread may not clone: a thread would share the table
	// (and could swap fds under a bpf(2) command), a child would get a copy.
	if err := testutil.Fork(); !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("fork while holding a read-write fd of a Shield table: %v, want EPERM", err)
	}
	ro, err := unix.Mmap(fd, 0, os.Getpagesize(), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("read-only mapping of a Fortress map refused: %w", err)
	}
	unix.Munmap(ro)
	rw, err := unix.Mmap(fd, 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err == nil {
		unix.Munmap(rw)
		return errors.New("root got a writable mapping of a Shield table")
	}
	if !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("writable mapping: %w, want EPERM", err)
	}
	return nil
}

// programAttack loads a socket filter that writes the Shield state map
// through a pointer from bpf_map_lookup_elem, referencing the map through a
// read-only fd. The load must be refused.
func programAttack(pin string) error {
	m, err := ebpf.LoadPinnedMap(pin, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("read-only open of %s refused: %w", pin, err)
	}
	defer m.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SocketFilter,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.StoreImm(asm.R10, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Reg(asm.R2, asm.R10),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.StoreImm(asm.R0, 0, 0x7fffffff, asm.Word),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
			asm.Return(),
		},
	})
	if err == nil {
		prog.Close()
		return errors.New("root loaded a program that writes a Shield map")
	}
	if !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("program load: %w, want EPERM", err)
	}
	return nil
}
