package blocklist

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"slices"
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

// Builder accumulates rules and catches conflicts between them. Its index
// of prefixes is an open-addressing table of 8-byte slots (rule number and
// a fingerprint of the prefix, so that a probe rarely reads a rule), so a
// million-rule list costs no per-rule allocation beyond the rule itself.
type Builder struct {
	list  List
	index []uint64 // fingerprint<<32 | rule number + 1; 0 is empty
	lines []uint32
}

// NewBuilder returns an empty builder.
func NewBuilder() *Builder { return &Builder{} }

// Grow makes room for n more rules.
func (b *Builder) Grow(n int) {
	b.list.Rules = slices.Grow(b.list.Rules, n)
	b.lines = slices.Grow(b.lines, n)
	b.rehash(len(b.list.Rules) + n)
}

func hashPrefix(p netip.Prefix) uint64 {
	a := p.Addr().As16()
	h := binary.LittleEndian.Uint64(a[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(a[8:])
	h ^= uint64(p.Bits()) << 57
	h ^= h >> 31
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 29
	return h
}

// rehash sizes the index for n rules at most 3/4 full (the fingerprints
// keep long probe runs cheap).
func (b *Builder) rehash(n int) {
	size := 1024
	for size < n+n/3 {
		size *= 2
	}
	if size <= len(b.index) {
		return
	}
	b.index = make([]uint64, size)
	mask := uint64(size - 1)
	for i, r := range b.list.Rules {
		h := hashPrefix(r.Prefix)
		j := h & mask
		for b.index[j] != 0 {
			j = (j + 1) & mask
		}
		b.index[j] = h&^0xffffffff | uint64(i+1)
	}
}

// Add adds r, found at line (or item) number n. An exact repeat is counted
// and skipped; the same prefix with another action or flag is an error.
func (b *Builder) Add(n int, r lpm.Rule) error {
	if n := len(b.list.Rules) + 1; n+n/3 > len(b.index) {
		b.rehash(max(n, 2*len(b.list.Rules)))
	}
	mask := uint64(len(b.index) - 1)
	h := hashPrefix(r.Prefix)
	fp := h &^ 0xffffffff
	j := h & mask
	for ; b.index[j] != 0; j = (j + 1) & mask {
		if b.index[j]&^0xffffffff != fp {
			continue
		}
		i := uint32(b.index[j]) - 1
		if b.list.Rules[i].Prefix != r.Prefix {
			continue
		}
		if b.list.Rules[i] == r {
			b.list.Duplicates++
			return nil
		}
		return fmt.Errorf("conflicts with line %d (%s)", b.lines[i], b.list.Rules[i])
	}
	if len(b.list.Rules) >= math.MaxUint32-1 {
		return errors.New("too many rules")
	}
	b.index[j] = fp | uint64(len(b.list.Rules)+1)
	b.list.Rules = append(b.list.Rules, r)
	b.lines = append(b.lines, uint32(min(n, math.MaxUint32)))
	return nil
}

// List returns the rules added so far.
func (b *Builder) List() *List { return &b.list }

// Parse reads a plain-text list. Each line holds a CIDR or address, then
// optionally an action (drop, allow) and the word log-only; '#' and ';'
// start comments; blank lines are skipped. It streams: the list is read
// through a small buffer, and a line that is a lone IPv4 address or CIDR
// (most lines of threat feeds) is parsed without allocating.
func Parse(r io.Reader) (*List, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), MaxLineBytes)
	b := NewBuilder()
	// Size the rules and the index once from the input's size where it is
	// known: a line of a feed is 8-16 bytes for IPv4, more for IPv6.
	size := int64(-1)
	if s, ok := r.(interface{ Stat() (os.FileInfo, error) }); ok {
		if fi, err := s.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
	}
	if l, ok := r.(interface{ Len() int }); ok && size < 0 {
		size = int64(l.Len())
	}
	if size > 0 {
		b.Grow(int(min(size/13, 1<<24)))
	}
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Bytes()
		line := raw
		if i := bytes.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var rule lpm.Rule
		var err error
		if p, ok := fastPrefix4(line); ok {
			rule.Prefix = p
		} else {
			rule, err = parseFields(strings.Fields(string(line)))
		}
		if err == nil {
			err = b.Add(n, rule)
		}
		if err != nil {
			return nil, &LineError{Line: n, Text: string(bytes.TrimSpace(raw)), Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &LineError{Line: n + 1, Err: fmt.Errorf("line longer than %d bytes", MaxLineBytes)}
		}
		return nil, fmt.Errorf("read list: %w", err)
	}
	b.index, b.lines = nil, nil
	return &b.list, nil
}

// fastPrefix4 parses a line that is exactly a dotted-quad IPv4 address or
// IPv4 CIDR in canonical form (no leading zeros, no host bits). Anything
// else reports false, and the line takes the general path, which gives the
// same result or names the error.
func fastPrefix4(s []byte) (netip.Prefix, bool) {
	var a [4]byte
	i := 0
	for part := 0; part < 4; part++ {
		if part > 0 {
			if i >= len(s) || s[i] != '.' {
				return netip.Prefix{}, false
			}
			i++
		}
		v, digits := 0, 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' && digits < 4 {
			v = v*10 + int(s[i]-'0')
			i++
			digits++
		}
		if digits == 0 || digits > 3 || v > 255 || (digits > 1 && s[i-digits] == '0') {
			return netip.Prefix{}, false
		}
		a[part] = byte(v)
	}
	bits := 32
	if i < len(s) {
		if s[i] != '/' || len(s)-i < 2 || len(s)-i > 3 {
			return netip.Prefix{}, false
		}
		bits = 0
		for _, c := range s[i+1:] {
			if c < '0' || c > '9' {
				return netip.Prefix{}, false
			}
			bits = bits*10 + int(c-'0')
		}
		if bits > 32 || (len(s)-i == 3 && s[i+1] == '0') {
			return netip.Prefix{}, false
		}
	}
	p := netip.PrefixFrom(netip.AddrFrom4(a), bits)
	if p.Masked() != p {
		return netip.Prefix{}, false
	}
	return p, true
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
