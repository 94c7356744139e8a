package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/paths"
)

func init() {
	register("status", "show the running agent's state: status [--socket PATH] [--json]", runStatus)
}

func runStatus(ctx context.Context, args []string) (int, error) {
	return statusCmd(ctx, args, os.Stdout)
}

// agentStatus is the agent's /v1/status reply.
type agentStatus struct {
	fortress.Status
	ControlStream *struct {
		Gateway       string `json:"gateway"`
		Connected     bool   `json:"connected"`
		Connects      uint64 `json:"connects"`
		Unacked       int    `json:"unacked_batches"`
		EventsDropped uint64 `json:"events_dropped"`
	} `json:"control_stream,omitempty"`
}

// statusCmd asks the agent over its unix socket. Exit status: 0 every layer
// as configured, 3 something is degraded (listed), 1 the agent cannot be
// reached, 2 bad usage.
func statusCmd(ctx context.Context, args []string, stdout io.Writer) (int, error) {
	fs := newFlagSet("status")
	socket := fs.String("socket", paths.StatusSocket, "the agent's status socket")
	asJSON := fs.Bool("json", false, "print the agent's reply as JSON")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return 2, usageError{"status [--socket PATH] [--json]"}
	}
	client := agentClient(*socket, 10*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/v1/status", nil)
	if err != nil {
		return 1, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 1, fmt.Errorf("agent not reachable on %s: %w", *socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 1, fmt.Errorf("read status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 1, fmt.Errorf("agent answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var st agentStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return 1, fmt.Errorf("decode status: %w", err)
	}
	if *asJSON {
		stdout.Write(body)
	} else {
		printStatus(stdout, &st)
	}
	if len(st.Degraded) > 0 {
		return 3, nil
	}
	return 0, nil
}

// agentClient talks HTTP to the agent over its unix socket.
func agentClient(socket string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

func printStatus(w io.Writer, st *agentStatus) {
	line := func(label, state, reason string) {
		if reason != "" {
			fmt.Fprintf(w, "%-9s %s: %s\n", label, state, reason)
		} else {
			fmt.Fprintf(w, "%-9s %s\n", label, state)
		}
	}
	fmt.Fprintf(w, "agent     %s (%s), up %s, kernel %s\n", st.AgentID, orDash(st.AgentVersion),
		time.Since(st.Started).Round(time.Second), orDash(st.Kernel))
	sh := st.Shield
	line("shield", sh.State, sh.Reason)
	var ifs []string
	for _, i := range sh.Interfaces {
		s := i.Name
		if i.Mode != "" {
			s += "/" + i.Mode
		}
		switch {
		case !i.Attached:
			s += " (not attached: " + i.Error + ")"
		case !i.Configured:
			s += " (adopted, not configured)"
		}
		ifs = append(ifs, s)
	}
	fmt.Fprintf(w, "          interfaces %s; %d rules, generation %d, maps %s\n", orDash(strings.Join(ifs, ", ")),
		sh.Rules, sh.Generation, bytesIEC(sh.MapBytes))
	fmt.Fprintf(w, "          packets: drop %d, would-drop %d, pass %d, allow %d, gateway bypass %d\n",
		sh.Totals.Drop, sh.Totals.WouldDrop, sh.Totals.Pass, sh.Totals.AllowHit, sh.Totals.Bypass)
	sn := st.Sentinel
	line("sentinel", sn.State, sn.Reason)
	if len(sn.Programs) > 0 {
		fmt.Fprintf(w, "          %d programs, denied %d, audited %d, lost events %d, roles refused %d\n", len(sn.Programs), sn.Denied, sn.Audited, sn.Lost, sn.RolesRefused)
	}
	p := st.Policy
	if p.Version == 0 {
		line("policy", "none", "no bundle applied yet")
	} else {
		state := fmt.Sprintf("version %d", p.Version)
		if !p.InForce {
			state += " (NOT in force)"
		}
		digest := p.Digest
		if len(digest) > 16 {
			digest = digest[:16]
		}
		fmt.Fprintf(w, "%-9s %s, sha256 %s, key %s, applied %s\n", "policy", state, orDash(digest), orDash(p.KeyID),
			p.AppliedAt.Format(time.RFC3339))
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "          note: %s\n", n)
	}
	if p.LastError != "" {
		fmt.Fprintf(w, "          last error (%s): %s\n", p.LastErrorAt.Format(time.RFC3339), p.LastError)
	}
	auditState := "ok"
	if !st.Audit.OK {
		auditState = "FAILING"
	}
	line("audit", auditState+" "+st.Audit.Path, st.Audit.Reason)
	fmt.Fprintf(w, "events    delivered %d, dropped %d, lost in kernel %d\n", st.Events.Delivered, st.Events.Dropped, st.Events.KernelLost)
	if cs := st.ControlStream; cs != nil {
		state := "disconnected"
		if cs.Connected {
			state = "connected"
		}
		fmt.Fprintf(w, "gateway   %s %s (%d connects, %d unacked batches)\n", cs.Gateway, state, cs.Connects, cs.Unacked)
	}
	for _, d := range st.Degraded {
		fmt.Fprintf(w, "DEGRADED  %s\n", d)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
