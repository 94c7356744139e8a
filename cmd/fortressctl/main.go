// Command fortressctl is the Fortress admin CLI: keys, signing, status,
// the helper allowlist check, kernel probe and maintenance. It never carries
// the agent's kernel identity, so running it grants no agent authority.
// Benchmarks and the load generator are in tools/bench, not here.
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

// command is one fortressctl sub-command. run returns the process exit code
// together with an error to print; a nil error with a non-zero code means the
// command already reported its result.
type command struct {
	summary string
	run     func(ctx context.Context, args []string) (int, error)
}

// commands is filled by init functions in the files of this package, one
// file per sub-command.
var commands = map[string]command{}

func register(name, summary string, run func(ctx context.Context, args []string) (int, error)) {
	if _, dup := commands[name]; dup {
		panic("fortressctl: duplicate command " + name)
	}
	commands[name] = command{summary: summary, run: run}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "fortressctl: unknown command %q\n", args[0])
		usage()
		return 2
	}
	flagSets = nil
	code, err := cmd.run(ctx, args[1:])
	if wantsHelp(args[1:]) && (err == nil || errors.As(err, new(usageError))) {
		printHelp(os.Stdout, args[0], commands[args[0]].summary, err)
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "fortressctl %s: %v\n", args[0], err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		if code == 0 {
			code = 1
		}
	}
	return code
}

// usageError marks bad command-line input (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usage() {
	fmt.Fprintln(os.Stderr, "usage: fortressctl COMMAND [ARGS]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", n, commands[n].summary)
	}
}

// flagSets are the flag sets the running command made, so that --help can
// describe each flag.
var flagSets []*flag.FlagSet

// newFlagSet makes a command's flag set: errors are returned, not printed,
// and --help is answered by run with every flag's description.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	flagSets = append(flagSets, fs)
	return fs
}

// wantsHelp reports whether args ask for help (before any "--").
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help", "help":
			return true
		}
	}
	return false
}

// printHelp prints a command's summary, its usage line (from the usage
// error it returned) and the description of every flag it defines.
func printHelp(w io.Writer, name, summary string, err error) {
	fmt.Fprintf(w, "fortressctl %s: %s\n", name, summary)
	if err != nil {
		u := strings.TrimSuffix(strings.TrimSuffix(err.Error(), flag.ErrHelp.Error()), ": ")
		switch {
		case u == "":
		case strings.HasPrefix(u, "usage:"):
			fmt.Fprintf(w, "\n%s\n", u)
		default:
			fmt.Fprintf(w, "\nusage: fortressctl %s\n", strings.TrimPrefix(u, "fortressctl "))
		}
	}
	for _, fs := range flagSets {
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n == 0 {
			continue
		}
		fmt.Fprintf(w, "\nflags of %s:\n", fs.Name())
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}
