// Command fortress-gateway serves the ControlStream to Fortress agents over
// mutual TLS, stores their counters and events in an embedded SQLite
// database, pushes signed policy bundles and serves the live dashboard, a
// JSON API and Prometheus metrics.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/gateway"
	"github.com/carverauto/fortress/internal/pki"
	"github.com/carverauto/fortress/internal/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fortress-gateway:", err)
		os.Exit(1)
	}
}

// defaultGRPCListen is where agents find the gateway unless told otherwise
// (deploy/fortress-agent.example.json dials its port).
const defaultGRPCListen = "127.0.0.1:7443"

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fortress-gateway", flag.ContinueOnError)
	grpcAddr := fs.String("grpc-listen", defaultGRPCListen, "ControlStream (gRPC, mutual TLS) listen address")
	httpAddr := fs.String("http-listen", "127.0.0.1:8080", "dashboard, JSON API and /metrics listen address")
	pkiDir := fs.String("pki", "", "directory made by 'fortressctl pki init' (sets the three TLS flags below)")
	certFile := fs.String("tls-cert", "", "gateway certificate (PEM)")
	keyFile := fs.String("tls-key", "", "gateway private key (PEM)")
	caFile := fs.String("client-ca", "", "CA that signs agent and admin client certificates (PEM)")
	dbPath := fs.String("db", "fortress-gateway.db", "SQLite database file")
	trust := fs.String("trust-key", "", "policy trust key (PEM): verify pushed bundles before sending them on")
	maxEvents := fs.Int("max-events", store.DefaultRetention.MaxEvents, "events kept")
	eventAge := fs.Duration("event-retention", store.DefaultRetention.EventAge, "how long events are kept")
	sampleAge := fs.Duration("series-retention", store.DefaultRetention.SampleAge, "how long per-minute counter samples are kept")
	agentEvents := fs.Int("max-events-per-agent", store.DefaultRetention.MaxEventsPerAgent, "events kept per agent")
	counterAge := fs.Duration("counter-retention", store.DefaultRetention.CounterAge, "how long a rule's counter row is kept after its last change")
	maxRules := fs.Int("max-rules-per-agent", store.DefaultMaxRules, "distinct rule counters stored per agent; more are refused and counted")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *pkiDir != "" {
		*certFile = filepath.Join(*pkiDir, pki.Files.Server)
		*keyFile = filepath.Join(*pkiDir, pki.Files.ServerKey)
		*caFile = filepath.Join(*pkiDir, pki.Files.CA)
	}
	if *certFile == "" || *keyFile == "" || *caFile == "" {
		return fmt.Errorf("need --pki DIR or --tls-cert, --tls-key and --client-ca")
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("load gateway certificate: %w", err)
	}
	pool, err := pki.LoadPool(*caFile)
	if err != nil {
		return fmt.Errorf("load client ca: %w", err)
	}
	var keys []ed25519.PublicKey
	if *trust != "" {
		if keys, err = bundle.LoadTrustKeys(*trust); err != nil {
			return err
		}
	}
	st, err := store.Open(*dbPath)
	if err != nil {
		return err
	}
	defer st.Close()
	st.MaxRules = *maxRules
	gl, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		gl.Close()
		return err
	}
	g, err := gateway.New(gateway.Config{
		GRPCListener: gl, HTTPListener: hl, TLS: pki.ServerTLS(cert, pool), Store: st, TrustKeys: keys,
		Retention: store.Retention{MaxEvents: *maxEvents, EventAge: *eventAge, SampleAge: *sampleAge, MaxEventsPerAgent: *agentEvents,
			CounterAge: *counterAge}, Logger: log,
	})
	if err != nil {
		return err
	}
	// Tooling (loadgen) reads the bound addresses from here.
	fmt.Printf("grpc %s\nhttp %s\n", gl.Addr(), hl.Addr())
	return g.Run(ctx)
}
