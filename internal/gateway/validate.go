package gateway

import (
	"net/netip"
	"strings"
	"unicode/utf8"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/store"
)

// What the gateway keeps of agent-supplied text. Longer strings are cut;
// they are shown, never parsed.
const (
	maxRuleLen   = len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")
	maxPathLen   = 1024
	maxDetailLen = 512
	maxShortLen  = 64 // op, process, severity, versions, capability names
	maxReasonLen = 256
	maxHostLen   = 255
	maxListLen   = 32 // capabilities, degraded reasons, kernel checks
)

// Refusal reasons (metric label values).
const (
	refusedRule  = "bad_rule"
	refusedKind  = "bad_kind"
	refusedQuota = "rule_quota"
)

// clip cuts s to at most n bytes of valid UTF-8.
func clip(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// validRule reports whether rule is a CIDR in the canonical form agents
// send (netip.Prefix.String of a masked prefix).
func validRule(rule string) bool {
	if len(rule) == 0 || len(rule) > maxRuleLen {
		return false
	}
	p, err := netip.ParsePrefix(rule)
	return err == nil && p == p.Masked() && p.String() == rule
}

// counterDelta converts and checks one delta from the wire. An agent that
// predates kinds sends only dry_run: would-drop when set, drop otherwise.
func counterDelta(d *pb.CounterDelta) (store.CounterDelta, string) {
	if !validRule(d.Rule) {
		return store.CounterDelta{}, refusedRule
	}
	k := store.RuleKey{Rule: d.Rule, Action: "drop", LogOnly: d.LogOnly, Slot: d.Slot}
	switch d.Action {
	case pb.RuleAction_RULE_ACTION_UNSPECIFIED, pb.RuleAction_RULE_ACTION_DROP:
	case pb.RuleAction_RULE_ACTION_ALLOW:
		k.Action = "allow"
	default:
		return store.CounterDelta{}, refusedKind
	}
	switch d.Kind {
	case pb.CounterKind_COUNTER_KIND_UNSPECIFIED:
		k.Kind = store.KindDrop
		if d.DryRun {
			k.Kind = store.KindWouldDrop
		}
		if k.Action == "allow" {
			k.Kind = store.KindAllow
		}
	case pb.CounterKind_COUNTER_KIND_DROP:
		k.Kind = store.KindDrop
	case pb.CounterKind_COUNTER_KIND_ALLOW:
		k.Kind = store.KindAllow
	case pb.CounterKind_COUNTER_KIND_WOULD_DROP:
		k.Kind = store.KindWouldDrop
	default:
		return store.CounterDelta{}, refusedKind
	}
	// An allow rule only counts allow hits, a drop rule never does, and a
	// log-only rule never drops.
	if (k.Action == "allow") != (k.Kind == store.KindAllow) || (k.LogOnly && k.Kind == store.KindDrop) {
		return store.CounterDelta{}, refusedKind
	}
	return store.CounterDelta{RuleKey: k, Packets: d.Packets, Bytes: d.Bytes}, ""
}

func clipList(l []string, n int) []string {
	if len(l) > maxListLen {
		l = l[:maxListLen]
	}
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = clip(s, n)
	}
	return out
}
