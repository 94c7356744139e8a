package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/pkg/fortress"
)

func init() {
	register("verify", "run an agent's checks on a policy bundle (signature, target, rules, referenced list)", runVerify)
}

func runVerify(ctx context.Context, args []string) (int, error) {
	fs := newFlagSet("verify")
	trust := fs.String("trust", "", "trusted public key file (PEM)")
	agent := fs.String("agent", "", "check that the bundle targets this agent id")
	state := fs.String("state", "", "agent state directory: also check the version against its last applied bundle")
	maxSize := fs.Int64("max-size", bundle.DefaultMaxSize, "size cap in bytes")
	asJSON := fs.Bool("json", false, "print the verified body as JSON")
	list := fs.String("list", "", "local copy of the list the bundle references (checked against its digest; default: fetch its URL)")
	usage := "verify --trust PUB [--agent ID] [--state DIR] [--list FILE] [--max-size N] [--json] BUNDLE"
	if err := fs.Parse(args); err != nil {
		return 2, usageError{fmt.Sprintf("%s: %v", usage, err)}
	}
	if *trust == "" || fs.NArg() != 1 {
		return 2, usageError{usage}
	}
	keys, err := bundle.LoadTrustKeys(*trust)
	if err != nil {
		return 1, err
	}
	if *state != "" && *agent == "" {
		return 2, usageError{"--state needs --agent"}
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return 1, err
	}
	defer f.Close()
	data, err := bundle.ReadLimited(f, *maxSize)
	if err != nil {
		return 1, fmt.Errorf("refused (%s): %w", bundle.Reason(err), err)
	}
	opt := fortress.CheckOptions{Keys: keys, AgentID: *agent, StateDir: *state, MaxSize: *maxSize}
	if *list != "" {
		opt.FetchList = func(context.Context, string) ([]byte, error) { return os.ReadFile(*list) }
	}
	// The agent's own checks, through the agent's code.
	res, err := fortress.CheckBundle(ctx, data, opt)
	if err != nil {
		return 1, fmt.Errorf("refused (%s): %w", bundle.Reason(err), err)
	}
	b := res.Bundle
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return 0, enc.Encode(b.Body)
	}
	fmt.Printf("ok: version %d, key %s, issued %s, targets %v, sha256 %s, %d rules (%d exact repeats skipped)\n",
		b.Version, b.KeyID, b.IssuedAt.Format("2006-01-02T15:04:05Z"), b.Targets, b.Digest, res.Rules, res.Duplicates)
	return 0, nil
}
