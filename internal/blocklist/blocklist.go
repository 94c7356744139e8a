package blocklist

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/carverauto/fortress/internal/lpm"
)

// MaxLineBytes bounds one line of a list.
const MaxLineBytes = 4096

// LineError names the line of a list that was refused.
type LineError struct {
	Line int
	Text string
	Err  error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("line %d %s: %v", e.Line, Quote(e.Text), e.Err)
}

// maxQuoted is how much of a piece of input an error message shows.
const maxQuoted = 64

// Quote is s for an error message: Go-quoted, so control characters and
// invalid UTF-8 never reach a terminal raw, and cut to 64 bytes with the
// full length noted.
func Quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for i := 0; i < utf8.UTFMax-1 && !utf8.RuneStart(s[cut]); i++ {
		cut-- // do not split a character; junk bytes are escaped anyway
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

func (e *LineError) Unwrap() error { return e.Err }

// List is a parsed rule list.
type List struct {
	Rules []lpm.Rule
	// Duplicates counts lines that repeated an earlier rule exactly.
	Duplicates int
}

// ParseRule parses one rule from its fields: a CIDR or bare address, an
// action ("drop" when empty) and the log-only flag.
func ParseRule(cidr, action string, logOnly bool) (lpm.Rule, error) {
	var r lpm.Rule
	p, err := parsePrefix(cidr)
	if err != nil {
		return r, err
	}
	r.Prefix = p
	if action != "" {
		if r.Action, err = lpm.ParseAction(action); err != nil {
			return r, fmt.Errorf("unknown action %s (want drop or allow)", Quote(action))
		}
	}
	if logOnly && r.Action == lpm.Allow {
		return r, errors.New("log-only applies to drop rules, not allow")
	}
	r.LogOnly = logOnly
	return r, nil
}

// ErrMappedIPv4 refuses an IPv4-mapped IPv6 prefix (::ffff:a.b.c.d): Shield
// sees IPv4 packets as IPv4, so such a rule would never match anything.
var ErrMappedIPv4 = errors.New("IPv4-mapped IPv6 address never matches IPv4 traffic")

// ErrHostBits refuses a prefix with bits set after its length
// (10.1.2.3/24): it is a typo as often as it is a network, so it is not
// masked silently.
var ErrHostBits = errors.New("host bits set")

// parsePrefix parses a CIDR or bare address. Errors describe the problem
// without echoing the input: callers name the entry (Quote).
func parsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("empty CIDR")
	}
	var p netip.Prefix
	if addr, bits, ok := strings.Cut(s, "/"); !ok {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid address: %s", netipReason(err))
		}
		if a.Zone() != "" {
			return netip.Prefix{}, errors.New("addresses with a zone are not allowed")
		}
		p = netip.PrefixFrom(a, a.BitLen())
	} else {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			a, aerr := netip.ParseAddr(addr)
			if aerr != nil {
				return netip.Prefix{}, fmt.Errorf("invalid CIDR: address: %s", netipReason(aerr))
			}
			if a.Zone() != "" {
				return netip.Prefix{}, errors.New("addresses with a zone are not allowed")
			}
			return netip.Prefix{}, fmt.Errorf("invalid CIDR: prefix length %s is not a number from 0 to %d", Quote(bits), a.BitLen())
		}
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() >= 96 {
			v4 := netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
			return netip.Prefix{}, fmt.Errorf("%w: write %s instead", ErrMappedIPv4, v4)
		}
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%w: %s is not a network address (the network is %s)", ErrHostBits, p, m)
	}
	return p, nil
}

// netipReason is what a net/netip parse error says after the input it
// quotes in full ("ParseAddr(\"...\"): unexpected character"), so that junk
// input is never echoed whole.
func netipReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		msg = msg[i+3:]
	}
	if i := strings.Index(msg, " (at "); i >= 0 {
		msg = msg[:i] // the rest of the input again
	}
	if len(msg) > 2*maxQuoted {
		msg = Quote(msg)
	}
	return msg
}

// Builder accumulates rules and catches conflicts between them.
type Builder struct {
	list  List
	where map[netip.Prefix]int // prefix -> index in list.Rules
	lines []int
}

// NewBuilder returns an empty builder.
func NewBuilder() *Builder { return &Builder{where: map[netip.Prefix]int{}} }

// Add adds r, found at line (or item) number n. An exact repeat is counted
// and skipped; the same prefix with another action or flag is an error.
func (b *Builder) Add(n int, r lpm.Rule) error {
	if i, ok := b.where[r.Prefix]; ok {
		if b.list.Rules[i] == r {
			b.list.Duplicates++
			return nil
		}
		return fmt.Errorf("conflicts with line %d (%s)", b.lines[i], b.list.Rules[i])
	}
	b.where[r.Prefix] = len(b.list.Rules)
	b.list.Rules = append(b.list.Rules, r)
	b.lines = append(b.lines, n)
	return nil
}

// List returns the rules added so far.
func (b *Builder) List() *List { return &b.list }

// Parse reads a plain-text list. Each line holds a CIDR or address, then
// optionally an action (drop, allow) and the word log-only; '#' and ';'
// start comments; blank lines are skipped.
func Parse(r io.Reader) (*List, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), MaxLineBytes)
	b := NewBuilder()
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		line := raw
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		rule, err := parseFields(fields)
		if err == nil {
			err = b.Add(n, rule)
		}
		if err != nil {
			return nil, &LineError{Line: n, Text: strings.TrimSpace(raw), Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &LineError{Line: n + 1, Err: fmt.Errorf("line longer than %d bytes", MaxLineBytes)}
		}
		return nil, fmt.Errorf("read list: %w", err)
	}
	return b.List(), nil
}

func parseFields(f []string) (lpm.Rule, error) {
	action, logOnly := "", false
	for _, w := range f[1:] {
		switch lw := asciiLower(w); lw {
		case "log-only", "logonly", "dry-run":
			if logOnly {
				return lpm.Rule{}, fmt.Errorf("repeated %s", Quote(w))
			}
			logOnly = true
		default:
			if action != "" {
				return lpm.Rule{}, fmt.Errorf("unexpected %s after action %s", Quote(w), Quote(action))
			}
			action = lw
		}
	}
	return ParseRule(f[0], action, logOnly)
}

// asciiLower lower-cases ASCII letters only, leaving other bytes (junk
// included) as they are.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
