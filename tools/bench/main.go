// Command bench holds Fortress's benchmarks and load generator, kept out of
// the shipped binaries (fortress-agent, fortressctl) so that neither links
// a test harness, its BPF object or an embedded gateway:
//
//	go tool bench shield [--shape uniform|feed] [--cidrs-v4 N] [--cidrs-v6 M] [--json]
//	go tool bench sentinel [--json] [--ops N] [--rounds R]   (BPF LSM: in the VM lab)
//	go tool bench loadgen [--agents N] [--seconds S] ...
//
// shield and sentinel need root (CAP_BPF and friends); "make bench" and
// "make bench-sentinel" run the documented measurements. Exit status: 0
// done, 1 failed, 2 usage, 3 nothing to measure here.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// commands are the sub-commands: the process exit code and an error to
// print (a nil error with a non-zero code means the result was reported).
var commands = map[string]struct {
	summary string
	run     func(ctx context.Context, args []string) (int, error)
}{
	"shield": {"Shield against the kernel LPM trie, apply, adopt and ipset restore on one generated rule set",
		func(ctx context.Context, args []string) (int, error) { return benchShield(ctx, args, os.Stdout) }},
	"sentinel": {"a file workload without and with Sentinel attached (BPF LSM: run it in the VM lab)", benchSentinel},
	"loadgen":  {"simulate agents against a gateway over real gRPC on loopback and check stored totals", runLoadgen},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "bench: unknown command %q\n", args[0])
		usage(os.Stderr)
		return 2
	}
	code, err := cmd.run(ctx, args[1:])
	var ue usageError
	switch {
	case err == nil:
	case errors.As(err, &ue) && strings.HasSuffix(ue.msg, flag.ErrHelp.Error()):
		return 0 // the flag set printed every flag with its description
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", args[0], err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: bench COMMAND [FLAGS] (COMMAND --help lists its flags)\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
}

// usageError marks bad command-line input (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// helpOut receives --help and flag errors; flagSets are the flag sets made,
// for the test that every flag is described.
var (
	helpOut  io.Writer = os.Stderr
	flagSets []*flag.FlagSet
)

// newFlagSet makes a command's flag set; --help prints every flag with its
// description.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("bench "+name, flag.ContinueOnError)
	fs.SetOutput(helpOut)
	flagSets = append(flagSets, fs)
	return fs
}
