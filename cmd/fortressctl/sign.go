package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/statedir"
)

func init() {
	register("sign", "sign a policy payload into a bundle", runSign)
}

func runSign(_ context.Context, args []string) (int, error) {
	fs := newFlagSet("sign")
	keyFile := fs.String("key", "", "private signing key (PEM, mode 0600)")
	version := fs.Uint64("version", 0, "bundle version, strictly above the last one pushed")
	targets := fs.String("targets", bundle.AllAgents, "comma-separated agent ids, or * for all")
	expires := fs.Duration("expires", 0, "validity from now (0: no expiry)")
	out := fs.String("out", "-", "bundle file to write (- for stdout); an existing file is replaced only if it is a regular file")
	allowEmpty := fs.Bool("allow-empty", false, "allow a shield section without rules (it removes every rule in force); sets payload.shield.allow_empty")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	usage := "sign --key KEY --version N [--targets ID,...|*] [--expires DUR] [--allow-empty] [--out FILE] PAYLOAD.json"
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
	progress := func(format string, args ...any) {
		if !*quiet {
			fmt.Fprintf(os.Stderr, "sign: "+format+"\n", args...)
		}
	}
	start := time.Now()
	// The bundle carries the payload whole, so a payload over the agents'
	// cap can only make a bundle they refuse: say so before any work.
	pf, err := os.Open(fs.Arg(0))
	if err != nil {
		return 1, err
	}
	defer pf.Close()
	if fi, err := pf.Stat(); err != nil {
		return 1, err
	} else if !fi.Mode().IsRegular() {
		return 1, fmt.Errorf("payload %s: not a regular file", fs.Arg(0))
	} else if fi.Size() > bundle.DefaultMaxSize {
		return 1, fmt.Errorf("payload %s is %d bytes: a bundle is at most %d bytes (%d MiB), the agents' cap; reference large lists with payload.shield.list_ref",
			fs.Arg(0), fi.Size(), bundle.DefaultMaxSize, bundle.DefaultMaxSize>>20)
	}
	raw, err := bundle.ReadLimited(pf, bundle.DefaultMaxSize)
	if err != nil {
		return 1, fmt.Errorf("payload %s: %w", fs.Arg(0), err)
	}
	big := len(raw) > 1<<20
	if big {
		progress("read %s (%d bytes)", fs.Arg(0), len(raw))
	}
	var payload bundle.Payload
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&payload); err != nil {
		return 1, fmt.Errorf("payload %s: %w", fs.Arg(0), err)
	}
	if *allowEmpty {
		if payload.Shield == nil {
			return 2, usageError{"--allow-empty: the payload has no shield section"}
		}
		payload.Shield.AllowEmpty = true
	}
	if big && payload.Shield != nil {
		progress("parsed %d rules in %s; checking and signing", len(payload.Shield.Rules), time.Since(start).Round(time.Millisecond))
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
	if len(data) > bundle.DefaultMaxSize {
		return 1, fmt.Errorf("the bundle would be %d bytes, over the agents' cap of %d bytes; nothing written (reference large lists with payload.shield.list_ref)",
			len(data), bundle.DefaultMaxSize)
	}
	if big {
		progress("signed in %s: %d bytes", time.Since(start).Round(time.Millisecond), len(data))
	}
	if *out == "-" {
		_, err = os.Stdout.Write(data)
		return 0, err
	}
	if err := statedir.WriteFile(*out, data, 0o644); err != nil {
		return 1, err
	}
	fmt.Fprintf(os.Stderr, "signed version %d for %v: %s (%d bytes)\n", body.Version, body.Targets, *out, len(data))
	return 0, nil
}
