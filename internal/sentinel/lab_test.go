package sentinel

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/pins"
	"github.com/carverauto/fortress/internal/testutil"
)

// lab is one Sentinel deployment inside the VM: an agent helper process
// (a copy of this test binary, so another inode) that loaded Sentinel, and
// the protected tree around it. The test process is the attacker.
type lab struct {
	t          *testing.T
	dir        string
	pinRoot    pins.Root
	agentBin   string
	updaterBin string
	staging    string
	configDir  string
	stateDir   string
	watched    string
	free       string
	trustPub   ed25519.PublicKey
	trustPriv  ed25519.PrivateKey
	releases   Releases
	agent      *agentProc
	// layers are further trees the snapshot covers (overlay layers);
	// unmounts run in teardown once Sentinel is gone.
	layers   []string
	unmounts []string
	// remove, if set, removes a Sentinel whose agent is gone (teardown);
	// a lab that sets it in setup starts its agent itself.
	remove func() error

	evMu   sync.Mutex
	events []Event
}

type agentProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	resp  chan string
	done  chan struct{}
}

const labConfigDir = "/etc/serviceradar"

// labTimeout bounds one agent round trip; everything runs under TCG.
const labTimeout = 90 * time.Second

func newLab(t *testing.T) *lab {
	t.Helper()
	return newLabWith(t, nil)
}

// newLabWith is newLab with setup run on the prepared tree just before the
// agent starts (to move the config or the agent binary elsewhere).
func newLabWith(t *testing.T, setup func(l *lab)) *lab {
	t.Helper()
	testutil.RequireLab(t, testutil.LSMReason)
	expectUnavailable(t) // arm64 before 6.4: Start must refuse, and the test ends
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	l := &lab{t: t, dir: "/tmp/fortress-lab-" + name, configDir: labConfigDir, stateDir: "/var/lib/serviceradar"}
	os.RemoveAll(l.dir)
	l.pinRoot = pins.Root(filepath.Join(l.dir, "bpf", "serviceradar"))
	l.agentBin = filepath.Join(l.dir, "bin", "serviceradar-agent")
	l.updaterBin = filepath.Join(l.dir, "libexec", "fortress-update")
	l.staging = filepath.Join(l.dir, "bin", ".fortress-staging")
	l.watched = filepath.Join(l.dir, "watched")
	l.free = filepath.Join(l.dir, "free")
	for _, d := range []string{filepath.Join(l.dir, "bpf"), filepath.Dir(l.agentBin), filepath.Dir(l.updaterBin), l.watched, l.free} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, unix.Mount("bpffs", filepath.Join(l.dir, "bpf"), "bpf", 0, ""))
	t.Cleanup(l.teardown)
	self, err := os.Executable()
	must(t, err)
	must(t, copyFile(self, l.agentBin))
	must(t, copyFile(self, l.updaterBin))
	os.RemoveAll(l.configDir)
	os.RemoveAll(l.stateDir)
	must(t, os.MkdirAll(l.configDir, 0o755))
	must(t, os.MkdirAll(l.stateDir, 0o700))
	must(t, os.WriteFile(filepath.Join(l.configDir, "sweep.json"), []byte(`{"networks":["10.0.0.0/8"],"a":"a"}`), 0o644))
	must(t, os.WriteFile(filepath.Join(l.configDir, "agent.json"), []byte(`{"listen":":50051"}`), 0o600))
	must(t, os.WriteFile(filepath.Join(l.stateDir, "trust.pub"), []byte("trust-key"), 0o600))
	must(t, os.WriteFile(filepath.Join(l.stateDir, "policy.version"), []byte("7"), 0o600))
	must(t, os.WriteFile(filepath.Join(l.watched, "w.txt"), []byte("watched"), 0o644))
	// A hard link made before Sentinel starts: a second name for a
	// protected inode must not be a way to write it.
	os.Remove("/etc/.sweep-hardlink")
	must(t, os.Link(filepath.Join(l.configDir, "sweep.json"), "/etc/.sweep-hardlink"))
	must(t, os.WriteFile("/tmp/evil.json", []byte(`{"evil":true}`), 0o644))
	must(t, os.WriteFile(filepath.Join(filepath.Dir(l.agentBin), "evil"), []byte("#!/bin/sh\necho evil\n"), 0o755))
	l.trustPub, l.trustPriv, _ = ed25519.GenerateKey(nil)
	if setup != nil {
		setup(l)
	}
	if l.remove == nil {
		l.startAgent(l.agentBin, false)
	}
	return l
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

func (l *lab) config() helperConfig {
	return helperConfig{
		Config: Config{
			PinRoot:       l.pinRoot,
			AgentBinary:   l.agentBin,
			UpdaterBinary: l.updaterBin,
			StagingDir:    l.staging,
			Releases:      l.releases,
			ConfigDir:     l.configDir,
			StateDirs:     []string{l.stateDir},
			Watched:       []string{l.watched, l.configDir},
		},
		TrustKey: l.trustPub,
		Host:     "vmlab",
	}
}

// startAgent runs bin as the agent and waits until it has loaded or
// adopted Sentinel. wantAdopted says which of the two it must have done.
func (l *lab) startAgent(bin string, wantAdopted bool) Status {
	l.t.Helper()
	cfg, _ := json.Marshal(l.config())
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), helperEnv+"=agent", "SENTINEL_CONFIG="+string(cfg))
	first := l.launch(cmd)
	return l.ready(first, wantAdopted)
}

// launch starts cmd as the agent (it ends up exec'ing an agent helper) and
// returns its first line.
func (l *lab) launch(cmd *exec.Cmd) string {
	t := l.t
	t.Helper()
	cmd.Stderr = &prefixWriter{t: t, prefix: "agent: "}
	stdin, err := cmd.StdinPipe()
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	a := &agentProc{cmd: cmd, stdin: stdin, resp: make(chan string, 16), done: make(chan struct{})}
	l.agent = a
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "event "); ok {
				var e Event
				if json.Unmarshal([]byte(rest), &e) == nil {
					l.evMu.Lock()
					l.events = append(l.events, e)
					l.evMu.Unlock()
				}
				continue
			}
			a.resp <- line
		}
		close(a.resp)
	}()
	return l.wait()
}

// ready checks the agent's first line: it loaded (or adopted, as
// wantAdopted says) Sentinel and enforces.
func (l *lab) ready(first string, wantAdopted bool) Status {
	t := l.t
	t.Helper()
	switch {
	case strings.HasPrefix(first, "unavailable"):
		testutil.MissingFeature(t, first)
	case !strings.HasPrefix(first, "ready "):
		t.Fatalf("agent did not start: %s", first)
	}
	var st Status
	must(t, json.Unmarshal([]byte(strings.TrimPrefix(first, "ready ")), &st))
	if st.Adopted != wantAdopted {
		t.Fatalf("agent adopted=%v, want %v (status %+v)", st.Adopted, wantAdopted, st)
	}
	if !st.Enforcing || len(st.Programs) < 15 {
		t.Fatalf("agent not enforcing: %+v", st)
	}
	return st
}

func (l *lab) wait() string {
	l.t.Helper()
	select {
	case line, ok := <-l.agent.resp:
		if !ok {
			l.t.Fatal("agent exited")
		}
		return line
	case <-time.After(labTimeout):
		l.t.Fatal("agent did not answer")
	}
	return ""
}

// do sends a command to the agent and returns its answer; failOK allows
// an "err" answer.
func (l *lab) do(cmd string) (string, error) {
	l.t.Helper()
	if _, err := fmt.Fprintln(l.agent.stdin, cmd); err != nil {
		l.t.Fatalf("agent command %q: %v", cmd, err)
	}
	line := l.wait()
	if rest, ok := strings.CutPrefix(line, "ok"); ok {
		return strings.TrimSpace(rest), nil
	}
	return "", errors.New(line)
}

func (l *lab) mustDo(cmd string) string {
	l.t.Helper()
	out, err := l.do(cmd)
	if err != nil {
		l.t.Fatalf("agent %q: %v", cmd, err)
	}
	return out
}

// kill9 kills the agent the hard way.
func (l *lab) kill9() {
	l.t.Helper()
	must(l.t, l.agent.cmd.Process.Signal(unix.SIGKILL))
	l.agent.cmd.Wait()
	<-l.agent.done
	l.agent = nil
}

func (l *lab) teardown() {
	t := l.t
	if l.agent != nil && l.agentAlive() {
		if _, err := l.doQuiet("remove"); err != nil {
			t.Errorf("teardown: remove sentinel: %v", err)
		}
	} else if _, err := os.Stat(l.pinRoot.Path(pins.Sentinel, "link_file_open")); err == nil {
		// The agent is gone but Sentinel is pinned: a new agent adopts
		// it and removes it.
		remove := l.removeWithNewAgent
		if l.remove != nil {
			remove = l.remove
		}
		if err := remove(); err != nil {
			t.Errorf("teardown: %v", err)
		}
	}
	if l.agent != nil {
		l.agent.stdin.Close()
		l.agent.cmd.Process.Kill()
		l.agent.cmd.Wait()
		l.agent = nil
	}
	os.Remove("/etc/.sweep-hardlink")
	for i := len(l.unmounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(l.unmounts[i], 0); err != nil {
			t.Errorf("teardown: unmount %s: %v", l.unmounts[i], err)
		}
	}
	unix.Unmount(filepath.Join(l.dir, "bpf"), unix.MNT_DETACH)
	if err := os.RemoveAll(l.dir); err != nil {
		out, _ := exec.Command("/bin/sh", "-c", "bpftool link show; bpftool prog show | grep -c lsm; dmesg | tail -40; ls -la "+l.pinRoot.Dir(pins.Sentinel)).CombinedOutput()
		t.Errorf("teardown: %v (Sentinel still attached?)\n%s", err, out)
	}
}

func (l *lab) agentAlive() bool {
	select {
	case <-l.agent.done:
		return false
	default:
		return true
	}
}

// doQuiet is do without t.Fatal, for cleanup.
func (l *lab) doQuiet(cmd string) (string, error) {
	if _, err := fmt.Fprintln(l.agent.stdin, cmd); err != nil {
		return "", err
	}
	select {
	case line, ok := <-l.agent.resp:
		if !ok {
			return "", errors.New("agent exited")
		}
		if rest, ok := strings.CutPrefix(line, "ok"); ok {
			return strings.TrimSpace(rest), nil
		}
		return "", errors.New(line)
	case <-time.After(labTimeout):
		return "", errors.New("agent did not answer")
	}
}

func (l *lab) removeWithNewAgent() error {
	cfg, _ := json.Marshal(l.config())
	cmd := exec.Command(l.agentBin)
	cmd.Env = append(os.Environ(), helperEnv+"=agent", "SENTINEL_CONFIG="+string(cfg))
	cmd.Stdin = strings.NewReader("remove\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nok") {
		return fmt.Errorf("remove with a new agent: %v: %s", err, out)
	}
	return nil
}

type prefixWriter struct {
	t      *testing.T
	prefix string
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if testing.Verbose() {
			fmt.Fprintln(os.Stderr, w.prefix+line)
		}
	}
	return len(p), nil
}

// snapshot is the content and metadata of every protected object.
type snapshot map[string]string

func (l *lab) snapshot() snapshot {
	s := snapshot{}
	add := func(path string) {
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			s[path] = "missing: " + err.Error()
			return
		}
		desc := fmt.Sprintf("ino=%d mode=%o uid=%d gid=%d size=%d mtime=%d.%d nlink=%d", st.Ino, st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Nlink)
		// Binaries (megabytes) are told apart by inode, size and mtime.
		if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size < 1<<20 && !strings.HasPrefix(path, string(l.pinRoot)) {
			b, _ := os.ReadFile(path)
			desc += " content=" + string(b)
			if len(b) > 256 {
				desc = desc[:len(desc)-len(b)] + fmt.Sprintf("%x", b[:64]) + fmt.Sprintf("…%d", len(b))
			}
		}
		s[path] = desc
	}
	for _, root := range append([]string{l.configDir, l.stateDir, string(l.pinRoot), l.staging}, l.layers...) {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			add(path)
			return nil
		})
	}
	add(l.agentBin)
	add(l.updaterBin)
	return s
}

func (s snapshot) diff(o snapshot) []string {
	var out []string
	for k, v := range s {
		if o[k] != v {
			out = append(out, fmt.Sprintf("%s: %q -> %q", k, v, o[k]))
		}
	}
	for k, v := range o {
		if _, ok := s[k]; !ok {
			out = append(out, fmt.Sprintf("%s: new %q", k, v))
		}
	}
	slices.Sort(out)
	return out
}

func (l *lab) eventsSince(n int) []Event {
	l.evMu.Lock()
	defer l.evMu.Unlock()
	return slices.Clone(l.events[n:])
}

func (l *lab) eventCount() int {
	l.evMu.Lock()
	defer l.evMu.Unlock()
	return len(l.events)
}

// waitEvent waits for an event after mark that matches.
func (l *lab) waitEvent(mark int, match func(Event) bool) (Event, bool) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range l.eventsSince(mark) {
			if match(e) {
				return e, true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return Event{}, false
}

// attack is one attempt that must be refused.
type attack struct {
	name string
	// run performs the attack; it returns the error the kernel gave (for
	// direct syscalls) or the shell's failure.
	run func() error
	// errno, if set, is the error the attempt must end with.
	errno error
	// kernelFirst, if set, is a refusal the kernel may give before any
	// LSM hook runs (then no Sentinel event is expected).
	kernelFirst string
}

// sh runs a shell command line as a root process that is not the agent.
func sh(cmdline string) error {
	out, err := exec.Command("/bin/sh", "-c", cmdline).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// refuse runs each attack and checks: it failed (with errno where given),
// every protected object is unchanged, and a denial event arrived.
func (l *lab) refuse(attacks ...attack) {
	t := l.t
	t.Helper()
	for _, a := range attacks {
		before := l.snapshot()
		mark := l.eventCount()
		err := a.run()
		after := l.snapshot()
		ok := true
		fail := func(format string, args ...any) {
			t.Helper()
			ok = false
			t.Errorf(a.name+": "+format, args...)
		}
		early := a.kernelFirst != "" && err != nil && strings.Contains(strings.ToLower(err.Error()), a.kernelFirst)
		switch {
		case err == nil:
			fail("succeeded, want refusal")
		case early:
		case a.errno != nil && !errors.Is(err, a.errno):
			fail("error %v, want %v", err, a.errno)
		case a.errno == nil && !strings.Contains(err.Error(), "not permitted"):
			fail("failed with %v, want a permission refusal", err)
		}
		if d := before.diff(after); len(d) > 0 {
			fail("protected objects changed:\n  %s", strings.Join(d, "\n  "))
		}
		if !early {
			if _, found := l.waitEvent(mark, func(e Event) bool { return e.Verdict == VerdictDenied }); !found {
				var seen []string
				for _, e := range l.eventsSince(mark) {
					seen = append(seen, e.Op+"/"+e.Verdict+"/"+e.Comm+"/"+e.Path)
				}
				fail("no denial event (err %v; events since: %v)", err, seen)
			}
		}
		if ok {
			t.Logf("refused: %s (%v)", a.name, err)
		}
	}
}

func openWrite(path string, flags int) error {
	fd, err := unix.Open(path, flags, 0o644)
	if err == nil {
		unix.Write(fd, []byte("x"))
		unix.Close(fd)
	}
	return err
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func ed25519GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(nil)
}
