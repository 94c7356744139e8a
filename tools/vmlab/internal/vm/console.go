package vm

import (
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Event is what a console line told the Console.
type Event int

// Console events, in the order a healthy run produces them.
const (
	EventNone    Event = iota
	EventStarted       // the start marker
	EventExited        // the exit marker
	EventOops          // a kernel oops or BUG; the kernel may go on
	EventPanic         // a kernel panic; the kernel has stopped
	EventHang          // the kernel reported a CPU stuck, hangReports times
)

// hangReports is how many soft lockup or RCU stall reports make a hang: the
// kernel repeats them every 20-30 s while a CPU stays stuck, and one alone
// may be a stall of the emulator's host.
const hangReports = 3

var (
	panicRe = regexp.MustCompile(`Kernel panic`)
	// oopsRe matches the kernel's crash headers at the start of a line,
	// after the optional printk timestamp: "BUG: ...", "Oops: ...", x86's
	// die() "<reason>: 0000 [#1] ..." (general protection fault, double
	// fault, invalid opcode, ...) and arm64's die() "Internal error:
	// <reason>: <esr> [#1] ...".
	oopsRe = regexp.MustCompile(`^(\[\s*[0-9]+\.[0-9]+\]\s*)?(BUG: |Oops|Internal error: |.*: [0-9a-f]{4} \[#[0-9]+\])`)
	exitRe = regexp.MustCompile(regexp.QuoteMeta(ExitMarker) + `(-?[0-9]+)`)
	// hangRe matches the soft lockup watchdog's and RCU's stall reports.
	hangRe = regexp.MustCompile(`^(\[\s*[0-9]+\.[0-9]+\]\s*)?(watchdog: BUG: soft lockup - CPU#|rcu: INFO: rcu_\w+ (self-)?detected stalls? on CPU)`)
)

// tailLines is how many console lines a Console keeps for diagnosis.
const tailLines = 60

// Console parses the serial console, line by line.
type Console struct {
	// Output receives each line the guest prints between the start and
	// the exit marker, without the trailing newline.
	Output func(line string)
	// Verbose, when not nil, receives every console line as it arrives.
	Verbose io.Writer

	started, exited bool
	exitCode        int
	crash           string
	panicked        bool
	hangs           int
	firstHang       string
	hung            bool
	tail            []string
}

// Feed parses one console line (with or without its line ending).
func (c *Console) Feed(line string) Event {
	line = strings.TrimRight(line, "\r\n")
	line = strings.ReplaceAll(line, "\r", "")
	if c.Verbose != nil {
		io.WriteString(c.Verbose, line+"\n")
	}
	c.tail = append(c.tail, line)
	if len(c.tail) > tailLines {
		c.tail = c.tail[len(c.tail)-tailLines:]
	}
	if c.exited {
		// The result is in; what follows is the power-off.
		return EventNone
	}
	if m := exitRe.FindStringSubmatchIndex(line); m != nil && c.started {
		if prefix := line[:m[0]]; prefix != "" {
			c.output(prefix)
		}
		c.exitCode, _ = strconv.Atoi(line[m[2]:m[3]])
		c.exited = true
		return EventExited
	}
	switch {
	case hangRe.MatchString(line):
		c.output(line)
		c.hangs++
		if c.hangs == 1 {
			c.firstHang = line
		}
		if c.hangs == hangReports && !c.hung {
			c.hung = true
			if c.crash == "" {
				c.crash = c.firstHang
			}
			return EventHang
		}
		return EventNone
	case panicRe.MatchString(line):
		c.output(line)
		if !c.panicked {
			c.panicked = true
			if c.crash == "" {
				c.crash = line
			}
			return EventPanic
		}
		return EventNone
	case oopsRe.MatchString(line):
		c.output(line)
		if c.crash == "" {
			c.crash = line
			return EventOops
		}
		return EventNone
	}
	if !c.started {
		if strings.Contains(line, StartMarker) {
			c.started = true
			return EventStarted
		}
		return EventNone
	}
	c.output(line)
	return EventNone
}

func (c *Console) output(line string) {
	if c.started && c.Output != nil {
		c.Output(line)
	}
}

// Outcome is what the console showed about a run.
type Outcome struct {
	// Started: the guest's /init ran.
	Started bool
	// Exited: the exit marker was seen; ExitCode is the command's status.
	Exited   bool
	ExitCode int
	// Crash is the first kernel panic or oops line, empty if none.
	Crash string
	// Panicked: the kernel panicked (and has stopped).
	Panicked bool
	// Hung: the kernel kept reporting a stuck CPU (hangReports times).
	Hung bool
	// Tail is the last console lines, for diagnosing a lab failure.
	Tail []string
}

// Outcome returns what the lines fed so far showed.
func (c *Console) Outcome() Outcome {
	return Outcome{
		Started:  c.started,
		Exited:   c.exited,
		ExitCode: c.exitCode,
		Crash:    c.crash,
		Panicked: c.panicked,
		Hung:     c.hung,
		Tail:     append([]string(nil), c.tail...),
	}
}
