package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/sentinel"
	"github.com/carverauto/fortress/internal/statedir"
	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/paths"
)

func init() {
	register("maintenance", "signed maintenance: maintenance token|start|end|remove (see maintenance -h)", runMaintenance)
}

const maintenanceUsage = `usage:
  fortressctl maintenance token --key KEY --host AGENT_ID [--action audit|remove] [--for DUR] [--out FILE]
      sign a maintenance token with the trust key's private half (window at most 24h)
  fortressctl maintenance start --token FILE [--socket PATH]
      hand an audit token to the agent: Sentinel reports instead of refusing
      until the token expires (the kernel ends the window by itself)
  fortressctl maintenance end [--socket PATH]
      end an audit window now (needs no token)
  fortressctl maintenance remove --token FILE [--socket PATH]
      hand a remove token to the agent: it detaches Shield and Sentinel and
      removes every pin; the command then checks that no pin is left`

func runMaintenance(ctx context.Context, args []string) (int, error) {
	return maintenanceCmd(ctx, args, os.Stdout)
}

func maintenanceCmd(ctx context.Context, args []string, stdout io.Writer) (int, error) {
	if len(args) == 0 {
		return 2, usageError{maintenanceUsage}
	}
	switch args[0] {
	case "token":
		return maintenanceToken(args[1:], stdout)
	case "start":
		return maintenanceSend(ctx, sentinel.ActionAudit, args[1:], stdout)
	case "remove":
		return maintenanceSend(ctx, sentinel.ActionRemove, args[1:], stdout)
	case "end":
		return maintenanceEnd(ctx, args[1:], stdout)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, maintenanceUsage)
		return 0, nil
	}
	return 2, usageError{fmt.Sprintf("unknown maintenance command %q\n%s", args[0], maintenanceUsage)}
}

func maintenanceToken(args []string, stdout io.Writer) (int, error) {
	fs := newFlagSet("maintenance token")
	keyFile := fs.String("key", "", "private trust key (PEM)")
	host := fs.String("host", "", "the agent id the token is for")
	action := fs.String("action", sentinel.ActionAudit, "audit or remove")
	window := fs.Duration("for", 30*time.Minute, "how long the token is valid")
	out := fs.String("out", "-", "token file to write (- for stdout)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return 2, usageError{maintenanceUsage}
	}
	switch {
	case *keyFile == "" || *host == "":
		return 2, usageError{"maintenance token: --key and --host are required"}
	case *action != sentinel.ActionAudit && *action != sentinel.ActionRemove:
		return 2, usageError{fmt.Sprintf("maintenance token: --action %q: want audit or remove", *action)}
	case *window <= 0 || *window > sentinel.MaxMaintenanceWindow:
		return 2, usageError{fmt.Sprintf("maintenance token: --for %s: want more than 0 and at most %s", *window, sentinel.MaxMaintenanceWindow)}
	}
	priv, err := bundle.LoadPrivateKey(*keyFile)
	if err != nil {
		return 1, err
	}
	nonce := make([]byte, 12)
	if _, err := rand.Read(nonce); err != nil {
		return 1, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	tok := sentinel.Token{Action: *action, Host: *host, NotBefore: now, NotAfter: now.Add(*window), Nonce: hex.EncodeToString(nonce)}
	raw, err := sentinel.SignToken(priv, tok)
	if err != nil {
		return 1, err
	}
	if *out == "-" {
		fmt.Fprintln(stdout, raw)
		return 0, nil
	}
	if err := statedir.WriteFile(*out, []byte(raw+"\n"), 0o600); err != nil {
		return 1, err
	}
	fmt.Fprintf(os.Stderr, "%s token for %s, valid until %s: %s\n", tok.Action, tok.Host, tok.NotAfter.Format(time.RFC3339), *out)
	return 0, nil
}

// actionCommand is the sub-command that sends a token of each action.
var actionCommand = map[string]string{sentinel.ActionAudit: "start", sentinel.ActionRemove: "remove"}

// maintenanceSend hands a token of the expected action to the agent. The
// action is checked here too, so that "start" can never remove Fortress.
func maintenanceSend(ctx context.Context, want string, args []string, stdout io.Writer) (int, error) {
	fs := newFlagSet("maintenance " + actionCommand[want])
	tokenFile := fs.String("token", "", "token file (- for stdin)")
	socket := fs.String("socket", paths.StatusSocket, "the agent's status socket")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *tokenFile == "" {
		return 2, usageError{maintenanceUsage}
	}
	raw, err := readTokenFile(*tokenFile)
	if err != nil {
		return 1, err
	}
	tok, err := sentinel.PeekToken(raw)
	if err != nil {
		return 1, err
	}
	if tok.Action != want {
		return 1, fmt.Errorf("token is for %q, not %q: use maintenance %s", tok.Action, want, actionCommand[tok.Action])
	}
	body, _ := json.Marshal(map[string]string{"token": raw})
	var res fortress.MaintenanceResult
	if err := agentPost(ctx, *socket, "/v1/maintenance", body, 3*time.Minute, &res); err != nil {
		return 1, err
	}
	fmt.Fprintf(stdout, "sentinel: audit until %s (token %s, key %s)\n", res.Until.Local().Format(time.RFC3339), res.Nonce, res.KeyID)
	if want != sentinel.ActionRemove {
		return 0, nil
	}
	fmt.Fprintf(stdout, "removed: %s\n", strings.Join(res.Removed, ", "))
	left, err := pinsLeft(res.PinRoot)
	if err != nil {
		return 1, err
	}
	if len(left) > 0 {
		return 1, fmt.Errorf("pins left under %s: %s", res.PinRoot, strings.Join(left, ", "))
	}
	fmt.Fprintf(stdout, "no pins left under %s\n", res.PinRoot)
	return 0, nil
}

func maintenanceEnd(ctx context.Context, args []string, stdout io.Writer) (int, error) {
	fs := newFlagSet("maintenance end")
	socket := fs.String("socket", paths.StatusSocket, "the agent's status socket")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return 2, usageError{maintenanceUsage}
	}
	if err := agentPost(ctx, *socket, "/v1/maintenance/end", nil, 30*time.Second, nil); err != nil {
		return 1, err
	}
	fmt.Fprintln(stdout, "sentinel: enforcing")
	return 0, nil
}

func readTokenFile(name string) (string, error) {
	var raw []byte
	var err error
	if name == "-" {
		raw, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
	} else {
		raw, err = os.ReadFile(name)
	}
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	return strings.TrimSpace(string(raw)), nil
}

// agentPost posts body to the agent and decodes a 200 reply into out; any
// other reply becomes the agent's error message.
func agentPost(ctx context.Context, socket, path string, body []byte, timeout time.Duration, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := agentClient(socket, timeout).Do(req)
	if err != nil {
		return fmt.Errorf("agent not reachable on %s: %w", socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("agent: %s", e.Error)
		}
		return fmt.Errorf("agent answered %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode reply: %w", err)
	}
	return nil
}

// pinsLeft lists what remains under the pin root; a missing root is empty.
func pinsLeft(root string) ([]string, error) {
	if root == "" {
		return nil, errors.New("agent did not say where its pins are")
	}
	var left []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		// bpffs's own files (maps.debug, progs.debug at a mount's root)
		// have a dot, which bpffs refuses in the name of a pin.
		if !d.IsDir() && !strings.Contains(d.Name(), ".") {
			rel, _ := filepath.Rel(root, path)
			left = append(left, rel)
		}
		return nil
	})
	return left, err
}
