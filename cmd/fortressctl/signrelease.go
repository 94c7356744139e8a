package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"os"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/statedir"
)

func init() {
	register("sign-release", "sign an agent binary for fortress-update: sign-release --key KEY [--out SIG] BINARY", runSignRelease)
}

// runSignRelease writes the base64 Ed25519 signature of a binary, the form
// fortress-update verifies against the release key.
func runSignRelease(_ context.Context, args []string) (int, error) {
	fs := newFlagSet("sign-release")
	keyFile := fs.String("key", "", "private release key (PEM)")
	out := fs.String("out", "", "signature file (default: BINARY.sig)")
	usage := "sign-release --key KEY [--out SIG] BINARY"
	if err := fs.Parse(args); err != nil || *keyFile == "" || fs.NArg() != 1 {
		return 2, usageError{usage}
	}
	priv, err := bundle.LoadPrivateKey(*keyFile)
	if err != nil {
		return 1, err
	}
	bin, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return 1, err
	}
	if *out == "" {
		*out = fs.Arg(0) + ".sig"
	}
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, bin))
	if err := statedir.WriteFile(*out, []byte(sig+"\n"), 0o644); err != nil {
		return 1, err
	}
	fmt.Fprintf(os.Stderr, "signed %s (%d bytes) with %s: %s\n", fs.Arg(0), len(bin), bundle.KeyID(priv.Public().(ed25519.PublicKey)), *out)
	return 0, nil
}
