package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/carverauto/fortress/pkg/fortress"
)

// AgentStatus is what the agent's status socket serves at /v1/status.
type AgentStatus struct {
	fortress.Status
	ControlStream *struct {
		Gateway   string `json:"gateway"`
		Connected bool   `json:"connected"`
		Connects  uint64 `json:"connects"`
	} `json:"control_stream,omitempty"`
}

// BuildAgent compiles cmd/fortress-agent of the module that contains the
// working directory into dir, reading its configuration only from
// configDir (the agent refuses configuration outside its protected
// directory, and the demo must not write the host's /etc/serviceradar).
func BuildAgent(ctx context.Context, dir, configDir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, serr := os.Stat(goTool); serr != nil {
			return "", fmt.Errorf("build fortress-agent: no go tool in PATH (%v)", err)
		}
	}
	gomod, err := exec.CommandContext(ctx, goTool, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("build fortress-agent: find module: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("build fortress-agent: run the demo inside the fortress module (or pass --agent)")
	}
	out := filepath.Join(dir, "fortress-agent")
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", out,
		"-ldflags", "-X main.protectedConfigDir="+configDir+" -X main.version=demo", "./cmd/fortress-agent")
	cmd.Dir = filepath.Dir(mod)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build fortress-agent: %w\n%s", err, b)
	}
	return out, nil
}

// agentProc is one run of the agent binary.
type agentProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// agentConfig is the agent's JSON configuration (see cmd/fortress-agent).
type agentConfig struct {
	AgentID      string            `json:"agent_id"`
	Interfaces   []map[string]any  `json:"interfaces"`
	PinRoot      string            `json:"pin_root"`
	StateDir     string            `json:"state_dir"`
	AuditLog     string            `json:"audit_log"`
	TrustKey     string            `json:"trust_key"`
	Gateway      map[string]string `json:"gateway,omitempty"`
	Metrics      map[string]any    `json:"metrics"`
	StatusSocket string            `json:"status_socket"`
	Sentinel     map[string]any    `json:"sentinel"`
	Log          map[string]string `json:"log"`
}

// startAgent starts bin with the configuration file cfg; its output goes
// to logw. The agent runs in its own process group, so a Ctrl-C at the
// terminal reaches the demo only, which stops the agent itself, and it gets
// SIGTERM if the demo dies.
func startAgent(bin, cfg string, logw io.Writer) (*agentProc, error) {
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr = logw, logw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	p := &agentProc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// PID returns the process id.
func (p *agentProc) PID() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *agentProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the process (by its pid) and waits up to timeout for
// it to end, then kills it.
func (p *agentProc) stop(sig syscall.Signal, timeout time.Duration) error {
	if p.exited() {
		return nil // its end was reported where it was noticed
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !p.exited() {
		return fmt.Errorf("signal agent %d: %w", p.PID(), err)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("agent %d did not stop within %v after %v; killed", p.PID(), timeout, sig)
	}
	if sig == syscall.SIGKILL {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return fmt.Errorf("agent exited: %w", p.err)
	}
	return p.err
}

// statusClient talks HTTP over the agent's status socket.
type statusClient struct {
	http *http.Client
}

func newStatusClient(sock string) *statusClient {
	return &statusClient{http: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}, DisableKeepAlives: true}}}
}

func (c *statusClient) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent status %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Status reads the agent's status.
func (c *statusClient) Status(ctx context.Context) (AgentStatus, error) {
	var s AgentStatus
	err := c.get(ctx, "/v1/status", &s)
	return s, err
}

// Counters reads the agent's busiest rules.
func (c *statusClient) Counters(ctx context.Context) ([]fortress.RuleCounter, error) {
	var r struct {
		Top []fortress.RuleCounter `json:"top"`
	}
	err := c.get(ctx, "/v1/counters", &r)
	return r.Top, err
}

// waitStatus polls until the agent answers and ok holds, the process ends
// or timeout passes.
func waitStatus(ctx context.Context, c *statusClient, p *agentProc, timeout time.Duration, ok func(AgentStatus) bool) (AgentStatus, error) {
	deadline := time.Now().Add(timeout)
	var last AgentStatus
	var lastErr error
	for {
		s, err := c.Status(ctx)
		if err == nil {
			last, lastErr = s, nil
			if ok == nil || ok(s) {
				return s, nil
			}
		} else {
			lastErr = err
		}
		if p != nil && p.exited() {
			return last, fmt.Errorf("agent exited: %v", p.err)
		}
		if time.Now().After(deadline) {
			if lastErr != nil {
				return last, fmt.Errorf("agent status: %w", lastErr)
			}
			return last, fmt.Errorf("agent status not as expected after %v: shield %s (%s), policy %d", timeout,
				last.Shield.State, last.Shield.Reason, last.Policy.Version)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lockedWriter serialises writes from the agent's stdout and stderr.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
