package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/testutil"
	"github.com/carverauto/fortress/pkg/fortress"
)

// seccompLaunchEnv makes the test binary a launcher: it installs a seccomp
// user-notification filter for openat, prints "listener N", waits for a
// line on stdin, and execs its arguments under the filter.
const seccompLaunchEnv = "E2E_SECCOMP_LAUNCH"

func seccompLaunch(argv []string) error {
	listener, err := testutil.SeccompFilter(true)
	if err != nil {
		return err
	}
	fmt.Println("listener", listener)
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, seccompLaunchEnv+"=") {
			env = append(env, kv)
		}
	}
	return unix.Exec(argv[0], argv, env)
}

// supervised is a program started under a seccomp supervisor in this
// process.
type supervised struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	done   chan int      // substitutions, when the supervisor ends
	halt   chan struct{} // closed by stop: the supervisor ends
	halted bool
	exited chan struct{} // closed when the program has exited
}

// superviseStart runs argv under the supervisor; decide answers each
// openat notification with an fd to hand over, or -1.
func superviseStart(t *testing.T, decide func(pid int, n *testutil.SeccompNotif) int, argv ...string) *supervised {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, argv...)
	cmd.Env = append(os.Environ(), seccompLaunchEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &supervised{cmd: cmd, out: &lockedBuffer{}, done: make(chan int, 1), halt: make(chan struct{}), exited: make(chan struct{})}
	cmd.Stderr = s.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(stdout)
	line, err := rd.ReadString('\n')
	n, convErr := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "listener "))
	if err != nil || convErr != nil {
		t.Fatalf("launcher said %q (%v)", line, err)
	}
	listener, err := testutil.TakeFD(cmd.Process.Pid, n)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer unix.Close(listener)
		got, _ := testutil.SeccompSupervise(listener, s.halt, func(req *testutil.SeccompNotif) int {
			if req.Nr != unix.SYS_OPENAT {
				return -1
			}
			return decide(int(req.PID), req)
		})
		s.done <- got
	}()
	go func() {
		sc := bufio.NewScanner(rd)
		for sc.Scan() {
			s.out.Write(append(sc.Bytes(), '\n'))
		}
	}()
	go func() { cmd.Wait(); close(s.exited) }()
	fmt.Fprintln(stdin, "go")
	return s
}

func (s *supervised) stop() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	if !s.halted {
		s.halted = true
		close(s.halt)
	}
}

// TestSupervisedRestartInLab is the supervised-restart attack on the
// installed agent: root kills the agent and starts the real binary again
// under a seccomp supervisor that answers the agent's open of its trust key
// with root's own key, then signs a removal token with that key. The
// kernel gives the supervised process no agent role (seccomp filter at its
// exec), the agent refuses the substituted key once Sentinel can vouch for
// its inputs, and the removal changes nothing.
func TestSupervisedRestartInLab(t *testing.T) {
	r := newRig(t)
	sweep := filepath.Join(configDir, "sweep.json")
	trust := filepath.Join(configDir, "trust.pem")
	cfgFile := filepath.Join(configDir, "fortress-agent.json")
	r.writeConfig("", "")
	r.startAgent(fortress.SentinelEnforcing)
	defer r.logOnFailure()

	rootPub, rootPriv, _ := bundle.GenerateKey()
	rootPubPEM, _ := bundle.MarshalPublicKey(rootPub)
	rootPrivPEM, _ := bundle.MarshalPrivateKey(rootPriv)
	rootPubFile := filepath.Join(r.dir, "root.pem")
	rootKey := filepath.Join(r.dir, "root.key")
	os.WriteFile(rootPubFile, rootPubPEM, 0o644)
	os.WriteFile(rootKey, rootPrivPEM, 0o600)
	sub, err := os.Open(rootPubFile)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	// The attacker's homework: a copy of the agent binary (no identity)
	// under the supervisor, whose memory root may read, shows where in the
	// sequence of opens the trust key comes.
	cp := filepath.Join(r.dir, "agent-copy")
	data, err := os.ReadFile(agentBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	var opens []string
	trustAt := -1
	found := make(chan struct{})
	rec := superviseStart(t, func(pid int, n *testutil.SeccompNotif) int {
		path, _ := testutil.TraceeString(pid, n.Args[1])
		opens = append(opens, path)
		if path == trust && trustAt < 0 {
			trustAt = len(opens)
			close(found)
		}
		return -1
	}, cp, "--config", cfgFile)
	select {
	case <-found:
	case <-time.After(60 * time.Second):
	}
	rec.stop()
	<-rec.done
	if trustAt < 0 {
		t.Fatalf("the copy never opened %s; opens: %v\n%s", trust, opens, rec.out)
	}
	t.Logf("the agent opens its trust key as open #%d of %v", trustAt, opens)

	// The attack: kill -9, then the real binary under the supervisor.
	r.stopAgent(syscall.SIGKILL)
	count := 0
	victim := superviseStart(t, func(pid int, n *testutil.SeccompNotif) int {
		count++
		if count == trustAt {
			return int(sub.Fd())
		}
		return -1
	}, agentBin, "--config", cfgFile)
	defer victim.stop()
	select {
	case <-victim.exited:
	case <-time.After(60 * time.Second):
	}
	victim.stop()
	got := <-victim.done
	log := victim.out.String()
	t.Logf("supervised agent (%d substitutions):\n%s", got, log)
	if got == 0 {
		t.Fatalf("the supervisor substituted nothing: the attack was not tried")
	}
	if !strings.Contains(log, "agent role") && !strings.Contains(log, "not the protected object") {
		t.Errorf("the supervised agent did not report the refused role or the substituted key")
	}

	// Root's removal token opens nothing, wherever it is sent.
	tok := filepath.Join(r.dir, "root-remove.tok")
	if out, code := r.ctl("maintenance", "token", "--key", rootKey, "--host", "lab-agent", "--action", "remove", "--out", tok); code != 0 {
		t.Fatalf("token: %s", out)
	}
	if out, code := r.ctl("maintenance", "remove", "--socket", r.socket, "--token", tok); code == 0 {
		t.Fatalf("maintenance remove with root's key succeeded: %s", out)
	} else {
		t.Logf("maintenance remove with root's key: exit %d: %s", code, strings.TrimSpace(out))
	}
	before, _ := os.ReadFile(sweep)
	if err := shell("rm -f " + sweep); err == nil {
		t.Fatal("root removed the protected config after the supervised restart")
	}
	if after, _ := os.ReadFile(sweep); string(after) != string(before) {
		t.Fatal("config changed")
	}
	if entries, _ := os.ReadDir(filepath.Join(r.pinRoot, "sentinel")); len(entries) == 0 {
		t.Fatal("Sentinel's pins are gone")
	}

	// The real agent, started cleanly, adopts Sentinel and reports the
	// refused role.
	r.startAgent(fortress.SentinelEnforcing)
	if _, ok := r.waitLog(30*time.Second, "role_refused", "seccomp filter at exec"); !ok {
		t.Errorf("the restarted agent logged no role_refused event naming the seccomp filter")
	}
	st, err := r.status()
	if err != nil || st.Sentinel.RolesRefused == 0 {
		t.Errorf("status counts no refused roles: %+v (%v)", st.Sentinel, err)
	}
}
