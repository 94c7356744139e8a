package probe

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/caps"
)

// Names of the checks in a Report.
const (
	BTF         = "btf"
	XDP         = "xdp"
	XDPNative   = "xdp_native_attach"
	XDPGeneric  = "xdp_generic_attach"
	RingBuf     = "ringbuf"
	LPMTrie     = "lpm_trie"
	MapInMap    = "map_in_map"
	BPFLink     = "bpf_link"
	LSMListed   = "lsm_listed"
	LSM         = "lsm"
	lsmListPath = "/sys/kernel/security/lsm"
)

// Check is the outcome of one feature check.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
}

// Report is the outcome of every check, in a fixed order.
type Report struct {
	Kernel string  `json:"kernel"`
	Checks []Check `json:"checks"`
}

// Get returns the named check; ok is false if the report has none.
func (r Report) Get(name string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// OK reports whether the named check passed.
func (r Report) OK(name string) bool {
	c, ok := r.Get(name)
	return ok && c.OK
}

func (r *Report) add(name string, err error, okReason string) {
	c := Check{Name: name, OK: err == nil, Reason: okReason}
	if err != nil {
		c.Reason = Reason(err)
	}
	r.Checks = append(r.Checks, c)
}

// Reason renders a load error for people. The loader appends a hint about
// RLIMIT_MEMLOCK to every EPERM; Fortress removes that limit before loading,
// so on a kernel that refuses the program (lockdown, no BPF LSM) the hint
// would only mislead.
func Reason(err error) string {
	return strings.ReplaceAll(err.Error(), " (MEMLOCK may be too low, consider rlimit.RemoveMemlock)", "")
}

// Run performs every check. It needs root for the XDP and LSM trials; without
// it those checks fail with the kernel's error as the reason.
func Run() Report {
	var r Report
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		r.Kernel = unix.ByteSliceToString(uts.Release[:])
	}
	// 5.10 charges maps to RLIMIT_MEMLOCK.
	memErr := rlimit.RemoveMemlock()

	r.add(BTF, checkBTF(), "/sys/kernel/btf/vmlinux parsed")

	xdpErr := features.HaveProgramType(ebpf.XDP)
	r.add(XDP, xdpErr, "XDP program type loads")
	native, generic, linkErr := checkXDPAttach()
	r.add(XDPNative, native, "attached in driver mode to a veth in a temporary netns")
	r.add(XDPGeneric, generic, "attached in generic mode to a veth in a temporary netns")

	r.add(RingBuf, features.HaveMapType(ebpf.RingBuf), "ring buffer map created")
	r.add(LPMTrie, features.HaveMapType(ebpf.LPMTrie), "LPM trie map created")
	mim := features.HaveMapType(ebpf.ArrayOfMaps)
	if mim == nil {
		mim = features.HaveMapType(ebpf.HashOfMaps)
	}
	r.add(MapInMap, mim, "array-of-maps and hash-of-maps created")
	r.add(BPFLink, linkErr, "XDP attached through a bpf_link")

	eff, capErr := caps.Effective()
	reason, err := capsCheck(eff, capErr, caps.Shield)
	r.add(CapsShield, err, reason)
	reason, err = capsCheck(eff, capErr, caps.Sentinel)
	r.add(CapsSentinel, err, reason)
	r.add(Memlock, memlockCheck(memErr), "BPF maps are not limited by RLIMIT_MEMLOCK here (5.11+, or the limit is raised)")
	trampErr := trampolineCheck(runtime.GOARCH, r.Kernel)
	r.add(Trampoline, trampErr, "BPF trampolines attach to kernel functions (LSM, fentry) on "+runtime.GOARCH)

	listed, listErr := lsmListed()
	r.add(LSMListed, listErr, "bpf is in "+lsmListPath)
	if !listed {
		r.add(LSM, fmt.Errorf("bpf LSM not active: %w", listErr), "")
	} else {
		lsmErr := trialLSM()
		if lsmErr != nil && trampErr != nil {
			lsmErr = fmt.Errorf("%v: %w", trampErr, lsmErr)
		}
		r.add(LSM, lsmErr, "trial lsm/file_open program loaded, attached and fired")
	}
	return r
}

func checkBTF() error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("kernel btf: %w", err)
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return fmt.Errorf("parse kernel btf: %w", err)
	}
	var f *btf.Struct
	if err := spec.TypeByName("file", &f); err != nil {
		return fmt.Errorf("kernel btf has no struct file: %w", err)
	}
	return nil
}

// lsmListed reports whether bpf is among the active LSMs. If securityfs is
// not mounted, it is mounted in a private mount namespace on a thread that
// is thrown away afterwards, so the host's mount table is never changed.
func lsmListed() (bool, error) {
	list, err := readLSMList()
	if err != nil {
		return false, err
	}
	for _, name := range strings.Split(strings.TrimSpace(list), ",") {
		if name == "bpf" {
			return true, nil
		}
	}
	return false, fmt.Errorf("bpf not in active LSM list %q (boot with lsm=...,bpf)", strings.TrimSpace(list))
}

func readLSMList() (string, error) {
	b, err := os.ReadFile(lsmListPath)
	if err == nil {
		return string(b), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", lsmListPath, err)
	}
	type result struct {
		list string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// The thread never returns to the scheduler: no UnlockOSThread, so
		// it exits with the goroutine and takes its mount namespace along.
		runtime.LockOSThread()
		list, err := readLSMListPrivate()
		done <- result{list, err}
	}()
	res := <-done
	return res.list, res.err
}

func readLSMListPrivate() (string, error) {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return "", fmt.Errorf("securityfs not mounted and unshare mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return "", fmt.Errorf("make mounts private: %w", err)
	}
	dir, err := os.MkdirTemp("", "fortress-securityfs-")
	if err != nil {
		return "", fmt.Errorf("securityfs mount point: %w", err)
	}
	defer os.Remove(dir)
	if err := unix.Mount("securityfs", dir, "securityfs", 0, ""); err != nil {
		return "", fmt.Errorf("mount securityfs: %w", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	b, err := os.ReadFile(filepath.Join(dir, "lsm"))
	if err != nil {
		return "", fmt.Errorf("read lsm list: %w", err)
	}
	return string(b), nil
}

// trialLSM loads lsm/file_open counting this process's opens, attaches it,
// opens a file and checks that the count moved.
func trialLSM() error {
	spec, err := loadSpec()
	if err != nil {
		return err
	}
	delete(spec.Programs, lsmprobeProgProbeXdp)
	if err := spec.Variables[lsmprobeVarProbeTgid].Set(uint32(os.Getpid())); err != nil {
		return fmt.Errorf("set probe tgid: %w", err)
	}
	var objs struct {
		Prog  *ebpf.Program `ebpf:"probe_file_open"`
		Opens *ebpf.Map     `ebpf:"probe_opens"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return fmt.Errorf("load lsm program: %w", err)
	}
	defer objs.Prog.Close()
	defer objs.Opens.Close()
	l, err := link.AttachLSM(link.LSMOptions{Program: objs.Prog})
	if err != nil {
		return fmt.Errorf("attach lsm program: %w", err)
	}
	defer l.Close()
	f, err := os.Open("/proc/self/stat")
	if err != nil {
		return fmt.Errorf("trigger open: %w", err)
	}
	f.Close()
	var n uint64
	if err := objs.Opens.Lookup(uint32(0), &n); err != nil {
		return fmt.Errorf("read trial counter: %w", err)
	}
	if n == 0 {
		return errors.New("lsm program attached but did not fire on file_open")
	}
	return nil
}
