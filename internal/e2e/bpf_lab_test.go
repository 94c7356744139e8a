package e2e

import (
	"bytes"
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
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/netlab"
	"github.com/carverauto/fortress/internal/testutil"
	"github.com/carverauto/fortress/pkg/fortress"
)

// TestBPFBackdoorsInLab: root goes around the bpf(2) commands Sentinel
// checks: with Fortress fds held in a private fd table (mmap, fork, test
// run, attach, extension), with a program of its own that references a
// Shield map through a read-only fd (a program may write any map it
// references), and by opening Shield's program and link from a
// multithreaded process. All are refused; read-only mappings and bpftool's
// show still work, and Shield keeps dropping.
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

	shieldDir := filepath.Join(r.pinRoot, "shield")
	if err := heldFdAttacks(t, shieldDir); err != nil {
		t.Error(err)
	}
	check("after the attacks with held fds", 2)
	// prog_load: the extension reached BPF_PROG_LOAD and Sentinel refused
	// it (the program attack, the other load, comes later).
	for _, op := range []string{"op=netlink", "op=prog_fd", "op=prog_load"} {
		if _, ok := r.waitLog(10*time.Second, "msg=event", op, "verdict=denied"); !ok {
			t.Errorf("no denied %s event in the agent's log", op)
		}
	}

	if err := programAttack(filepath.Join(shieldDir, "shield_state")); err != nil {
		t.Error(err)
	}
	check("after the program attack", 3)

	if err := sharedTableAttacks(shieldDir); err != nil {
		t.Error(err)
	}
	check("after the shared fd table attacks", 4)
	// bpftool (single-threaded) still shows Shield's program and link.
	for _, c := range [][]string{{"prog", "show", "pinned", filepath.Join(shieldDir, "xdp_shield")}, {"link", "show"}} {
		if out, err := exec.Command("bpftool", c...).CombinedOutput(); err != nil {
			t.Errorf("bpftool %s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
}

// sharedTableAttacks opens Shield's pinned program and XDP link from this
// (multithreaded) process. Another thread could put such an fd under a
// command (BPF_LINK_DETACH, BPF_PROG_TEST_RUN) that a thread started with a
// harmless fd after the hook allowed it, so the open itself is refused.
func sharedTableAttacks(dir string) error {
	var errs []error
	p, err := ebpf.LoadPinnedProgram(filepath.Join(dir, "xdp_shield"), nil)
	if err == nil {
		p.Close()
		errs = append(errs, errors.New("a multithreaded process got Shield's program"))
	} else if !errors.Is(err, unix.EPERM) {
		errs = append(errs, fmt.Errorf("open Shield's program: %w, want EPERM", err))
	}
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
			errs = append(errs, fmt.Errorf("a multithreaded process got Shield's link %s", e.Name()))
		} else if !errors.Is(err, unix.EPERM) {
			errs = append(errs, fmt.Errorf("open Shield's link %s: %w, want EPERM", e.Name(), err))
		}
	}
	if n == 0 {
		errs = append(errs, fmt.Errorf("no link pinned in %s", dir))
	}
	return errors.Join(errs...)
}

// heldFdAttacksEnv names, in the environment of the test binary re-run as
// an attacker process, the directory of Shield's pins.
const heldFdAttacksEnv = "E2E_HELD_FD_ATTACKS"

// init keeps the attacker process's main goroutine, which runs the attacks
// from TestMain, on the thread group leader. Its private fd table is then
// the one /proc/self shows: cilium/ebpf reads a program's info (for an
// extension's target, among others) from /proc/self/fdinfo, which on any
// other thread names the leader's table.
func init() {
	if os.Getenv(heldFdAttacksEnv) != "" {
		runtime.LockOSThread() // never unlocked: the process exits after the attacks
	}
}

// TestMain lets the test binary re-run itself as an attacker process.
func TestMain(m *testing.M) {
	if dir := os.Getenv(heldFdAttacksEnv); dir != "" {
		if err := heldFdAttacksHere(dir); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(seccompLaunchEnv) != "" {
		if err := seccompLaunch(os.Args[1:]); err != nil {
			fmt.Println("err", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// heldFdAttacks runs heldFdAttacksHere in a process of its own, so that the
// private fd table it makes never reaches the test process, and logs what
// the attacker reports.
func heldFdAttacks(t testing.TB, dir string) error {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), heldFdAttacksEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("attacks with held fds: %v: %s", err, out)
	}
	t.Logf("attacks with held fds: %s", bytes.TrimSpace(out))
	return nil
}

// heldFdAttacksHere works from a thread whose fd table is its own, where
// root may hold Shield's fds (as bpftool does to dump and show them). It
// asks for a shared writable mapping of a Shield table (only a read-only
// one may be granted), forks while holding it, and with Shield's program
// runs it on a made-up packet, attaches it elsewhere and loads an extension
// (freplace) of it. Each is refused; each control on objects of its own
// works.
func heldFdAttacksHere(dir string) error {
	if unix.Gettid() != unix.Getpid() {
		return errors.New("the attacks with held fds do not run on the thread group leader (see init)")
	}
	if err := unix.Unshare(unix.CLONE_FILES); err != nil {
		return fmt.Errorf("unshare files: %w", err)
	}
	if err := testutil.Fork(); err != nil {
		return fmt.Errorf("control: fork before holding a Fortress fd: %w", err)
	}
	if err := netlinkControl(); err != nil {
		return err
	}
	var errs []error
	if err := mmapAttack(filepath.Join(dir, "v4_dir")); err != nil {
		errs = append(errs, err)
	}
	// Holding a Fortress fd, the thread may not clone: a thread would share
	// the table (and could swap fds under a bpf(2) command), a child would
	// get a copy.
	if err := testutil.Fork(); !errors.Is(err, unix.EPERM) {
		errs = append(errs, fmt.Errorf("fork while holding Fortress fds: %v, want EPERM", err))
	}
	fd, err := testutil.ObjGet(filepath.Join(dir, "xdp_shield"))
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("open Shield's program from a private fd table: %w", err))...)
	}
	shield, err := ebpf.NewProgramFromFD(fd)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("shield program from fd: %w", err))...)
	}
	defer shield.Close()
	errs = append(errs, progAttacks(shield))
	return errors.Join(errs...)
}

// mmapAttack maps the pinned Shield table read-only (allowed) and
// read-write (refused).
func mmapAttack(pin string) error {
	fd, err := testutil.ObjGet(pin)
	if err != nil {
		return fmt.Errorf("open %s read-write from a private fd table: %w", pin, err)
	}
	defer unix.Close(fd)
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

// progAttacks uses a held fd of Shield's program. Running it on a made-up
// packet from a blocked source would count a drop that never happened,
// attaching it elsewhere would count other traffic, and an extension would
// take its place and pass every packet. Each control, on the test's own
// program, must work, so a refusal means Sentinel, not a broken attack.
func progAttacks(shield *ebpf.Program) error {
	spec, own, err := ownXDP()
	if err != nil {
		return err
	}
	defer own.Close()
	var errs []error
	frame := make([]byte, 64)
	if _, err := own.Run(&ebpf.RunOptions{Data: frame}); err != nil {
		errs = append(errs, fmt.Errorf("control: test run of the test's own program: %w", err))
	}
	if _, err := shield.Run(&ebpf.RunOptions{Data: frame}); !errors.Is(err, unix.EPERM) {
		errs = append(errs, fmt.Errorf("test run of Shield's program: %v, want EPERM", err))
	}
	if l, err := link.AttachXDP(link.XDPOptions{Program: shield, Interface: 1, Flags: link.XDPGenericMode}); err == nil {
		l.Close()
		errs = append(errs, errors.New("root attached Shield's program to lo"))
	} else if !errors.Is(err, unix.EPERM) {
		errs = append(errs, fmt.Errorf("attach Shield's program to lo: %w, want EPERM", err))
	}
	// The same through netlink (ip link set dev lo xdp pinned ...), which
	// no bpf(2) command sees.
	if err := netlinkXDP(shield.FD()); err == nil {
		netlinkXDP(-1)
		errs = append(errs, errors.New("root attached Shield's program to lo through netlink"))
	} else if !errors.Is(err, unix.EPERM) {
		errs = append(errs, fmt.Errorf("netlink attach of Shield's program to lo: %w, want EPERM", err))
	}
	// Handing the fd to another process (a multithreaded one could race
	// the checks above): the receiving end gets no fd. A received fd of
	// the test's own program is the control.
	if n, err := passFD(own.FD()); err != nil || n != 1 {
		errs = append(errs, fmt.Errorf("control: pass the test's own program over a unix socket: %d fds received, %v", n, err))
	}
	if n, err := passFD(shield.FD()); err != nil || n != 0 {
		errs = append(errs, fmt.Errorf("pass Shield's program over a unix socket: %d fds received, %v", n, err))
	}

	ext := spec.Programs["replace"].Copy()
	ext.AttachTarget, ext.AttachTo = own, "xdp_target"
	ctl, err := ebpf.NewProgram(ext)
	if err != nil {
		errs = append(errs, fmt.Errorf("control: extension of the test's own program: %w", err))
	} else {
		ctl.Close()
	}
	ext = spec.Programs["replace"].Copy()
	ext.AttachTarget, ext.AttachTo = shield, "xdp_shield"
	// Refused by the kernel, not before: BPF_PROG_LOAD ran (cilium/ebpf
	// returns its errors as a VerifierError) and failed with EPERM.
	var ve *ebpf.VerifierError
	if p, err := ebpf.NewProgram(ext); err == nil {
		p.Close()
		errs = append(errs, errors.New("root loaded an extension of Shield's XDP program"))
	} else if !errors.As(err, &ve) || !errors.Is(err, unix.EPERM) {
		errs = append(errs, fmt.Errorf("extension load: %w, want EPERM from BPF_PROG_LOAD", err))
	} else {
		fmt.Printf("extension of Shield's program refused: %v\n", err)
	}
	return errors.Join(errs...)
}

// ownXDP loads the test's own XDP program, the control for attacks on
// Shield's, and returns it with the spec it came from.
func ownXDP() (*ebpf.CollectionSpec, *ebpf.Program, error) {
	spec, err := loadAttack()
	if err != nil {
		return nil, nil, err
	}
	own, err := ebpf.NewProgram(spec.Programs["xdp_target"])
	if err != nil {
		return nil, nil, fmt.Errorf("control program: %w", err)
	}
	return spec, own, nil
}

// netlinkControl attaches the test's own XDP program to lo through netlink
// and detaches it again: the path netlinkXDP takes works before the
// process holds any Fortress fd.
func netlinkControl() error {
	_, own, err := ownXDP()
	if err != nil {
		return err
	}
	defer own.Close()
	if err := netlinkXDP(own.FD()); err != nil {
		return fmt.Errorf("control: netlink attach of the test's own program to lo: %w", err)
	}
	if err := netlinkXDP(-1); err != nil {
		return fmt.Errorf("control: netlink detach from lo: %w", err)
	}
	return nil
}

// netlinkXDP sets (fd >= 0) or clears (fd -1) lo's generic-mode XDP
// program with RTM_SETLINK, as ip link set dev lo xdpgeneric does.
func netlinkXDP(fd int) error {
	lo := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1, Name: "lo"}}
	return netlink.LinkSetXdpFdWithFlags(lo, fd, nl.XDP_FLAGS_SKB_MODE)
}

// passFD sends fd over a unix socket pair and returns how many fds arrived.
func passFD(fd int) (int, error) {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(sp[0])
	defer unix.Close(sp[1])
	if err := unix.Sendmsg(sp[0], []byte{1}, unix.UnixRights(fd), nil, 0); err != nil {
		return 0, fmt.Errorf("sendmsg: %w", err)
	}
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(sp[1], make([]byte, 1), oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return 0, fmt.Errorf("recvmsg: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, f := range fds {
			unix.Close(f)
		}
		n += len(fds)
	}
	return n, nil
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
