package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/carverauto/fortress/internal/bundle"
)

func init() {
	register("verify", "verify a policy bundle as an agent would", runVerify)
}

func runVerify(_ context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	trust := fs.String("trust", "", "trusted public key file (PEM)")
	agent := fs.String("agent", "", "check that the bundle targets this agent id")
	state := fs.String("state", "", "agent state directory: also check the version against its last applied bundle")
	maxSize := fs.Int64("max-size", bundle.DefaultMaxSize, "size cap in bytes")
	asJSON := fs.Bool("json", false, "print the verified body as JSON")
	usage := "verify --trust PUB [--agent ID] [--state DIR] [--max-size N] [--json] BUNDLE"
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
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return 1, err
	}
	defer f.Close()
	data, err := bundle.ReadLimited(f, *maxSize)
	if err != nil {
		return 1, fmt.Errorf("refused (%s): %w", bundle.Reason(err), err)
	}
	var b *bundle.Bundle
	if *state != "" {
		if *agent == "" {
			return 2, usageError{"--state needs --agent"}
		}
		v, err := bundle.NewVerifier(bundle.Config{Keys: keys, AgentID: *agent, StateDir: *state, MaxSize: *maxSize})
		if err != nil {
			return 1, err
		}
		b, err = v.Check(data)
		if err != nil {
			return 1, fmt.Errorf("refused (%s): %w", bundle.Reason(err), err)
		}
	} else {
		b, err = bundle.Parse(data, bundle.Options{Keys: keys, AgentID: *agent, MaxSize: *maxSize})
		if err != nil {
			return 1, fmt.Errorf("refused (%s): %w", bundle.Reason(err), err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return 0, enc.Encode(b.Body)
	}
	fmt.Printf("ok: version %d, key %s, issued %s, targets %v, sha256 %s\n", b.Version, b.KeyID, b.IssuedAt.Format("2006-01-02T15:04:05Z"), b.Targets, b.Digest)
	return 0, nil
}
