package lpm

import (
	"fmt"
	"net/netip"
)

// Action is what a matching rule does with a packet.
type Action uint8

const (
	// Drop discards the packet (or counts it as a would-drop in dry run).
	Drop Action = iota
	// Allow lets the packet pass; it carves an exception out of a wider drop.
	Allow
)

func (a Action) String() string {
	switch a {
	case Drop:
		return "drop"
	case Allow:
		return "allow"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// ParseAction parses "drop" or "allow".
func ParseAction(s string) (Action, error) {
	switch s {
	case "drop", "deny", "block":
		return Drop, nil
	case "allow", "pass", "accept":
		return Allow, nil
	}
	return 0, fmt.Errorf("unknown action %q (want drop or allow)", s)
}

// Rule is one CIDR with its action.
type Rule struct {
	Prefix netip.Prefix
	Action Action
	// LogOnly makes a drop rule count and sample matching packets but pass
	// them (dry run for this rule alone).
	LogOnly bool
}

// Rule flags, as Flags reports them.
const (
	FlagAllow   = 1 << 0
	FlagLogOnly = 1 << 1
)

// Flags is the rule's kind as a byte: FlagAllow, FlagLogOnly. With the
// prefix it identifies the rule (the rule set digest and Shield's counters
// are keyed by both).
func (r Rule) Flags() byte {
	var f byte
	if r.Action == Allow {
		f |= FlagAllow
	}
	if r.LogOnly {
		f |= FlagLogOnly
	}
	return f
}

func (r Rule) String() string {
	s := r.Prefix.String() + " " + r.Action.String()
	if r.LogOnly {
		s += " log-only"
	}
	return s
}

// Canonical returns p masked to its length, with IPv4-mapped IPv6 prefixes
// left as IPv6 (they only match IPv6 packets).
func Canonical(p netip.Prefix) netip.Prefix { return p.Masked() }
