package demo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/paths"
)

// LabConfig configures RunLab.
type LabConfig struct {
	// AgentBinary is the fortress-agent to run (default: the one in PATH,
	// which reads its configuration from /etc/serviceradar).
	AgentBinary string
	// Out receives the demo's narration (os.Stdout).
	Out io.Writer
}

// labEnv is set to "1" by vmlab inside its virtual machines.
const labEnv = "FORTRESS_VMLAB"

// SweepFile is the configuration file the lab demo attacks.
var SweepFile = filepath.Join(paths.ConfigDir, "sweep.json")

// RunLab is the Sentinel demo for the VM lab: it starts the agent with
// Sentinel protecting /etc/serviceradar, runs "rm -rf
// /etc/serviceradar/sweep.json" as root in a separate process, and
// succeeds only if rm failed with "Operation not permitted", the file is
// unchanged and the agent reported the violation.
func RunLab(ctx context.Context, cfg LabConfig) (err error) {
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	say := func(format string, args ...any) { fmt.Fprintf(cfg.Out, "fortress-demo: "+format+"\n", args...) }
	if os.Getenv(labEnv) != "1" {
		return fmt.Errorf("--lab runs inside vmlab only (it writes %s and loads BPF LSM programs); "+
			"see README.md, \"Sentinel in the VM lab\"", paths.ConfigDir)
	}
	if os.Geteuid() != 0 {
		return errors.New("--lab needs root")
	}
	bin := cfg.AgentBinary
	if bin == "" {
		if bin, err = exec.LookPath("fortress-agent"); err != nil {
			return fmt.Errorf("fortress-agent not found: %w", err)
		}
	}
	work, err := os.MkdirTemp("", "fortress-demo-lab-")
	if err != nil {
		return err
	}
	pinRoot := filepath.Join(work, "bpf")
	if err := mountBPFFS(pinRoot); err != nil {
		return err
	}
	var agent *agentProc
	events := newEventWatch(filepath.Join(work, "agent.log"))
	defer func() {
		// Sentinel stays pinned and keeps protecting after the agent stops;
		// unmounting the private bpffs releases it. The VM is discarded
		// afterwards, so a failed cleanup only warrants a warning.
		if agent != nil {
			if serr := agent.stop(syscall.SIGTERM, 15*time.Second); serr != nil {
				say("warning: stop agent: %v", serr)
			}
		}
		events.close()
		uerr := unmount(pinRoot)
		rerr := os.RemoveAll(work)
		if uerr != nil || rerr != nil {
			say("note: Sentinel fails closed and still guards its pins and state after the agent stopped, so %s stays (%v); the VM is discarded",
				work, errors.Join(uerr, rerr))
		}
	}()

	// The protected file exists before the agent starts.
	if err := os.MkdirAll(paths.ConfigDir, 0o755); err != nil {
		return err
	}
	sweep := []byte(`{"networks": ["10.0.0.0/24", "192.168.1.0/24"], "interval": "5m", "ports": [22, 80, 443, 8080]}` + "\n")
	if err := os.WriteFile(SweepFile, sweep, 0o644); err != nil {
		return err
	}
	pub, _, err := bundle.GenerateKey()
	if err != nil {
		return err
	}
	pubPEM, _ := bundle.MarshalPublicKey(pub)
	trust := filepath.Join(work, "trust.pem")
	if err := os.WriteFile(trust, pubPEM, 0o600); err != nil {
		return err
	}
	sock := filepath.Join(work, "run", "fortress.sock")
	cfgPath, err := writeJSON(paths.AgentConfig, agentConfig{
		AgentID: "lab-agent", Interfaces: []map[string]any{}, PinRoot: pinRoot, StateDir: filepath.Join(work, "state"),
		AuditLog: filepath.Join(work, "log", "audit.log"), TrustKey: trust, Metrics: map[string]any{"listen": "off"},
		StatusSocket: sock, Sentinel: map[string]any{"enabled": true, "mode": "enforce"},
		Log: map[string]string{"level": "info", "format": "json"},
	})
	if err != nil {
		return err
	}

	if agent, err = startAgent(bin, cfgPath, events); err != nil {
		return err
	}
	say("agent %s started (pid %d), config %s", bin, agent.PID(), cfgPath)
	status := newStatusClient(sock)
	st, err := waitStatus(ctx, status, agent, 90*time.Second, func(s AgentStatus) bool { return s.Sentinel.State != "" })
	if err != nil {
		return fmt.Errorf("%w\nagent log:\n%s", err, events.tail(30))
	}
	say("sentinel: %s %s", st.Sentinel.State, st.Sentinel.Reason)
	if st.Sentinel.State != fortress.SentinelEnforcing {
		return fmt.Errorf("sentinel is %s, not enforcing: %s\nagent log:\n%s", st.Sentinel.State, st.Sentinel.Reason, events.tail(30))
	}
	say("protected: %s", strings.Join(st.Sentinel.Protected, ", "))
	before := sha256.Sum256(sweep)
	say("%s: %d bytes, sha256 %x", SweepFile, len(sweep), before[:8])

	// The attack: root, a separate process.
	rm := []string{"rm", "-rf", SweepFile}
	var cmd *exec.Cmd
	if bb, lerr := exec.LookPath("busybox"); lerr == nil {
		cmd = exec.CommandContext(ctx, bb, rm...)
	} else {
		cmd = exec.CommandContext(ctx, "rm", rm[1:]...)
	}
	say("$ %s   (uid %d)", strings.Join(rm, " "), os.Geteuid())
	out, rmErr := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if l != "" {
			fmt.Fprintln(cfg.Out, "  "+l)
		}
	}
	code := 0
	if rmErr != nil {
		var ee *exec.ExitError
		if !errors.As(rmErr, &ee) {
			return fmt.Errorf("run rm: %w", rmErr)
		}
		code = ee.ExitCode()
	}
	say("rm exit status %d", code)

	var failed []string
	if code == 0 || !strings.Contains(string(out), "Operation not permitted") {
		failed = append(failed, fmt.Sprintf("rm was not refused with \"Operation not permitted\" (exit %d)", code))
	}
	after, rerr := os.ReadFile(SweepFile)
	switch {
	case rerr != nil:
		failed = append(failed, fmt.Sprintf("%s is gone: %v", SweepFile, rerr))
	case !bytes.Equal(after, sweep):
		failed = append(failed, fmt.Sprintf("%s changed", SweepFile))
	default:
		sum := sha256.Sum256(after)
		say("%s unchanged: %d bytes, sha256 %x", SweepFile, len(after), sum[:8])
	}
	ev, ok := events.wait(ctx, 15*time.Second)
	if ok {
		say("violation event: %s", ev)
	} else {
		failed = append(failed, "no violation event for "+SweepFile+" within 15s")
	}
	if st, err := status.Status(ctx); err == nil {
		say("sentinel: %s, denied %d", st.Sentinel.State, st.Sentinel.Denied)
	}
	if len(failed) > 0 {
		return fmt.Errorf("lab demo failed:\n  %s\nagent log:\n%s", strings.Join(failed, "\n  "), events.tail(30))
	}
	say("PASS: root's rm -rf of %s was refused, the file is intact, the violation was reported", SweepFile)
	return nil
}

// eventWatch takes the agent's JSON log, keeps it in a file and spots the
// violation event for the sweep file.
type eventWatch struct {
	mu    sync.Mutex
	f     *os.File
	pw    *io.PipeWriter
	lines []string
	found chan string
	done  chan struct{}
}

func newEventWatch(path string) *eventWatch {
	pr, pw := io.Pipe()
	w := &eventWatch{pw: pw, found: make(chan string, 1), done: make(chan struct{})}
	w.f, _ = os.Create(path)
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			w.mu.Lock()
			if w.f != nil {
				fmt.Fprintln(w.f, line)
			}
			w.lines = append(w.lines, line)
			if len(w.lines) > 200 {
				w.lines = w.lines[len(w.lines)-200:]
			}
			w.mu.Unlock()
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			if rec["msg"] == "event" && rec["kind"] == "violation" && strings.HasSuffix(fmt.Sprint(rec["path"]), "sweep.json") {
				select {
				case w.found <- fmt.Sprintf("%s %s by %v (pid %v, uid %v, exe %v): %v", rec["op"], rec["path"], rec["comm"],
					rec["pid"], rec["uid"], rec["exe"], rec["verdict"]):
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	return w
}

func (w *eventWatch) Write(b []byte) (int, error) { return w.pw.Write(b) }

func (w *eventWatch) wait(ctx context.Context, timeout time.Duration) (string, bool) {
	select {
	case s := <-w.found:
		return s, true
	case <-time.After(timeout):
	case <-ctx.Done():
	}
	return "", false
}

func (w *eventWatch) tail(n int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.lines
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return "  " + strings.Join(l, "\n  ")
}

func (w *eventWatch) close() {
	w.pw.Close()
	<-w.done
	w.mu.Lock()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	w.mu.Unlock()
}
