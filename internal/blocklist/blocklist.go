package blocklist

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

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
	return fmt.Sprintf("line %d %q: %v", e.Line, e.Text, e.Err)
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
			return r, err
		}
	}
	if logOnly && r.Action == lpm.Allow {
		return r, errors.New("log-only applies to drop rules, not allow")
	}
	r.LogOnly = logOnly
	return r, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("empty CIDR")
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid address: %w", err)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, errors.New("addresses with a zone are not allowed")
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR: %w", err)
	}
	// Host bits set (10.1.2.3/8) are masked, as ipset and iptables do.
	return p.Masked(), nil
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
		switch strings.ToLower(w) {
		case "log-only", "logonly", "dry-run":
			if logOnly {
				return lpm.Rule{}, fmt.Errorf("repeated %q", w)
			}
			logOnly = true
		default:
			if action != "" {
				return lpm.Rule{}, fmt.Errorf("unexpected %q after action %q", w, action)
			}
			action = strings.ToLower(w)
		}
	}
	return ParseRule(f[0], action, logOnly)
}
