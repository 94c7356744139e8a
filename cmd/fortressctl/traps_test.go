package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/gateway"
	"github.com/carverauto/fortress/internal/pki"
	"github.com/carverauto/fortress/internal/statedir"
	"github.com/carverauto/fortress/internal/store"
)

// TestHelpDescribesEveryFlag: "fortressctl X --help" answers with every
// flag of X and its description, and runs nothing.
func TestHelpDescribesEveryFlag(t *testing.T) {
	cases := [][]string{
		{"sign"}, {"verify"}, {"push"}, {"keygen"}, {"status"}, {"probe"}, {"allowlist"}, {"sign-release"},
		{"maintenance", "token"}, {"maintenance", "start"}, {"maintenance", "remove"}, {"maintenance", "end"},
		{"shield", "stats"}, {"pki", "init"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			flagSets = nil
			args := append(append([]string{}, c[1:]...), "--help")
			if !wantsHelp(args) {
				t.Fatal("--help not recognised")
			}
			_, err := commands[c[0]].run(context.Background(), args)
			if err != nil && !errors.As(err, new(usageError)) {
				t.Fatalf("--help ran the command: %v", err)
			}
			if len(flagSets) == 0 {
				t.Fatal("no flag set recorded")
			}
			var out bytes.Buffer
			printHelp(&out, c[0], commands[c[0]].summary, err)
			n := 0
			for _, fs := range flagSets {
				fs.VisitAll(func(f *flag.Flag) {
					n++
					if !strings.Contains(out.String(), "-"+f.Name) || !strings.Contains(out.String(), f.Usage) {
						t.Errorf("help lacks flag -%s (%q):\n%s", f.Name, f.Usage, out.String())
					}
				})
			}
			if n == 0 {
				t.Fatalf("no flags described:\n%s", out.String())
			}
		})
	}
}

func keys(t *testing.T, dir string) (priv ed25519.PrivateKey, keyFile, pubFile string) {
	t.Helper()
	k := filepath.Join(dir, "k")
	if code, err := runKeygen(context.Background(), []string{"--out", k}); code != 0 || err != nil {
		t.Fatalf("keygen: %d %v", code, err)
	}
	priv, err := bundle.LoadPrivateKey(k + ".key")
	if err != nil {
		t.Fatal(err)
	}
	return priv, k + ".key", k + ".pub"
}

// TestSignRefusesTraps: sign refuses what agents would refuse, before the
// expensive work where it can, and writes nothing then.
func TestSignRefusesTraps(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	_, key, pub := keys(t, dir)
	out := filepath.Join(dir, "b.json")
	sign := func(payload string, extra ...string) (int, error) {
		p := filepath.Join(dir, "p.json")
		if err := os.WriteFile(p, []byte(payload), 0o644); err != nil {
			t.Fatal(err)
		}
		return runSign(ctx, append(append([]string{"--key", key, "--version", "1", "--out", out, "--quiet"}, extra...), p))
	}
	cases := []struct{ payload, want string }{
		{`{"shield":{"mode":"enforce"}}`, "no rules"},
		{`{"shield":{"mode":"enforce","rules":[{"cidr":"192.0.2.0/24","action":"drop"},{"cidr":"10.1.2.3/24","action":"drop"}]}}`,
			`payload.shield.rules[1].cidr "10.1.2.3/24": host bits set`},
		{`{"shield":{"mode":"enforce","rules":[{"cidr":"::ffff:10.1.2.3/128","action":"drop"}]}}`, "write 10.1.2.3/32 instead"},
		{`{"shield":{"mode":"enforce","rules":[{"cidr":"10.0.0.0/8","action":"drop"},{"cidr":"10.0.0.0/8","action":"allow"}]}}`, "conflicts with rules[0]"},
	}
	for _, c := range cases {
		if code, err := sign(c.payload); code == 0 || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %d %v, want %q", c.payload, code, err, c.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%s: a bundle was written", c.payload)
		}
	}
	// --allow-empty says the empty set is meant; the agent's check sees it.
	if code, err := sign(`{"shield":{"mode":"enforce"}}`, "--allow-empty"); code != 0 || err != nil {
		t.Fatalf("--allow-empty: %d %v", code, err)
	}
	if code, err := runVerify(ctx, []string{"--trust", pub, out}); code != 0 || err != nil {
		t.Fatalf("verify the allow-empty bundle: %d %v", code, err)
	}
	os.Remove(out)

	// Over the cap: refused from its size, at once, nothing written.
	big := filepath.Join(dir, "big.json")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(bundle.DefaultMaxSize + 1)
	f.Close()
	start := time.Now()
	code, err := runSign(ctx, []string{"--key", key, "--version", "1", "--out", out, big})
	if code == 0 || err == nil || !strings.Contains(err.Error(), "the agents' cap") || !strings.Contains(err.Error(), "list_ref") {
		t.Fatalf("oversize payload: %d %v", code, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("oversize payload refused after %v", took)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("oversize: a bundle was written")
	}
}

// signUnchecked signs body as a signer without the intake checks would.
func signUnchecked(t *testing.T, body bundle.Body, priv ed25519.PrivateKey) []byte {
	t.Helper()
	canon, err := body.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	msg := append(append([]byte(bundle.Format), 0), canon...)
	out, err := json.Marshal(bundle.Envelope{Format: bundle.Format, KeyID: bundle.KeyID(priv.Public().(ed25519.PublicKey)),
		Signature: ed25519.Sign(priv, msg), Body: canon})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestVerifyRunsAgentChecks: verify refuses what the agent refuses: rules
// that conflict (signed by a signer without the checks), and a referenced
// list with host bits or without rules; it accepts what the agent accepts.
func TestVerifyRunsAgentChecks(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	priv, _, pub := keys(t, dir)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	body := func(s *bundle.Shield) bundle.Body {
		return bundle.Body{Version: 1, IssuedAt: time.Now().Add(-time.Minute), Targets: []string{bundle.AllAgents}, Payload: bundle.Payload{Shield: s}}
	}
	conflict := write("conflict.json", signUnchecked(t, body(&bundle.Shield{Mode: bundle.ShieldEnforce, Rules: []bundle.Rule{
		{CIDR: "10.0.0.0/8", Action: "drop"}, {CIDR: "10.0.0.0/8", Action: "allow"}}}), priv))
	if _, err := runVerify(ctx, []string{"--trust", pub, conflict}); err == nil || !strings.Contains(err.Error(), "conflicts") {
		t.Fatalf("conflicting rules: %v", err)
	}
	listed := func(name, list string) (bundleFile, listFile string) {
		sum := sha256.Sum256([]byte(list))
		listFile = write(name+".txt", []byte(list))
		b, err := bundle.Sign(body(&bundle.Shield{Mode: bundle.ShieldEnforce, ListRef: &bundle.ListRef{
			URL: "https://lists.example/" + name, SHA256: hex.EncodeToString(sum[:])}}), priv)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".bundle", b), listFile
	}
	for _, c := range []struct{ name, list, want string }{
		{"hostbits", "192.0.2.0/24\n10.1.2.3/24\n", `line 2 "10.1.2.3/24": host bits set`},
		{"mapped", "::ffff:10.1.2.3\n", "IPv4-mapped"},
		{"empty", "# all gone\n", "no rules"},
	} {
		b, l := listed(c.name, c.list)
		if _, err := runVerify(ctx, []string{"--trust", pub, "--list", l, b}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s list: %v, want %q", c.name, err, c.want)
		}
	}
	b, l := listed("good", "192.0.2.0/24\n198.51.100.0/24 allow\n")
	if code, err := runVerify(ctx, []string{"--trust", pub, "--list", l, b}); code != 0 || err != nil {
		t.Fatalf("good list: %d %v", code, err)
	}
	// A list that is not the one the bundle names.
	if _, err := runVerify(ctx, []string{"--trust", pub, "--list", write("other.txt", []byte("203.0.113.0/24\n")), b}); !errors.Is(err, bundle.ErrListDigest) {
		t.Fatalf("other list: %v", err)
	}
}

// TestOutputsOnlyRegularFiles: sign, maintenance token and sign-release
// replace a regular file but refuse a fifo, a symlink and (as root) a
// character device, which stay as they were.
func TestOutputsOnlyRegularFiles(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	_, key, _ := keys(t, dir)
	payload := filepath.Join(dir, "p.json")
	os.WriteFile(payload, []byte(`{"shield":{"mode":"enforce","rules":[{"cidr":"192.0.2.0/24","action":"drop"}]}}`), 0o644)
	bin := filepath.Join(dir, "agent.bin")
	os.WriteFile(bin, []byte("binary"), 0o755)
	writers := map[string]func(out string) (int, error){
		"sign": func(out string) (int, error) {
			return runSign(ctx, []string{"--key", key, "--version", "1", "--quiet", "--out", out, payload})
		},
		"maintenance token": func(out string) (int, error) {
			return maintenanceCmd(ctx, []string{"token", "--key", key, "--host", "edge-1", "--out", out}, &bytes.Buffer{})
		},
		"sign-release": func(out string) (int, error) {
			return runSignRelease(ctx, []string{"--key", key, "--out", out, bin})
		},
	}
	type special struct {
		name string
		make func(path string) error
		mode os.FileMode
	}
	specials := []special{
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }, os.ModeNamedPipe},
		{"symlink", func(p string) error { return os.Symlink(payload, p) }, os.ModeSymlink},
	}
	if os.Geteuid() == 0 {
		// A /dev/null of our own: character device 1,3.
		specials = append(specials, special{"char device", func(p string) error {
			return syscall.Mknod(p, syscall.S_IFCHR|0o666, 1<<8|3)
		}, os.ModeDevice | os.ModeCharDevice})
	} else {
		t.Log("not root: the character device case needs mknod (the fifo and symlink cases run)")
	}
	for name, w := range writers {
		for _, s := range specials {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+"-"+strings.ReplaceAll(s.name, " ", "-"))
			if err := s.make(p); err != nil {
				t.Fatal(err)
			}
			code, err := w(p)
			if code == 0 || !errors.Is(err, statedir.ErrNotRegular) {
				t.Errorf("%s --out %s: %d %v, want ErrNotRegular", name, s.name, code, err)
			}
			fi, lerr := os.Lstat(p)
			if lerr != nil || fi.Mode().Type() != s.mode {
				t.Errorf("%s --out %s: it is now %v (%v)", name, s.name, fi.Mode(), lerr)
			}
		}
		// A regular file is replaced.
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+"-regular")
		os.WriteFile(p, []byte("old"), 0o644)
		if code, err := w(p); code != 0 || err != nil {
			t.Errorf("%s --out regular file: %d %v", name, code, err)
		}
		if data, _ := os.ReadFile(p); string(data) == "old" {
			t.Errorf("%s: regular file not replaced", name)
		}
	}
}

// TestPushToNoConnectedAgent: a push that reaches no agent fails with a
// message, whether agents are named or not.
func TestPushToNoConnectedAgent(t *testing.T) {
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	ca, err := pki.Init(pkiDir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	gl, _ := net.Listen("tcp", "127.0.0.1:0")
	hl, _ := net.Listen("tcp", "127.0.0.1:0")
	g, err := gateway.New(gateway.Config{GRPCListener: gl, HTTPListener: hl, TLS: pki.ServerTLS(srv, ca.Pool()), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })

	priv, _, _ := keys(t, dir)
	data, err := bundle.Sign(bundle.Body{Version: 1, IssuedAt: time.Now(), Targets: []string{bundle.AllAgents},
		Payload: bundle.Payload{Shield: &bundle.Shield{Mode: bundle.ShieldEnforce, Rules: []bundle.Rule{{CIDR: "192.0.2.0/24", Action: "drop"}}}}}, priv)
	if err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(dir, "b.json")
	os.WriteFile(b, data, 0o644)
	base := []string{"--gateway", gl.Addr().String(), "--pki", pkiDir, "--wait", "1s"}
	code, err := runPush(context.Background(), append(append([]string{}, base...), b))
	if code == 0 || err == nil || !strings.Contains(err.Error(), "no connected agent") {
		t.Fatalf("push to nobody: %d %v", code, err)
	}
	code, err = runPush(context.Background(), append(append([]string{}, base...), "--agents", "edge-9", b))
	if code == 0 || err == nil || !strings.Contains(err.Error(), "not applied on 1 of 1") {
		t.Fatalf("push to an agent not connected: %d %v", code, err)
	}
}
