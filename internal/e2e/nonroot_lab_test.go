package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/caps"
	"github.com/carverauto/fortress/internal/netlab"
	"github.com/carverauto/fortress/internal/testutil"
	"github.com/carverauto/fortress/pkg/fortress"
)

// unitUID and unitGID stand for the serviceradar user the shipped unit
// runs the agent as (a system user, as useradd --system makes it).
const unitUID, unitGID = 990, 990

// grant is how a process is started as fortress-agent.service starts the
// agent: User= and Group= (no supplementary groups), the capabilities
// both as AmbientCapabilities= and as CapabilityBoundingSet=,
// LimitMEMLOCK=, NoNewPrivileges=yes and UMask=0077.
type grant struct {
	caps []caps.Capability
	// memlock is RLIMIT_MEMLOCK (soft and hard) before the exec;
	// unix.RLIM_INFINITY is LimitMEMLOCK=infinity.
	memlock uint64
}

// unitGrant is what the shipped unit grants: the required set of both
// layers and LimitMEMLOCK=infinity (TestUnitIsTheLabGrant keeps the two in
// step).
func unitGrant() grant {
	return grant{caps: caps.Required(caps.Shield, caps.Sentinel), memlock: unix.RLIM_INFINITY}
}

// kernelMemlock is RLIMIT_MEMLOCK as a 5.10 kernel gives it to init and a
// service without LimitMEMLOCK= (systemd before 253 keeps the kernel's).
const kernelMemlock = 64 << 10

func (g grant) mask() uint64 {
	var m uint64
	for _, c := range g.caps {
		m |= 1 << c.Bit
	}
	return m
}

func (g grant) String() string {
	lim := "LimitMEMLOCK=infinity"
	if g.memlock != unix.RLIM_INFINITY {
		lim = fmt.Sprintf("LimitMEMLOCK=%d", g.memlock)
	}
	return caps.Names(g.caps) + ", " + lim
}

func (g grant) without(c caps.Capability) grant {
	out := grant{memlock: g.memlock}
	for _, x := range g.caps {
		if x != c {
			out.caps = append(out.caps, x)
		}
	}
	return out
}

func (g grant) with(c caps.Capability) grant {
	return grant{caps: append(append([]caps.Capability(nil), g.caps...), c), memlock: g.memlock}
}

// start starts cmd as the unit's user under g. The bounding set and
// no_new_privs belong to a thread and pass to the processes it forks, so
// they are set on a thread of their own that forks the child and then
// ends (a goroutine that exits locked takes its thread along). Resource
// limits and the umask belong to the process: they are set around the
// fork and put back.
func (g grant) start(cmd *exec.Cmd) error {
	ambient := make([]uintptr, len(g.caps))
	for i, c := range g.caps {
		ambient[i] = uintptr(c.Bit)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: unitUID, Gid: unitGID, Groups: []uint32{}},
		AmbientCaps: ambient,
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		errc <- g.fork(cmd)
	}()
	return <-errc
}

func (g grant) fork(cmd *exec.Cmd) error {
	last, err := capLastCap()
	if err != nil {
		return err
	}
	keep := g.mask()
	for c := uint(0); c <= last; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	var saved unix.Rlimit
	lim := unix.Rlimit{Cur: g.memlock, Max: g.memlock}
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &lim, &saved); err != nil {
		return fmt.Errorf("set RLIMIT_MEMLOCK: %w", err)
	}
	defer unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &saved, nil)
	mask := syscall.Umask(0o077)
	defer syscall.Umask(mask)
	return cmd.Start()
}

func capLastCap() (uint, error) {
	raw, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 32)
	return uint(n), err
}

// procCreds reads what /proc/PID/status says of a process's user and
// capabilities.
type procCreds struct {
	uid, gid                string // "real effective saved fs"
	inh, prm, eff, bnd, amb uint64
	noNewPrivs              string
}

func readProcCreds(pid int) (procCreds, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procCreds{}, err
	}
	var c procCreds
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		hex := func(dst *uint64) { *dst, err = strconv.ParseUint(v, 16, 64) }
		switch k {
		case "Uid":
			c.uid = strings.Join(strings.Fields(v), " ")
		case "Gid":
			c.gid = strings.Join(strings.Fields(v), " ")
		case "CapInh":
			hex(&c.inh)
		case "CapPrm":
			hex(&c.prm)
		case "CapEff":
			hex(&c.eff)
		case "CapBnd":
			hex(&c.bnd)
		case "CapAmb":
			hex(&c.amb)
		case "NoNewPrivs":
			c.noNewPrivs = v
		}
		if err != nil {
			return c, fmt.Errorf("%s: %w", line, err)
		}
	}
	return c, nil
}

// checkCreds fails the test unless pid runs as the unit's user holding
// exactly g's capabilities, ambient and bounding, with no_new_privs.
func checkCreds(t *testing.T, pid int, g grant) {
	t.Helper()
	c, err := readProcCreds(pid)
	if err != nil {
		t.Fatal(err)
	}
	ids := fmt.Sprintf("%d %d %d %d", unitUID, unitUID, unitUID, unitUID)
	gids := fmt.Sprintf("%d %d %d %d", unitGID, unitGID, unitGID, unitGID)
	want := g.mask()
	if c.uid != ids || c.gid != gids || c.eff != want || c.prm != want || c.amb != want || c.bnd != want || c.inh != want || c.noNewPrivs != "1" {
		t.Fatalf("agent pid %d: Uid %s Gid %s CapInh %#x CapPrm %#x CapEff %#x CapBnd %#x CapAmb %#x NoNewPrivs %s; want uid/gid %d/%d and %#x (%s) in all five, no_new_privs",
			pid, c.uid, c.gid, c.inh, c.prm, c.eff, c.bnd, c.amb, c.noNewPrivs, unitUID, unitGID, want, caps.Names(g.caps))
	}
	t.Logf("agent pid %d: uid %d, CapEff=CapPrm=CapAmb=CapBnd=%#x (%s), NoNewPrivs 1", pid, unitUID, want, caps.Names(g.caps))
}

// prepareAsUnit makes what the unit makes for the agent's user before the
// start: the pin root (ExecStartPre=+install -d -o serviceradar ...), the
// state, log and runtime directories (StateDirectory=, LogsDirectory=,
// RuntimeDirectory=), owned by the user, and the update manager's staging
// directory, root's. The rest stays root's: the
// configuration directory and trust key, the bpffs mount (0700, as
// systemd mounts /sys/fs/bpf), the binaries.
func (r *rig) prepareAsUnit() {
	r.t.Helper()
	// The scratch directory stands for /run, /var/lib and /var/log.
	if err := os.Chmod(r.dir, 0o755); err != nil {
		r.t.Fatal(err)
	}
	root := filepath.Join(r.pinRoot, "serviceradar")
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{root, 0o700}, {filepath.Join(r.dir, "state"), 0o700}, {filepath.Join(r.dir, "log"), 0o700}, {filepath.Join(r.dir, "run"), 0o755}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			r.t.Fatal(err)
		}
		if err := os.Chown(d.path, unitUID, unitGID); err != nil {
			r.t.Fatal(err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			r.t.Fatal(err)
		}
	}
	r.pinRoot = root
	// ExecStartPre=+: the update manager's staging directory next to the
	// agent binary, root's (only fortress-update writes there).
	staging := filepath.Join(filepath.Dir(agentBin), ".fortress-staging")
	if err := os.Mkdir(staging, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		r.t.Fatal(err)
	}
}

// writeUnitConfig is writeConfig with debug logging, which shows the
// agent reading its configuration and trust key through Sentinel.
func (r *rig) writeUnitConfig(iface, netns string) {
	r.t.Helper()
	r.writeConfig(iface, netns)
	path := filepath.Join(configDir, "fortress-agent.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		r.t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		r.t.Fatal(err)
	}
	cfg["log"] = map[string]any{"format": "text", "level": "debug"}
	raw, _ = json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// startAgentAs is startAgent for the agent started under g.
func (r *rig) startAgentAs(g grant, want string) {
	r.t.Helper()
	r.everStarted = true
	r.agentLog = &lockedBuffer{}
	cmd := exec.Command(agentBin, "--config", filepath.Join(configDir, "fortress-agent.json"))
	cmd.Stdout, cmd.Stderr = r.agentLog, r.agentLog
	if err := g.start(cmd); err != nil {
		r.t.Fatal(err)
	}
	r.agent = cmd
	deadline := time.Now().Add(90 * time.Second)
	for {
		st, err := r.status()
		if err == nil && (want == "" || st.Sentinel.State == want) {
			return
		}
		if zombie(cmd.Process.Pid) {
			err := cmd.Wait()
			r.agent = nil
			r.t.Fatalf("agent under %s exited before it was up (%v)\nagent log:\n%s", g, err, r.agentLog)
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("agent under %s not up with sentinel %s: status %+v (%v)\nagent log:\n%s", g, want, st.Sentinel, err, r.agentLog)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestNonRootAgentInLab runs the installed agent as the shipped unit does:
// as an ordinary user (uid 990) holding only the capabilities internal/caps
// names, as ambient capabilities with the same bounding set,
// LimitMEMLOCK=infinity, no_new_privs. As that user it loads Sentinel and
// Shield, Shield attaches to a veth and enforces a signed bundle on real
// traffic, root's attacks on the configuration, the agent binary and
// Fortress's BPF objects are refused with EPERM and reported, the agent's
// own status socket and configuration reads work, and after kill -9 the
// agent started again as that user adopts the pins; a signed removal
// then takes everything out as before.
func TestNonRootAgentInLab(t *testing.T) {
	r := newRig(t)
	g := unitGrant()
	r.prepareAsUnit()
	p := netip.MustParsePrefix
	pair, err := netlab.New(netlab.Config{
		Name:   fmt.Sprintf("nr%d", time.Now().UnixNano()%10000),
		AddrsA: []netip.Prefix{p("10.72.0.1/16"), p("10.72.1.2/16")},
		AddrsB: []netip.Prefix{p("10.72.0.2/16")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	rx, err := pair.B.ListenUDP(7780)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	// The last applied bundle, as an earlier apply left it in the state
	// directory (the agent's user owns that tree).
	raw, err := bundle.Sign(bundle.Body{Version: 1, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{"lab-agent"},
		Payload: bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldEnforce, Rules: []bundle.Rule{{CIDR: "10.72.1.0/24", Action: "drop"}}}}}, r.priv)
	if err != nil {
		t.Fatal(err)
	}
	stateFile := filepath.Join(r.dir, "state", bundle.StateFile)
	if err := os.WriteFile(stateFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(stateFile, unitUID, unitGID); err != nil {
		t.Fatal(err)
	}
	r.writeUnitConfig(pair.B.Iface, "/run/netns/"+pair.B.NSName)

	r.startAgentAs(g, fortress.SentinelEnforcing)
	defer r.logOnFailure()
	checkCreds(t, r.agent.Process.Pid, g)
	if line, ok := r.waitLog(time.Second, "kernel check failed"); ok {
		t.Errorf("the agent under the unit's grant lacks something: %s", line)
	}
	// The agent read its configuration and trust key again through
	// Sentinel once it ran (verifyInputs), as the user.
	for _, in := range []string{filepath.Join(configDir, "fortress-agent.json"), filepath.Join(configDir, "trust.pem")} {
		if _, ok := r.waitLog(10*time.Second, "input verified", "input="+in, "sentinel=true"); !ok {
			t.Errorf("the agent did not verify %s through Sentinel", in)
		}
	}
	st, err := r.status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Sentinel.Adopted || st.Shield.State != fortress.ShieldEnforcing || st.Policy.Version != 1 || !st.Policy.InForce ||
		len(st.Shield.Interfaces) != 1 || !st.Shield.Interfaces[0].Attached {
		t.Fatalf("as uid %d: sentinel %+v, shield %+v, policy %+v", unitUID, st.Sentinel, st.Shield, st.Policy)
	}

	a := netip.MustParseAddr
	blocked, allowed, dst := a("10.72.1.2"), a("10.72.0.1"), a("10.72.0.2")
	round := 0
	traffic := func(when string) {
		t.Helper()
		round++
		pair.A.SendUDP(blocked, dst, 7780, 10)
		pair.A.SendUDP(allowed, dst, 7780, 1)
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
	traffic("agent as uid 990")

	r.rootAttacks(t, "agent as uid 990")
	traffic("after root's attacks")

	// kill -9: the pins keep enforcing; the agent started again as the
	// same user adopts them.
	r.stopAgent(syscall.SIGKILL)
	if err := shell("rm -rf " + filepath.Join(configDir, "sweep.json")); err == nil {
		t.Fatal("rm -rf of the protected config with the agent killed")
	}
	traffic("agent killed")
	r.startAgentAs(g, fortress.SentinelEnforcing)
	checkCreds(t, r.agent.Process.Pid, g)
	if st, _ := r.status(); !st.Sentinel.Adopted || !st.Shield.Adopted || st.Shield.State != fortress.ShieldEnforcing {
		t.Fatalf("agent restarted as uid %d did not adopt: sentinel %+v shield %+v", unitUID, st.Sentinel, st.Shield)
	}
	traffic("agent restarted as uid 990")
	r.rootAttacks(t, "agent restarted as uid 990")
	traffic("after root's attacks on the restarted agent")

	// A signed removal through the status socket: the agent, as the
	// user, takes Shield and Sentinel out and leaves no pin.
	tok := r.token("remove", "10m", "remove.tok")
	out, code := r.ctl("maintenance", "remove", "--socket", r.socket, "--token", tok)
	if code != 0 || !strings.Contains(out, "removed: shield, sentinel") || !strings.Contains(out, "no pins left") {
		t.Fatalf("maintenance remove: exit %d: %s", code, out)
	}
	if err := shell("rm -f " + filepath.Join(configDir, "sweep.json")); err != nil {
		t.Fatalf("rm after removal: %v", err)
	}
}

// rootAttacks is a representative set of root's attacks; each must be
// refused with EPERM and show in the agent's events.
func (r *rig) rootAttacks(t *testing.T, when string) {
	t.Helper()
	sweep := filepath.Join(configDir, "sweep.json")
	before, err := os.ReadFile(sweep)
	if err != nil {
		t.Fatal(err)
	}
	eperm := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, unix.EPERM) {
			t.Errorf("%s: root's %s: %v, want EPERM", when, what, err)
		}
	}
	f, err := os.OpenFile(sweep, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		f.Close()
	}
	eperm("write of "+sweep, err)
	eperm("rename of "+sweep, os.Rename(sweep, sweep+".old"))
	eperm("unlink of "+sweep, unix.Unlink(sweep))
	eperm("new file in "+configDir, func() error {
		f, err := os.OpenFile(filepath.Join(configDir, "evil.json"), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
		if err == nil {
			f.Close()
			os.Remove(f.Name())
		}
		return err
	}())
	if after, _ := os.ReadFile(sweep); string(after) != string(before) {
		t.Fatalf("%s: %s changed", when, sweep)
	}
	// Replacing the agent binary: a file renamed over it (from its own
	// directory: a rename from elsewhere fails with EXDEV first), its
	// mode changed, it unlinked; the update manager's binary, which is not
	// running (a running one is ETXTBSY before any LSM), written over.
	evil := filepath.Join(filepath.Dir(agentBin), "evil-agent")
	if err := os.WriteFile(evil, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(evil)
	eperm("rename over "+agentBin, unix.Rename(evil, agentBin))
	eperm("chmod of "+agentBin, unix.Chmod(agentBin, 0o777))
	eperm("unlink of "+agentBin, unix.Unlink(agentBin))
	f, err = os.OpenFile(updateBin, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		f.Close()
	}
	eperm("write of "+updateBin, err)

	// Fortress's maps by id, as bpftool reaches them: a map of the test's
	// own is the control.
	state := filepath.Join(r.pinRoot, "shield", "shield_state")
	out, err := exec.Command("bpftool", "-j", "map", "show", "pinned", state).Output()
	if err != nil {
		t.Fatalf("bpftool map show pinned %s: %v", state, err)
	}
	var info struct {
		ID        int `json:"id"`
		KeySize   int `json:"bytes_key"`
		ValueSize int `json:"bytes_value"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.ID == 0 {
		t.Fatalf("bpftool map show: %v: %s", err, out)
	}
	update := func(id, keySize, valueSize int) error {
		args := []string{"map", "update", "id", strconv.Itoa(id), "key"}
		args = append(args, strings.Fields(strings.Repeat("0 ", keySize))...)
		args = append(args, "value")
		args = append(args, strings.Fields(strings.Repeat("0 ", valueSize))...)
		if out, err := exec.Command("bpftool", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	own, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: uint32(info.KeySize), ValueSize: uint32(info.ValueSize), MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	ownInfo, _ := own.Info()
	ownID, _ := ownInfo.ID()
	if err := update(int(ownID), info.KeySize, info.ValueSize); err != nil {
		t.Errorf("control: bpftool map update id of the test's own map: %v", err)
	}
	own.Close()
	if err := update(info.ID, info.KeySize, info.ValueSize); err == nil {
		t.Errorf("%s: root updated Shield's state map by id", when)
	} else if !strings.Contains(err.Error(), "Operation not permitted") {
		t.Errorf("%s: bpftool map update id %d: %v, want Operation not permitted", when, info.ID, err)
	}
	if _, err := ebpf.NewMapFromID(ebpf.MapID(info.ID)); !errors.Is(err, unix.EPERM) {
		t.Errorf("%s: map fd by id read-write: %v, want EPERM", when, err)
	}
	if err := programAttack(state); err != nil {
		t.Errorf("%s: %v", when, err)
	}
	if err := heldFdAttacks(t, filepath.Join(r.pinRoot, "shield")); err != nil {
		t.Errorf("%s: %v", when, err)
	}

	// The agent, as its user, reported the refusals.
	for _, parts := range [][]string{
		{"path=" + sweep, "verdict=denied"},
		{"path=" + agentBin, "verdict=denied"},
		{"path=" + updateBin, "verdict=denied"},
		{"op=map_write", "comm=bpftool", "verdict=denied"},
		{"op=prog_fd", "verdict=denied"},
	} {
		if _, ok := r.waitLog(10*time.Second, append([]string{"msg=event", "kind=violation"}, parts...)...); !ok {
			t.Errorf("%s: no violation event with %v in the agent's log", when, parts)
		}
	}
	if _, err := r.status(); err != nil {
		t.Errorf("%s: status socket: %v", when, err)
	}
}

// runAgentAs starts the agent under g and waits up to a minute for it to
// exit. It returns the exit code and the agent's output, or up=true (the
// agent left running as r.agent, for teardown to remove what it loaded)
// when the status socket answered first.
func (r *rig) runAgentAs(g grant) (code int, out string, up bool) {
	r.t.Helper()
	r.agentLog = &lockedBuffer{}
	cmd := exec.Command(agentBin, "--config", filepath.Join(configDir, "fortress-agent.json"))
	cmd.Stdout, cmd.Stderr = r.agentLog, r.agentLog
	if err := g.start(cmd); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		// An exited child stays a zombie until Wait: look without reaping.
		if zombie(cmd.Process.Pid) {
			err := cmd.Wait()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return ee.ExitCode(), r.agentLog.String(), false
			}
			return 0, r.agentLog.String(), false
		}
		if _, err := r.status(); err == nil {
			r.everStarted = true
			r.agent = cmd
			return 0, r.agentLog.String(), true
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			r.t.Fatalf("agent under %s neither exited nor answered in a minute:\n%s", g, r.agentLog)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// zombie reports whether process pid has exited (and is not yet reaped).
func zombie(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, ok := strings.Cut(string(raw), ") ")
	return ok && strings.HasPrefix(rest, "Z")
}

// TestNonRootAgentLacksCapabilityInLab starts the installed agent as the
// unit's user with the unit's grant less one required capability, for each
// of them, with Shield configured on a veth and Sentinel enabled. The agent
// must not run half-protected: it exits non-zero naming the missing
// capability, before loading anything.
func TestNonRootAgentLacksCapabilityInLab(t *testing.T) {
	p := netip.MustParsePrefix
	pair, err := netlab.New(netlab.Config{
		Name:   fmt.Sprintf("nc%d", time.Now().UnixNano()%10000),
		AddrsA: []netip.Prefix{p("10.73.0.1/16")},
		AddrsB: []netip.Prefix{p("10.73.0.2/16")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	for _, c := range unitGrant().caps {
		t.Run(c.Name, func(t *testing.T) {
			r := newRig(t)
			r.prepareAsUnit()
			r.writeUnitConfig(pair.B.Iface, "/run/netns/"+pair.B.NSName)
			g := unitGrant().without(c)
			code, out, up := r.runAgentAs(g)
			if up {
				st, _ := r.status()
				t.Fatalf("the agent without %s runs: sentinel %s (%s), shield %s (%s)\nagent log:\n%s",
					c.Name, st.Sentinel.State, st.Sentinel.Reason, st.Shield.State, st.Shield.Reason, out)
			}
			t.Logf("without %s: exit %d:\n%s", c.Name, code, out)
			if code == 0 || !strings.Contains(out, c.Name) {
				t.Errorf("the agent without %s: exit %d; want non-zero and the capability named", c.Name, code)
			}
			if ents, _ := os.ReadDir(r.pinRoot); len(ents) != 0 {
				t.Errorf("the agent without %s left pins: %v", c.Name, ents)
			}
		})
	}
}

// TestNonRootMemlockInLab: kernels before 5.11 charge BPF maps to
// RLIMIT_MEMLOCK. Started as the unit's user with the unit's capabilities
// but the limit a 5.10 kernel gives (64 KiB, no LimitMEMLOCK=), the agent
// refuses to start there and says what to do, as fortressctl probe does;
// with CAP_SYS_RESOURCE added it raises the limit itself and runs. From
// 5.11 on maps are charged to the memory cgroup and the set alone runs.
func TestNonRootMemlockInLab(t *testing.T) {
	r := newRig(t)
	r.prepareAsUnit()
	r.writeUnitConfig("", "")
	charged := memlockCharged(t)
	low := unitGrant()
	low.memlock = kernelMemlock

	probe := func(g grant) (ok bool, reason string) {
		t.Helper()
		cmd := exec.Command(ctlBin, "probe", "--json")
		var stdout strings.Builder
		cmd.Stdout = &stdout
		if err := g.start(cmd); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("fortressctl probe under %s: %v\n%s", g, err, stdout.String())
		}
		var rep struct {
			Checks []struct {
				Name   string `json:"name"`
				OK     bool   `json:"ok"`
				Reason string `json:"reason"`
			} `json:"checks"`
		}
		if err := json.Unmarshal([]byte(stdout.String()), &rep); err != nil {
			t.Fatalf("probe output: %v\n%s", err, stdout.String())
		}
		for _, c := range rep.Checks {
			if c.Name == "memlock" {
				t.Logf("fortressctl probe under %s: memlock ok=%v %s", g, c.OK, c.Reason)
				return c.OK, c.Reason
			}
		}
		t.Fatalf("probe has no memlock check:\n%s", stdout.String())
		return false, ""
	}
	if ok, reason := probe(unitGrant()); !ok {
		t.Errorf("probe under the unit's grant: memlock not ok: %s", reason)
	}
	ok, reason := probe(low)
	if !charged {
		if !ok {
			t.Errorf("5.11+: probe under %s: memlock not ok: %s", low, reason)
		}
		r.startAgentAs(low, fortress.SentinelEnforcing)
		defer r.logOnFailure()
		checkCreds(t, r.agent.Process.Pid, low)
		return
	}
	want := []string{"RLIMIT_MEMLOCK", "LimitMEMLOCK=infinity", caps.SysResource.Name}
	for _, w := range want {
		if ok || !strings.Contains(reason, w) {
			t.Errorf("probe under %s: memlock ok=%v %q; want not ok, naming %s", low, ok, reason, w)
		}
	}
	code, out, up := r.runAgentAs(low)
	if up {
		st, _ := r.status()
		t.Fatalf("the agent under %s runs: sentinel %s (%s), shield %s (%s)\nagent log:\n%s",
			low, st.Sentinel.State, st.Sentinel.Reason, st.Shield.State, st.Shield.Reason, out)
	}
	t.Logf("under %s: exit %d:\n%s", low, code, out)
	for _, w := range want {
		if code == 0 || !strings.Contains(out, w) {
			t.Errorf("the agent under %s: exit %d; want non-zero and %s named", low, code, w)
		}
	}
	if ents, _ := os.ReadDir(r.pinRoot); len(ents) != 0 {
		t.Errorf("the refused agent left pins: %v", ents)
	}
	// The alternative the README names: CAP_SYS_RESOURCE, and the agent
	// raises the limit itself.
	alt := low.with(caps.SysResource)
	r.startAgentAs(alt, fortress.SentinelEnforcing)
	defer r.logOnFailure()
	checkCreds(t, r.agent.Process.Pid, alt)
}

// memlockCharged says whether this kernel charges BPF maps to
// RLIMIT_MEMLOCK (before 5.11).
func memlockCharged(t *testing.T) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var major, minor int
	if _, err := fmt.Sscanf(rel, "%d.%d", &major, &minor); err != nil {
		t.Fatalf("kernel release %q: %v", rel, err)
	}
	t.Logf("kernel %s", rel)
	return major < 5 || major == 5 && minor < 11
}

// TestUnitIsTheLabGrant keeps the lab's grant the shipped unit's: the same
// capabilities (ambient and bounding), LimitMEMLOCK=infinity,
// NoNewPrivileges=yes, UMask=0077 and a user that is not root. It reads
// the unit from the source tree, so it runs on the host.
func TestUnitIsTheLabGrant(t *testing.T) {
	if testutil.InLab() {
		t.Skip("the unit file is not in the lab image; the host run checks it")
	}
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "systemd", "fortress-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	g := unitGrant()
	want := map[string]string{
		"AmbientCapabilities":   caps.Names(g.caps),
		"CapabilityBoundingSet": caps.Names(g.caps),
		"LimitMEMLOCK":          "infinity",
		"NoNewPrivileges":       "yes",
		"UMask":                 "0077",
	}
	for k, v := range want {
		if strings.Join(strings.Fields(keys[k]), " ") != v {
			t.Errorf("unit: %s=%s; the lab starts the agent with %s", k, keys[k], v)
		}
	}
	if g.memlock != unix.RLIM_INFINITY {
		t.Errorf("the lab's unit grant has RLIMIT_MEMLOCK %d", g.memlock)
	}
	if u := keys["User"]; u == "" || u == "root" || u == "0" || keys["Group"] == "" {
		t.Errorf("unit: User=%q Group=%q; the lab runs the agent as uid %d, gid %d", u, keys["Group"], unitUID, unitGID)
	}
}
