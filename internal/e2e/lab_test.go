package e2e

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/netlab"
	"github.com/carverauto/fortress/internal/sentinel"
	"github.com/carverauto/fortress/internal/testutil"
	"github.com/carverauto/fortress/pkg/fortress"
)

// configDir is the agent's protected configuration directory: the
// installed agent reads its configuration only from there.
const configDir = "/etc/serviceradar"

// binaries are where vmlab installs the project's commands.
var (
	agentBin  = "/usr/local/bin/fortress-agent"
	ctlBin    = "/usr/local/bin/fortressctl"
	updateBin = "/usr/local/bin/fortress-update"
)

type rig struct {
	t        *testing.T
	dir      string
	pinRoot  string
	socket   string
	agent    *exec.Cmd
	agentLog *lockedBuffer
	keyFile  string
	priv     ed25519.PrivateKey
	// everStarted: an agent ran, so teardown must remove Fortress.
	everStarted bool
}

func newRig(t *testing.T) *rig {
	testutil.RequireLab(t, "runs the installed agent with BPF LSM: VM lab only (the host kernel refuses LSM loads)")
	for _, b := range []string{agentBin, ctlBin, updateBin} {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("lab binary missing: %v", err)
		}
	}
	r := &rig{t: t, pinRoot: testutil.TempBPFFS(t)}
	dir, err := os.MkdirTemp("", "fortress-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	r.dir = dir
	r.socket = filepath.Join(dir, "run", "fortress.sock")
	pub, priv, _ := bundle.GenerateKey()
	pubPEM, _ := bundle.MarshalPublicKey(pub)
	privPEM, _ := bundle.MarshalPrivateKey(priv)
	r.priv = priv
	r.keyFile = filepath.Join(dir, "signing.key") // the operator's, off the host in real life
	os.WriteFile(r.keyFile, privPEM, 0o600)
	if err := os.MkdirAll(configDir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(configDir, "trust.pem"), pubPEM, 0o644)
	os.WriteFile(filepath.Join(configDir, "sweep.json"), []byte(`{"networks":["10.0.0.0/8"]}`), 0o644)
	t.Cleanup(r.teardown)
	r.expectSentinelUnavailable() // arm64 before 6.4: the agent must say why, and the test ends
	return r
}

// teardown takes Fortress out of the kernel with a signed remove token
// (restarting the agent if a test killed it), so that the next test finds
// nothing protected, then deletes what the rig created.
func (r *rig) teardown() {
	if r.everStarted {
		if r.agent == nil {
			r.startAgent("")
		}
		if st, err := r.status(); err != nil || st.Sentinel.State != fortress.SentinelRemoved {
			tok := r.token("remove", "10m", "teardown.tok")
			if out, code := r.ctl("maintenance", "remove", "--socket", r.socket, "--token", tok); code != 0 {
				r.t.Errorf("teardown: maintenance remove: exit %d: %s", code, out)
			}
		}
		r.stopAgent(syscall.SIGTERM)
	}
	for _, name := range []string{"fortress-agent.json", "trust.pem", "sweep.json"} {
		if err := os.Remove(filepath.Join(configDir, name)); err != nil && !os.IsNotExist(err) {
			r.t.Errorf("teardown: %v", err)
		}
	}
	os.RemoveAll(r.dir)
}

func (r *rig) writeConfig(iface, netns string) {
	cfg := map[string]any{
		"agent_id": "lab-agent", "pin_root": r.pinRoot,
		"state_dir": filepath.Join(r.dir, "state"), "audit_log": filepath.Join(r.dir, "log", "audit.log"),
		"trust_key": filepath.Join(configDir, "trust.pem"), "status_socket": r.socket,
		"metrics":  map[string]any{"listen": "off"},
		"log":      map[string]any{"format": "text"},
		"sentinel": map[string]any{"updater_binary": updateBin},
	}
	if iface != "" {
		cfg["interfaces"] = []map[string]string{{"name": iface, "netns": netns}}
	}
	data, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(filepath.Join(configDir, "fortress-agent.json"), data, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// startAgent runs the installed agent and waits until its status socket
// reports Sentinel in the given state ("" for any).
func (r *rig) startAgent(want string) {
	r.t.Helper()
	r.everStarted = true
	r.agentLog = &lockedBuffer{}
	cmd := exec.Command(agentBin, "--config", filepath.Join(configDir, "fortress-agent.json"))
	cmd.Stdout, cmd.Stderr = r.agentLog, r.agentLog
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.agent = cmd
	deadline := time.Now().Add(90 * time.Second)
	for {
		st, err := r.status()
		if err == nil && (want == "" || st.Sentinel.State == want) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("agent not up with sentinel %s: status %+v (%v)\nagent log:\n%s", want, st.Sentinel, err, r.agentLog)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// lockedBuffer collects the agent's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitLog waits until the agent's log has a line with every one of parts,
// and returns that line.
func (r *rig) waitLog(timeout time.Duration, parts ...string) (string, bool) {
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(r.agentLog.String(), "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return line, true
			}
		}
		if time.Now().After(deadline) {
			return "", false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *rig) logOnFailure() {
	if r.t.Failed() && r.agentLog != nil {
		r.t.Logf("agent log:\n%s", r.agentLog)
	}
}

func (r *rig) stopAgent(sig syscall.Signal) {
	r.t.Helper()
	if r.agent == nil {
		return
	}
	r.agent.Process.Signal(sig)
	r.agent.Wait()
	r.agent = nil
}

func (r *rig) status() (fortress.Status, error) {
	var st fortress.Status
	out, err := exec.Command(ctlBin, "status", "--socket", r.socket, "--json").Output()
	if len(out) == 0 {
		return st, fmt.Errorf("status: %v", err)
	}
	return st, json.Unmarshal(out, &st)
}

// ctl runs fortressctl and returns its combined output and exit code.
func (r *rig) ctl(args ...string) (string, int) {
	r.t.Helper()
	out, err := exec.Command(ctlBin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		r.t.Fatal(err)
	}
	return string(out), 0
}

func (r *rig) token(action, window, file string) string {
	r.t.Helper()
	path := filepath.Join(r.dir, file)
	if out, code := r.ctl("maintenance", "token", "--key", r.keyFile, "--host", "lab-agent", "--action", action,
		"--for", window, "--out", path); code != 0 {
		r.t.Fatalf("maintenance token: %d %s", code, out)
	}
	return path
}

// rollBackClock sets the VM's clock to two seconds into the window of the
// token in file, runs fn, and puts the clock right again.
func rollBackClock(t *testing.T, file string, fn func()) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := sentinel.PeekToken(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	saved := time.Now() // keeps a monotonic reading for putting it right
	set := func(to time.Time) error {
		ts := unix.NsecToTimespec(to.UnixNano())
		return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
	}
	if err := set(tok.NotBefore.Add(2 * time.Second)); err != nil {
		t.Fatalf("set the clock back: %v", err)
	}
	defer func() {
		if err := set(saved.Add(time.Since(saved))); err != nil {
			t.Errorf("put the clock right: %v", err)
		}
	}()
	fn()
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// shell runs a root shell command, an ordinary process to Sentinel.
func shell(cmd string) error {
	out, err := exec.Command("/bin/sh", "-c", cmd).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// TestMaintenanceAndRemovalInLab drives the operator's maintenance path
// with the installed binaries: root cannot touch the agent's config; a
// forged token changes nothing; a signed audit token lets root write until
// the kernel closes the window by itself; "maintenance end" closes it at
// once, and the same token replayed (then, and after a restart) is refused,
// as is an expired token with the clock set back into its window;
// only a release signed by the key in the protected directory
// replaces the agent binary, through fortress-update; after kill -9 the
// upgraded agent starts and adopts everything; a signed remove token takes Shield and
// Sentinel out of the kernel, leaves no pin, and root's
// rm -rf /etc/serviceradar/sweep.json then works.
func TestMaintenanceAndRemovalInLab(t *testing.T) {
	r := newRig(t)
	sweep := filepath.Join(configDir, "sweep.json")
	p := netip.MustParsePrefix
	pair, err := netlab.New(netlab.Config{
		Name:   fmt.Sprintf("e2e%d", time.Now().UnixNano()%10000),
		AddrsA: []netip.Prefix{p("10.70.0.1/16")},
		AddrsB: []netip.Prefix{p("10.70.0.2/16")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	r.writeConfig(pair.B.Iface, "/run/netns/"+pair.B.NSName)
	r.startAgent(fortress.SentinelEnforcing)
	defer r.logOnFailure()

	if err := shell("rm -rf " + sweep); err == nil {
		t.Fatal("root removed the protected config")
	}
	if err := shell("echo '{}' > " + sweep); err == nil {
		t.Fatal("root wrote the protected config")
	}

	// A token signed by another key: refused, still enforcing.
	_, otherPriv, _ := bundle.GenerateKey()
	otherPEM, _ := bundle.MarshalPrivateKey(otherPriv)
	otherKey := filepath.Join(r.dir, "other.key")
	os.WriteFile(otherKey, otherPEM, 0o600)
	forged := filepath.Join(r.dir, "forged.tok")
	if out, code := r.ctl("maintenance", "token", "--key", otherKey, "--host", "lab-agent", "--out", forged); code != 0 {
		t.Fatalf("token: %s", out)
	}
	if out, code := r.ctl("maintenance", "start", "--socket", r.socket, "--token", forged); code != 1 || !strings.Contains(out, "bad signature") {
		t.Fatalf("forged token: exit %d: %s", code, out)
	}
	if err := shell("echo '{}' > " + sweep); err == nil {
		t.Fatal("root wrote the protected config after a forged token")
	}

	// A signed audit token for 25s: root may write; the kernel re-arms by itself.
	audit := r.token("audit", "25s", "audit.tok")
	if out, code := r.ctl("maintenance", "start", "--socket", r.socket, "--token", audit); code != 0 || !strings.Contains(out, "audit until") {
		t.Fatalf("maintenance start: exit %d: %s", code, out)
	}
	if st, _ := r.status(); st.Sentinel.State != fortress.SentinelAudit || st.Sentinel.AuditEnd.IsZero() {
		t.Errorf("status in the window: %+v", st.Sentinel)
	}
	if err := shell(`echo '{"networks":[]}' > ` + sweep); err != nil {
		t.Fatalf("write in the audit window: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for shell("echo '{}' > "+sweep) == nil {
		if time.Now().After(deadline) {
			t.Fatal("audit window still open 60s after a 25s token")
		}
		time.Sleep(time.Second)
	}
	if b, _ := os.ReadFile(sweep); strings.TrimSpace(string(b)) != `{"networks":[]}` && strings.TrimSpace(string(b)) != "{}" {
		t.Fatalf("config %q", b)
	}
	before, _ := os.ReadFile(sweep)
	if err := shell("rm -rf " + sweep); err == nil {
		t.Fatal("rm -rf after the window closed")
	}
	if after, _ := os.ReadFile(sweep); !bytes.Equal(before, after) {
		t.Fatal("config changed after the window closed")
	}

	// maintenance end closes a long window at once.
	long := r.token("audit", "10m", "long.tok")
	if out, code := r.ctl("maintenance", "start", "--socket", r.socket, "--token", long); code != 0 {
		t.Fatalf("maintenance start: exit %d: %s", code, out)
	}
	if out, code := r.ctl("maintenance", "end", "--socket", r.socket); code != 0 {
		t.Fatalf("maintenance end: exit %d: %s", code, out)
	}
	if err := shell("rm -rf " + sweep); err == nil {
		t.Fatal("rm -rf after maintenance end")
	}
	// A token opens one window: replayed after "end", it is refused.
	replay := func(when string) {
		t.Helper()
		if out, code := r.ctl("maintenance", "start", "--socket", r.socket, "--token", long); code != 1 || !strings.Contains(out, "already used") {
			t.Fatalf("token replayed %s: exit %d: %s", when, code, out)
		}
		if err := shell("rm -rf " + sweep); err == nil {
			t.Fatalf("rm -rf after a token replayed %s", when)
		}
	}
	replay("after maintenance end")

	// Upgrade: root cannot replace the agent binary, not even through the
	// update manager with a key of its own; a signed release goes in.
	newBin := filepath.Join(r.dir, "fortress-agent-new")
	if err := shell("cp " + agentBin + " " + newBin); err != nil {
		t.Fatal(err)
	}
	oldIno := inode(t, agentBin)
	for _, attack := range []string{"cp " + newBin + " " + agentBin, "mv " + newBin + " " + agentBin, "rm -f " + agentBin} {
		if err := shell(attack); err == nil {
			t.Fatalf("root ran %q", attack)
		}
	}
	rootPub, rootPriv, _ := bundle.GenerateKey()
	rootPubPEM, _ := bundle.MarshalPublicKey(rootPub)
	rootPrivPEM, _ := bundle.MarshalPrivateKey(rootPriv)
	os.WriteFile(filepath.Join(r.dir, "mine.pem"), rootPubPEM, 0o644)
	os.WriteFile(filepath.Join(r.dir, "mine.key"), rootPrivPEM, 0o600)
	if out, code := r.ctl("sign-release", "--key", filepath.Join(r.dir, "mine.key"), "--out", filepath.Join(r.dir, "mine.sig"), newBin); code != 0 {
		t.Fatalf("sign-release: %s", out)
	}
	if out, err := exec.Command(updateBin, "--agent", agentBin, "--trust-key", filepath.Join(r.dir, "mine.pem"),
		"--sig", filepath.Join(r.dir, "mine.sig"), newBin).CombinedOutput(); err == nil || !strings.Contains(string(out), "protected directory") {
		t.Fatalf("update with root's own key: %v %s", err, out)
	}
	if out, code := r.ctl("sign-release", "--key", r.keyFile, "--out", filepath.Join(r.dir, "release.sig"), newBin); code != 0 {
		t.Fatalf("sign-release: %s", out)
	}
	if out, err := exec.Command(updateBin, "--agent", agentBin, "--trust-key", filepath.Join(configDir, "trust.pem"),
		"--sig", filepath.Join(r.dir, "release.sig"), newBin).CombinedOutput(); err != nil {
		t.Fatalf("signed update: %v %s", err, out)
	}
	if inode(t, agentBin) == oldIno {
		t.Fatal("agent binary not replaced")
	}
	if err := shell("cp /bin/busybox " + agentBin); err == nil {
		t.Fatal("root overwrote the upgraded agent binary")
	}

	// kill -9 leaves everything enforcing; the upgraded agent starts from
	// the new inode and adopts the pins.
	r.stopAgent(syscall.SIGKILL)
	if err := shell("rm -rf " + sweep); err == nil {
		t.Fatal("rm -rf with the agent killed")
	}
	r.startAgent(fortress.SentinelEnforcing)
	if st, _ := r.status(); !st.Sentinel.Adopted || !st.Shield.Adopted {
		t.Errorf("restarted agent did not adopt: sentinel %+v shield adopted %v", st.Sentinel, st.Shield.Adopted)
	}
	replay("to the restarted agent")

	// Root sets the clock back into the window of the first audit token
	// (used, expired, its record gone once a later token was honoured):
	// the agent sees the clock behind a token it honoured and refuses.
	rollBackClock(t, audit, func() {
		if out, code := r.ctl("maintenance", "start", "--socket", r.socket, "--token", audit); code != 1 || !strings.Contains(out, "clock is behind") {
			t.Errorf("expired token with the clock set back: exit %d: %s", code, out)
		}
		if err := shell("rm -rf " + sweep); err == nil {
			t.Error("rm -rf with the clock set back")
		}
	})

	// "start" refuses to send a remove token; "remove" does the job.
	remove := r.token("remove", "10m", "remove.tok")
	if out, code := r.ctl("maintenance", "start", "--socket", r.socket, "--token", remove); code != 1 || !strings.Contains(out, "use maintenance remove") {
		t.Fatalf("start with a remove token: exit %d: %s", code, out)
	}
	out, code := r.ctl("maintenance", "remove", "--socket", r.socket, "--token", remove)
	if code != 0 || !strings.Contains(out, "removed: shield, sentinel") || !strings.Contains(out, "no pins left") {
		t.Fatalf("maintenance remove: exit %d: %s", code, out)
	}
	if st, _ := r.status(); st.Sentinel.State != fortress.SentinelRemoved || st.Shield.State != fortress.ShieldRemoved {
		t.Errorf("status after removal: sentinel %+v shield %+v", st.Sentinel, st.Shield)
	}
	if err := shell("rm -rf " + sweep); err != nil {
		t.Fatalf("rm -rf after removal: %v", err)
	}
}

// TestChrootedAgentGainsNothingInLab: root builds a fake root with its own
// /etc/serviceradar and trust key, bind-mounts the real binaries and the
// real pins into it and runs the real agent binary chrooted there. That
// process has the agent's executable inode, but not the agent's root
// directory, so Sentinel must give it no authority: it cannot take over
// the pins, and a maintenance token signed by root's key opens nothing.
func TestChrootedAgentGainsNothingInLab(t *testing.T) {
	r := newRig(t)
	sweep := filepath.Join(configDir, "sweep.json")
	r.writeConfig("", "")
	r.startAgent(fortress.SentinelEnforcing)
	defer r.logOnFailure()

	fake, err := os.MkdirTemp("", "fake-root-")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"usr/local/bin", "proc", "sys", "pins", "etc/serviceradar", "state", "log", "run", "tmp"} {
		os.MkdirAll(filepath.Join(fake, d), 0o755)
	}
	var mounted []string
	mount := func(src, dst, fstype string, flags uintptr) {
		t.Helper()
		target := filepath.Join(fake, dst)
		if err := syscall.Mount(src, target, fstype, flags, ""); err != nil {
			t.Fatalf("mount %s on %s: %v", src, target, err)
		}
		mounted = append(mounted, target)
	}
	defer func() {
		for i := len(mounted) - 1; i >= 0; i-- {
			syscall.Unmount(mounted[i], syscall.MNT_DETACH)
		}
	}()
	mount("/usr/local/bin", "usr/local/bin", "", syscall.MS_BIND)
	mount("proc", "proc", "proc", 0)
	mount("/sys", "sys", "", syscall.MS_BIND|syscall.MS_REC)
	mount(r.pinRoot, "pins", "", syscall.MS_BIND)

	rootPub, rootPriv, _ := bundle.GenerateKey()
	rootPubPEM, _ := bundle.MarshalPublicKey(rootPub)
	rootPrivPEM, _ := bundle.MarshalPrivateKey(rootPriv)
	os.WriteFile(filepath.Join(fake, "etc/serviceradar/trust.pem"), rootPubPEM, 0o644)
	rootKey := filepath.Join(r.dir, "root.key")
	os.WriteFile(rootKey, rootPrivPEM, 0o600)
	cfg, _ := json.Marshal(map[string]any{
		"agent_id": "lab-agent", "pin_root": "/pins", "state_dir": "/state", "audit_log": "/log/audit.log",
		"trust_key": "/etc/serviceradar/trust.pem", "status_socket": "/run/fortress.sock",
		"metrics": map[string]any{"listen": "off"}, "log": map[string]any{"format": "text"},
	})
	os.WriteFile(filepath.Join(fake, "etc/serviceradar/fortress-agent.json"), cfg, 0o644)

	var fakeLog bytes.Buffer
	cmd := exec.Command(agentBin, "--config", "/etc/serviceradar/fortress-agent.json")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: fake}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = &fakeLog, &fakeLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
		t.Logf("chrooted agent log:\n%s", fakeLog.String())
	}()
	fakeSock := filepath.Join(fake, "run/fortress.sock")
	deadline := time.After(90 * time.Second)
wait:
	for {
		if _, err := os.Stat(fakeSock); err == nil {
			break
		}
		select {
		case <-exited:
			break wait
		case <-deadline:
			break wait
		case <-time.After(300 * time.Millisecond):
		}
	}
	// Whatever the chrooted agent managed to start, root's token must open
	// nothing in the real Sentinel.
	tok := filepath.Join(r.dir, "root-audit.tok")
	if out, code := r.ctl("maintenance", "token", "--key", rootKey, "--host", "lab-agent", "--for", "10m", "--out", tok); code != 0 {
		t.Fatalf("token: %s", out)
	}
	if _, err := os.Stat(fakeSock); err == nil {
		out, code := r.ctl("maintenance", "start", "--socket", fakeSock, "--token", tok)
		t.Logf("maintenance start on the chrooted agent: exit %d: %s", code, out)
	}
	before, _ := os.ReadFile(sweep)
	if err := shell("echo '{}' > " + sweep); err == nil {
		t.Fatal("after the chrooted agent took root's token, root wrote the protected config")
	}
	if err := shell("rm -rf " + sweep); err == nil {
		t.Fatal("after the chrooted agent took root's token, root removed the protected config")
	}
	if after, _ := os.ReadFile(sweep); !bytes.Equal(before, after) {
		t.Fatal("config changed")
	}
	st, err := r.status()
	if err != nil || st.Sentinel.State != fortress.SentinelEnforcing {
		t.Fatalf("real agent's sentinel: %+v (%v)", st.Sentinel, err)
	}
}
