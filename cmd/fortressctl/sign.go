package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/carverauto/fortress/internal/bundle"
)

func init() {
	register("sign", "sign a policy payload into a bundle", runSign)
}

func runSign(_ context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("sign", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	keyFile := fs.String("key", "", "private signing key (PEM, mode 0600)")
	version := fs.Uint64("version", 0, "bundle version, strictly above the last one pushed")
	targets := fs.String("targets", bundle.AllAgents, "comma-separated agent ids, or * for all")
	expires := fs.Duration("expires", 0, "validity from now (0: no expiry)")
	out := fs.String("out", "-", "bundle file to write (- for stdout)")
	usage := "sign --key KEY --version N [--targets ID,...|*] [--expires DUR] [--out FILE] PAYLOAD.json"
	if err := fs.Parse(args); err != nil {
		return 2, usageError{fmt.Sprintf("%s: %v", usage, err)}
	}
	if *keyFile == "" || *version == 0 || fs.NArg() != 1 {
		return 2, usageError{usage}
	}
	priv, err := bundle.LoadPrivateKey(*keyFile)
	if err != nil {
		return 1, err
	}
	raw, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return 1, err
	}
	var payload bundle.Payload
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&payload); err != nil {
		return 1, fmt.Errorf("payload %s: %w", fs.Arg(0), err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	body := bundle.Body{Version: *version, IssuedAt: now, Targets: strings.Split(*targets, ","), Payload: payload}
	if *expires > 0 {
		exp := now.Add(*expires)
		body.ExpiresAt = &exp
	}
	data, err := bundle.Sign(body, priv)
	if err != nil {
		return 1, err
	}
	if *out == "-" {
		_, err = os.Stdout.Write(data)
		return 0, err
	}
	if err := bundle.WriteFileAtomic(*out, data, 0o644); err != nil {
		return 1, err
	}
	fmt.Fprintf(os.Stderr, "signed version %d for %v: %s (%d bytes)\n", body.Version, body.Targets, *out, len(data))
	return 0, nil
}
