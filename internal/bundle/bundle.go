package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/carverauto/fortress/internal/blocklist"
)

// Format is the envelope's format tag and the signature's domain separator.
const Format = "fortress-bundle/1"

// AllAgents as the only target makes a bundle apply to every agent.
const AllAgents = "*"

// DefaultMaxSize is the size cap applied when a Verifier is given none.
const DefaultMaxSize = 64 << 20

// Shield and Sentinel modes, and rule actions.
const (
	ShieldEnforce   = "enforce"
	ShieldDryRun    = "dry-run"
	SentinelEnforce = "enforce"
	SentinelAudit   = "audit"
	ActionDrop      = "drop"
	ActionAllow     = "allow"
)

// Refusal reasons. Every error returned by verification wraps exactly one.
var (
	ErrTooLarge     = errors.New("bundle too large")
	ErrMalformed    = errors.New("bundle malformed")
	ErrUnknownKey   = errors.New("bundle signed by unknown key")
	ErrBadSignature = errors.New("bundle signature invalid")
	ErrNotForAgent  = errors.New("bundle not for this agent")
	ErrExpired      = errors.New("bundle expired")
	ErrNotYetValid  = errors.New("bundle issued in the future")
	ErrReplay       = errors.New("bundle version already applied (replay)")
	ErrRollback     = errors.New("bundle version below last applied (rollback)")
)

var reasons = []struct {
	err  error
	code string
}{
	{ErrTooLarge, "too_large"},
	{ErrMalformed, "malformed"},
	{ErrUnknownKey, "unknown_key"},
	{ErrBadSignature, "bad_signature"},
	{ErrNotForAgent, "not_for_agent"},
	{ErrExpired, "expired"},
	{ErrNotYetValid, "not_yet_valid"},
	{ErrReplay, "replay"},
	{ErrRollback, "rollback"},
}

// Reason returns a short stable code for a refusal ("bad_signature", ...),
// "" for nil and "error" for an error that is not a refusal.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.code
		}
	}
	return "error"
}

// Envelope is the outer JSON object of a bundle file.
type Envelope struct {
	Format    string          `json:"format"`
	KeyID     string          `json:"key_id"`
	Signature []byte          `json:"signature"`
	Body      json.RawMessage `json:"body"`
}

// Body is the signed content of a bundle. Field order is the canonical
// member order.
type Body struct {
	// Version must be strictly greater than the last version an agent applied.
	Version uint64 `json:"version"`
	// IssuedAt is when the bundle was signed.
	IssuedAt time.Time `json:"issued_at"`
	// ExpiresAt, when set, is the instant after which agents refuse it.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Targets lists agent ids, or is exactly ["*"] for every agent.
	Targets []string `json:"targets"`
	Payload Payload  `json:"payload"`
}

// Payload is the policy a bundle carries. A nil section leaves that layer's
// policy as the agent defaults it.
type Payload struct {
	Shield   *Shield   `json:"shield,omitempty"`
	Gateways *Gateways `json:"gateways,omitempty"`
	Sentinel *Sentinel `json:"sentinel,omitempty"`
}

// Shield is the XDP firewall policy: inline rules or a reference to a large
// list fetched separately and checked against its digest.
type Shield struct {
	Mode    string   `json:"mode"`
	Rules   []Rule   `json:"rules,omitempty"`
	ListRef *ListRef `json:"list_ref,omitempty"`
	// AllowEmpty must be set for a section with no rules (no inline rules,
	// or a referenced list without any): applying it removes every rule in
	// force, which is refused unless the signer meant it.
	AllowEmpty bool `json:"allow_empty,omitempty"`
}

// ErrEmptyRules refuses a Shield section without rules that does not say
// allow_empty.
var ErrEmptyRules = errors.New("no rules: applying this would remove every rule in force (set allow_empty, or fortressctl sign --allow-empty, to mean it)")

// Rule is one CIDR rule.
type Rule struct {
	CIDR    string `json:"cidr"`
	Action  string `json:"action"`
	LogOnly bool   `json:"log_only,omitempty"`
}

// ListRef names a CIDR list by location and SHA-256 digest (lower-case hex).
type ListRef struct {
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
}

// Gateways are the management addresses Shield never blocks.
type Gateways struct {
	V4 []string `json:"v4,omitempty"`
	V6 []string `json:"v6,omitempty"`
}

// Sentinel is the BPF-LSM policy: protected paths (writes denied) and watched
// paths (integrity events only).
type Sentinel struct {
	Mode    string   `json:"mode"`
	Protect []string `json:"protect,omitempty"`
	Watch   []string `json:"watch,omitempty"`
}

// Bundle is a verified (or freshly signed) bundle.
type Bundle struct {
	Body
	// KeyID names the key that signed it.
	KeyID string
	// Digest is SHA-256 over the whole bundle file, lower-case hex.
	Digest string
	// Raw is the bundle file exactly as verified.
	Raw []byte
}

// Canonical returns the canonical encoding of b (see the package comment).
// It normalises b in place: times to UTC without monotonic reading, targets
// sorted and de-duplicated.
func (b *Body) Canonical() ([]byte, error) {
	b.normalize()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if err := enc.Encode(b); err != nil {
		return nil, fmt.Errorf("encode body: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func (b *Body) normalize() {
	b.IssuedAt = b.IssuedAt.UTC().Round(0)
	if b.ExpiresAt != nil {
		t := b.ExpiresAt.UTC().Round(0)
		b.ExpiresAt = &t
	}
	slices.Sort(b.Targets)
	b.Targets = slices.Compact(b.Targets)
}

// Validate checks the body's fields and names the first bad one.
func (b *Body) Validate() error { return b.validate(true) }

// validate checks the body; strict adds the intake checks introduced after
// bundles were first signed (no empty rule set without allow_empty, rules as
// the agent parses them), which an agent's own stored last-applied bundle
// is spared: it was accepted once, and refusing it now would stop the agent
// from starting.
func (b *Body) validate(strict bool) error {
	if b.Version == 0 {
		return fmt.Errorf("%w: version: must be above 0", ErrMalformed)
	}
	if b.IssuedAt.IsZero() {
		return fmt.Errorf("%w: issued_at: missing", ErrMalformed)
	}
	if b.ExpiresAt != nil && !b.ExpiresAt.After(b.IssuedAt) {
		return fmt.Errorf("%w: expires_at: not after issued_at", ErrMalformed)
	}
	if len(b.Targets) == 0 {
		return fmt.Errorf("%w: targets: empty (use [\"*\"] for all agents)", ErrMalformed)
	}
	for i, t := range b.Targets {
		if t == AllAgents && len(b.Targets) != 1 {
			return fmt.Errorf("%w: targets[%d]: \"*\" must stand alone", ErrMalformed, i)
		}
		if t == "" || len(t) > 256 || strings.ContainsAny(t, "\x00\n") {
			return fmt.Errorf("%w: targets[%d]: bad agent id %s", ErrMalformed, i, blocklist.Quote(t))
		}
	}
	return b.Payload.validate(strict)
}

func (p *Payload) validate(strict bool) error {
	if p.Shield == nil && p.Gateways == nil && p.Sentinel == nil {
		return fmt.Errorf("%w: payload: empty", ErrMalformed)
	}
	if s := p.Shield; s != nil {
		if s.Mode != ShieldEnforce && s.Mode != ShieldDryRun {
			return fmt.Errorf("%w: payload.shield.mode: %s is not enforce or dry-run", ErrMalformed, blocklist.Quote(s.Mode))
		}
		if len(s.Rules) > 0 && s.ListRef != nil {
			return fmt.Errorf("%w: payload.shield: rules and list_ref are exclusive", ErrMalformed)
		}
		if len(s.Rules) == 0 && s.ListRef == nil && !s.AllowEmpty && strict {
			return fmt.Errorf("%w: payload.shield: %w", ErrMalformed, ErrEmptyRules)
		}
		// The agent's own rule checks (blocklist.ParseRule), so that a
		// bundle that signs and verifies is one the agent accepts.
		seen := make(map[netip.Prefix]int, len(s.Rules))
		for i, r := range s.Rules {
			if r.Action != ActionDrop && r.Action != ActionAllow {
				return fmt.Errorf("%w: payload.shield.rules[%d].action: %s is not drop or allow", ErrMalformed, i, blocklist.Quote(r.Action))
			}
			if !strict {
				if _, err := netip.ParsePrefix(r.CIDR); err != nil {
					return fmt.Errorf("%w: payload.shield.rules[%d].cidr %s: invalid CIDR", ErrMalformed, i, blocklist.Quote(r.CIDR))
				}
				continue
			}
			rule, err := blocklist.ParseRule(r.CIDR, r.Action, r.LogOnly)
			if err != nil {
				return fmt.Errorf("%w: payload.shield.rules[%d].cidr %s: %v", ErrMalformed, i, blocklist.Quote(r.CIDR), err)
			}
			if j, ok := seen[rule.Prefix]; ok && s.Rules[j] != r {
				return fmt.Errorf("%w: payload.shield.rules[%d] (%s): conflicts with rules[%d] (%s %s)", ErrMalformed, i, rule,
					j, s.Rules[j].CIDR, s.Rules[j].Action)
			} else if !ok {
				seen[rule.Prefix] = i
			}
		}
		if l := s.ListRef; l != nil {
			if l.URL == "" {
				return fmt.Errorf("%w: payload.shield.list_ref.url: missing", ErrMalformed)
			}
			if d, err := hex.DecodeString(l.SHA256); err != nil || len(d) != sha256.Size || strings.ToLower(l.SHA256) != l.SHA256 {
				return fmt.Errorf("%w: payload.shield.list_ref.sha256: want 64 lower-case hex digits", ErrMalformed)
			}
		}
	}
	if g := p.Gateways; g != nil {
		for i, a := range g.V4 {
			if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() {
				return fmt.Errorf("%w: payload.gateways.v4[%d]: %s is not an IPv4 address", ErrMalformed, i, blocklist.Quote(a))
			}
		}
		for i, a := range g.V6 {
			if ip, err := netip.ParseAddr(a); err != nil || !ip.Is6() || ip.Is4In6() {
				return fmt.Errorf("%w: payload.gateways.v6[%d]: %s is not an IPv6 address", ErrMalformed, i, blocklist.Quote(a))
			}
		}
	}
	if s := p.Sentinel; s != nil {
		if s.Mode != SentinelEnforce && s.Mode != SentinelAudit {
			return fmt.Errorf("%w: payload.sentinel.mode: %s is not enforce or audit", ErrMalformed, blocklist.Quote(s.Mode))
		}
		for name, list := range map[string][]string{"protect": s.Protect, "watch": s.Watch} {
			for i, pth := range list {
				if !path.IsAbs(pth) || path.Clean(pth) != pth {
					return fmt.Errorf("%w: payload.sentinel.%s[%d]: %s is not a clean absolute path", ErrMalformed, name, i, blocklist.Quote(pth))
				}
			}
		}
	}
	return nil
}

// ForAgent reports whether the bundle targets agentID.
func (b *Body) ForAgent(agentID string) bool {
	for _, t := range b.Targets {
		if t == AllAgents || t == agentID {
			return true
		}
	}
	return false
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data. Errors name the offending field.
func decodeStrict(data []byte, v any, what string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("%w: %s.%s: want %s, got JSON %s", ErrMalformed, what, te.Field, te.Type, te.Value)
		}
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: %s: trailing data after the JSON object", ErrMalformed, what)
	}
	return nil
}

// ReadLimited reads all of r, refusing more than max bytes without reading
// the rest.
func ReadLimited(r io.Reader, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
	}
	return data, nil
}

// ErrListDigest reports a referenced CIDR list whose content does not match
// the digest in the bundle.
var ErrListDigest = errors.New("list digest mismatch")

// CheckList verifies that data is the list ref names.
func CheckList(data []byte, ref ListRef) error {
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != ref.SHA256 {
		return fmt.Errorf("%w: %s has sha256 %s, bundle says %s", ErrListDigest, ref.URL, got, ref.SHA256)
	}
	return nil
}
