// Command fortress-update is the update manager: the one identity Sentinel
// lets replace the agent binary. It verifies the new binary's Ed25519
// signature against the trust key, stages it in the protected staging
// directory and renames it over the agent binary; the kernel then makes the
// new inode the agent identity, with no lockout. Restart the agent
// afterwards: the new agent adopts the pins and retires the old identity.
//
// Usage:
//
//	fortress-update --agent /usr/local/bin/serviceradar-agent \
//	    --trust-key KEY.pub --sig NEW.sig NEW
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/carverauto/fortress/internal/sentinel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fortress-update:", err)
		os.Exit(1)
	}
}

func run(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("fortress-update", flag.ContinueOnError)
	agent := fs.String("agent", "/usr/local/bin/serviceradar-agent", "the agent binary to replace")
	staging := fs.String("staging", "", "protected staging directory (default: .fortress-staging next to the agent)")
	keyPath := fs.String("trust-key", "", "Ed25519 public key (base64) that signs agent releases")
	sigPath := fs.String("sig", "", "Ed25519 signature (base64) of the new binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *keyPath == "" || *sigPath == "" {
		return errors.New("usage: fortress-update --trust-key KEY --sig SIG [--agent PATH] NEW-BINARY")
	}
	if *staging == "" {
		*staging = filepath.Join(filepath.Dir(*agent), ".fortress-staging")
	}
	key, err := readB64(*keyPath)
	if err != nil {
		return fmt.Errorf("trust key: %w", err)
	}
	sig, err := readB64(*sigPath)
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	bin, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	if len(key) != ed25519.PublicKeySize || !ed25519.Verify(ed25519.PublicKey(key), bin, sig) {
		return errors.New("new binary: signature does not verify against the trust key; nothing installed")
	}
	if err := sentinel.InstallAgent(bin, *staging, *agent); err != nil {
		return err
	}
	fmt.Printf("installed %s (%d bytes); restart the agent\n", *agent, len(bin))
	return nil
}

func readB64(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
}
