package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/controlstream"
	"github.com/carverauto/fortress/internal/pki"
)

func init() {
	register("push", "send a signed bundle to agents through the gateway", runPush)
}

func runPush(ctx context.Context, args []string) (int, error) {
	fs := newFlagSet("push")
	gw := fs.String("gateway", "127.0.0.1:7443", "gateway ControlStream address")
	pkiDir := fs.String("pki", "", "directory from 'pki init' (uses admin.pem, admin-key.pem, ca.pem)")
	certFile := fs.String("cert", "", "admin client certificate")
	keyFile := fs.String("key", "", "admin client key")
	caFile := fs.String("ca", "", "CA of the gateway certificate")
	serverName := fs.String("server-name", "", "gateway certificate name (default: host of --gateway)")
	agents := fs.String("agents", "", "comma-separated agent ids (default: every connected agent the bundle targets)")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for the agents' acks")
	usage := "push [--gateway ADDR] (--pki DIR | --cert C --key K --ca CA) [--agents ID,...] [--wait DUR] BUNDLE"
	if err := fs.Parse(args); err != nil {
		return 2, usageError{fmt.Sprintf("%s: %v", usage, err)}
	}
	if fs.NArg() != 1 {
		return 2, usageError{usage}
	}
	if *pkiDir != "" {
		*certFile, *keyFile, *caFile = filepath.Join(*pkiDir, pki.Files.Admin), filepath.Join(*pkiDir, pki.Files.AdminKey), filepath.Join(*pkiDir, pki.Files.CA)
	}
	if *certFile == "" || *keyFile == "" || *caFile == "" {
		return 2, usageError{usage}
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return 1, err
	}
	data, err := bundle.ReadLimited(f, bundle.DefaultMaxSize)
	f.Close()
	if err != nil {
		return 1, err
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return 1, err
	}
	pool, err := pki.LoadPool(*caFile)
	if err != nil {
		return 1, err
	}
	name := *serverName
	if name == "" {
		name = strings.Split(*gw, ":")[0]
		if strings.HasPrefix(*gw, "[") {
			name = strings.Trim(strings.SplitN(*gw, "]", 2)[0], "[")
		}
	}
	conn, err := grpc.NewClient(*gw, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(cert, pool, name))),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(controlstream.MaxMessage)))
	if err != nil {
		return 1, err
	}
	defer conn.Close()
	req := &pb.PushRequest{Bundle: data, WaitMs: uint32(wait.Milliseconds())}
	if *agents != "" {
		req.AgentIds = strings.Split(*agents, ",")
	}
	fmt.Fprintf(os.Stderr, "push: sending %s (%d bytes) to %s, waiting up to %s for the agents' acks\n", fs.Arg(0), len(data), *gw, *wait)
	cctx, cancel := context.WithTimeout(ctx, *wait+10*time.Second)
	defer cancel()
	resp, err := pb.NewAdminClient(conn).Push(cctx, req)
	if err != nil {
		return 1, err
	}
	return pushReport(os.Stdout, resp)
}

// pushReport prints each agent's outcome. Anything but applied (or sent,
// when not waiting) fails the command, and so does a push that reached no
// agent at all.
func pushReport(w io.Writer, resp *pb.PushResponse) (int, error) {
	failed := 0
	for _, r := range resp.Results {
		detail := strings.TrimSpace(r.Reason + " " + r.Error)
		if r.Outcome == "not_connected" && detail == "" {
			detail = "the agent is not connected to the gateway; nothing was sent to it"
		}
		fmt.Fprintf(w, "%-24s %-14s %s\n", r.AgentId, r.Outcome, detail)
		if r.Outcome != "applied" && r.Outcome != "sent" {
			failed++
		}
	}
	if len(resp.Results) == 0 {
		return 1, fmt.Errorf("version %d: no connected agent is among the bundle's targets; nothing was sent (name agents with --agents to see each one's state)", resp.Version)
	}
	fmt.Fprintf(w, "version %d: %d agents, %d not applied\n", resp.Version, len(resp.Results), failed)
	if failed > 0 {
		return 1, fmt.Errorf("version %d not applied on %d of %d agents", resp.Version, failed, len(resp.Results))
	}
	return 0, nil
}
