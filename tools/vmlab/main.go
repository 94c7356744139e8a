// Command vmlab is Fortress's kernel lab: it boots Debian cloud kernels
// (5.10, 6.1, 6.12 on amd64; 6.1, 6.12 on arm64) in QEMU with software
// emulation and runs commands or the lab test packages inside them as
// root. The development hosts refuse BPF LSM loads, so every LSM test is
// proven here.
//
// Usage:
//
//	go tool vmlab run [--arch arm64] --kernel 6.1 [--add DIR] [--timeout 30m] -- CMD ARGS...
//	go tool vmlab test [--arch arm64] [--kernel all] [--run REGEX]
//	go tool vmlab fetch [--arch arm64] [--kernel all]
//
// vmlab is also a tool of the module: "go tool vmlab ..." runs the same
// command and, unlike "go run", passes its exit status on unchanged.
//
// vmlab installs the Debian packages it needs (qemu-system-x86 or
// qemu-system-arm, busybox-static, bpftool, iproute2), and downloads the
// newest cloud kernel of each line into
// ${XDG_CACHE_HOME:-$HOME/.cache}/fortress-vmlab (arm64 in its arm64
// subdirectory). The default architecture, amd64, is the host's: its guest
// gets the host's tools. An arm64 guest (qemu-system-aarch64, the "virt"
// board) gets arm64 busybox, dash, ip and bpftool and their libraries from
// Debian 12's arm64 packages, and test binaries built with GOARCH=arm64.
//
// Exit status: "run" exits with the command's status; "test" exits 1 when
// a test fails. Both exit 125 when the lab itself failed (a kernel panic or
// oops, a timeout, a guest that never reported) and 2 on a usage error.
// ("go run" turns any non-zero status into 1.)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit statuses of vmlab itself.
const (
	exitFailure = 1
	exitUsage   = 2
	exitLab     = 125
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	os.Exit(report(os.Stderr, err))
}

// command is a vmlab sub-command.
type command struct {
	name    string
	summary string
	fn      func(ctx context.Context, args []string) error
}

var commands = []command{
	{"run", "boot a kernel and run a command in it", cmdRun},
	{"test", "run the lab test packages on one or all kernels", cmdTest},
	{"fetch", "download (or refresh) the cached kernels", cmdFetch},
}

// run dispatches to the sub-command named by args[0].
func run(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stderr)
		if len(args) == 0 {
			return usageError{errors.New("no sub-command")}
		}
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.fn(ctx, args[1:])
		}
	}
	usage(os.Stderr)
	return usageError{fmt.Errorf("unknown sub-command %q", args[0])}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: vmlab <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-6s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nrun 'vmlab <command> -h' for its flags")
}

// exitCode makes vmlab exit with a status without printing anything: the
// guest command's status, or a test failure already summarised.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// usageError is a command-line mistake (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// labError is a failure of the lab itself, not of what ran in it (exit 125).
type labError struct{ err error }

func (e labError) Error() string { return "lab failure: " + e.err.Error() }
func (e labError) Unwrap() error { return e.err }

// parseError classifies a FlagSet.Parse error: -h is not an error worth
// printing, anything else is a usage error.
func parseError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError{err}
}

// report prints err (unless it is a bare exit status) and returns the
// process exit status for it.
func report(w io.Writer, err error) int {
	var (
		code exitCode
		ue   usageError
		le   labError
	)
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	case errors.Is(err, flag.ErrHelp):
		return exitUsage
	case errors.As(err, &ue):
		fmt.Fprintf(w, "vmlab: %v\n", err)
		return exitUsage
	case errors.As(err, &le):
		fmt.Fprintf(w, "vmlab: %v\n", err)
		return exitLab
	}
	fmt.Fprintf(w, "vmlab: %v\n", err)
	return exitFailure
}
