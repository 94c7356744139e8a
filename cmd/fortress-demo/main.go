// Command fortress-demo is the main job on one machine, as root and with
// embedded defaults: it starts the gateway and a fortress-agent, joins two
// private network namespaces with a veth pair, attaches Shield natively to
// it, pushes a signed bundle with a sample blocklist, sends traffic from
// blocked and allowed sources, prints the dashboard URL and a status line
// every few seconds, and removes everything on Ctrl-C (or after
// --duration).
//
// With --lab it runs the Sentinel demo instead, meant for the VM lab:
// Sentinel protects /etc/serviceradar and a root "rm -rf" of a
// configuration file is refused.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/carverauto/fortress/internal/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "fortress-demo:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fortress-demo", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "dashboard address (loopback only)")
	duration := fs.Duration("duration", 0, "stop after this long (0: at Ctrl-C)")
	lab := fs.Bool("lab", false, "run the Sentinel demo (inside vmlab): a root rm -rf of /etc/serviceradar/sweep.json is refused")
	agent := fs.String("agent", "", "fortress-agent binary (default: built from this module; with --lab: fortress-agent in PATH)")
	rate := fs.Int("rate", 20, "datagrams per second from each traffic source")
	name := fs.String("name", "demo", "names the namespaces fortress-NAME-a/-b and interfaces fNAMEa/fNAMEb (1-13 of a-z, 0-9); "+
		"one demo runs per name, and a run removes what an earlier one under the same name left behind")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *lab {
		return demo.RunLab(ctx, demo.LabConfig{AgentBinary: *agent, Out: os.Stdout})
	}
	return demo.Run(ctx, demo.Config{Listen: *listen, AgentBinary: *agent, Rate: *rate, Name: *name, Out: os.Stdout}, *duration)
}
