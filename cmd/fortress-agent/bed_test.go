package main

import (
	"crypto/ed25519"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/carverauto/fortress/internal/netlab"
	"github.com/carverauto/fortress/internal/testutil"
	"github.com/carverauto/fortress/pkg/policy"
)

// testBed is what the agent's host tests stand on: a bpffs for pins, a veth
// pair between two namespaces (side A holds NET.0.1 and NET.1.2, side B
// NET.0.2, all /16) with a UDP receiver on side B, and a trust key whose
// public half is written to a temporary directory. Everything goes when the
// test ends.
type testBed struct {
	pinRoot string
	pair    *netlab.Pair
	rx      *netlab.Receiver
	dir     string
	pub     ed25519.PublicKey
	priv    ed25519.PrivateKey
	trust   string // the public key's PEM file
}

// newTestBed builds a testBed; name prefixes the pair's name, net is the
// first two octets ("10.68") and port the receiver's.
func newTestBed(t *testing.T, name, net string, port int) *testBed {
	t.Helper()
	testutil.RequireRoot(t)
	b := &testBed{pinRoot: testutil.TempBPFFS(t), dir: t.TempDir()}
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(net + "." + s) }
	pair, err := netlab.New(netlab.Config{
		Name:   fmt.Sprintf("%s%d", name, time.Now().UnixNano()%100000),
		AddrsA: []netip.Prefix{p("0.1/16"), p("1.2/16")},
		AddrsB: []netip.Prefix{p("0.2/16")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	b.pair = pair
	if b.rx, err = pair.B.ListenUDP(port); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.rx.Close() })
	pub, priv, err := policy.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := policy.MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	b.pub, b.priv, b.trust = pub, priv, filepath.Join(b.dir, "trust.pem")
	if err := os.WriteFile(b.trust, pubPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}
