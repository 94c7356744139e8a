package main

import (
	"context"
	"fmt"
	"os"

	"github.com/carverauto/fortress/internal/bundle"
)

func init() {
	register("keygen", "create an Ed25519 policy signing key pair", runKeygen)
}

func runKeygen(_ context.Context, args []string) (int, error) {
	fs := newFlagSet("keygen")
	out := fs.String("out", "fortress-signing", "write OUT.key (private, 0600) and OUT.pub (public)")
	force := fs.Bool("force", false, "overwrite existing files")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return 2, usageError{fmt.Sprintf("keygen [--out PREFIX] [--force]: %v", err)}
	}
	pub, priv, err := bundle.GenerateKey()
	if err != nil {
		return 1, err
	}
	privPEM, err := bundle.MarshalPrivateKey(priv)
	if err != nil {
		return 1, err
	}
	pubPEM, err := bundle.MarshalPublicKey(pub)
	if err != nil {
		return 1, err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if *force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{{*out + ".key", privPEM, 0o600}, {*out + ".pub", pubPEM, 0o644}} {
		fh, err := os.OpenFile(f.name, flags, f.perm)
		if err != nil {
			return 1, err
		}
		if _, err := fh.Write(f.data); err != nil {
			fh.Close()
			return 1, err
		}
		if err := fh.Close(); err != nil {
			return 1, err
		}
	}
	fmt.Printf("key_id %s\nprivate %s.key\npublic  %s.pub\n", bundle.KeyID(pub), *out, *out)
	return 0, nil
}
