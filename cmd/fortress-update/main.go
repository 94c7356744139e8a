// Command fortress-update is the update manager: the one identity Sentinel
// lets replace the agent binary. It verifies the new binary's Ed25519
// signature against a release key read only from the protected
// configuration directory, stages the binary in the protected staging
// directory and renames it over the agent binary; the kernel then makes the
// new inode the agent identity, with no lockout. Restart the agent
// afterwards: the new agent adopts the pins.
//
// Root may run it, but cannot make it install anything unsigned: the key
// must live in the protected directory, which only the agent may change.
//
// Usage:
//
//	fortress-update [--agent /usr/local/bin/fortress-agent] \
//	    [--trust-key /etc/serviceradar/fortress/trust.pem] --sig NEW.sig NEW
//
// NEW.sig is the base64 Ed25519 signature of NEW (fortressctl sign-release).
package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/sentinel"
	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/paths"
)

// protectedConfigDir is where the release key must live. Builds for other
// layouts set it with -ldflags "-X main.protectedConfigDir=...".
var protectedConfigDir = paths.ConfigDir

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fortress-update:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("fortress-update", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	agent := fs.String("agent", paths.AgentBinary, "the agent binary to replace")
	staging := fs.String("staging", "", "protected staging directory (default: .fortress-staging next to the agent)")
	keyPath := fs.String("trust-key", filepath.Join(protectedConfigDir, paths.TrustKeyName),
		"PEM Ed25519 public key(s) that sign agent releases, inside "+protectedConfigDir)
	sigPath := fs.String("sig", "", "base64 Ed25519 signature of the new binary")
	pinRoot := fs.String("pin-root", paths.PinRoot, "bpffs root of Fortress's pins (to check the release key against Sentinel)")
	usage := "usage: fortress-update --sig SIG [--trust-key KEY] [--agent PATH] NEW-BINARY"
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%v\n%s", err, usage)
	}
	if fs.NArg() != 1 || *sigPath == "" {
		return errors.New(usage)
	}
	if *staging == "" {
		*staging = filepath.Join(filepath.Dir(*agent), ".fortress-staging")
	}
	keys, err := releaseKeys(*keyPath, *pinRoot)
	if err != nil {
		return err
	}
	sig, err := readB64(*sigPath)
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	bin, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	var signer ed25519.PublicKey
	for _, k := range keys {
		if ed25519.Verify(k, bin, sig) {
			signer = k
			break
		}
	}
	if signer == nil {
		return errors.New("new binary: signature does not verify against the release key; nothing installed")
	}
	if err := sentinel.InstallAgent(bin, *staging, *agent); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "installed %s (%d bytes, signed by %s); restart the agent\n", *agent, len(bin), bundle.KeyID(signer))
	return nil
}

// releaseKeys loads the release keys, refusing any file outside the
// protected configuration directory (after resolving symlinks): a key root
// could write would let root sign its own agent.
//
// Where Sentinel runs, the key file opened must also be the inode Sentinel
// protects (fortress.ReadInput), so a key handed in by a supervisor in its
// place is refused.
func releaseKeys(path, pinRoot string) ([]ed25519.PublicKey, error) {
	real, inside, err := fortress.Inside(path, protectedConfigDir)
	if err != nil {
		return nil, fmt.Errorf("release key: %w", err)
	}
	if !inside {
		return nil, fmt.Errorf("release key %s: must be inside the protected directory %s", path, protectedConfigDir)
	}
	if _, err := bundle.LoadTrustKeys(real); err != nil {
		return nil, fmt.Errorf("release key: %w", err)
	}
	data, _, err := fortress.ReadInput(pinRoot, real)
	if err != nil {
		return nil, fmt.Errorf("release key: %w", err)
	}
	keys, err := bundle.ParsePublicKeys(data)
	if err != nil {
		return nil, fmt.Errorf("release key: %w", err)
	}
	return keys, nil
}

func readB64(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
}
