package fortress

// RuleCounter is one rule with what it matched.
type RuleCounter struct {
	// Rule is the rule's prefix; prefixes are unique within a policy.
	Rule    string `json:"rule"`
	Action  string `json:"action"`
	LogOnly bool   `json:"log_only,omitempty"`
	// Kind is drop, would-drop (log-only rules and dry run) or allow.
	Kind    string `json:"kind"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Counter kinds: what happened to the packets a rule matched.
const (
	CounterDrop      = "drop"
	CounterAllow     = "allow"
	CounterWouldDrop = "would-drop" // a log-only rule, or any drop rule in dry-run mode
)

// CounterDelta is what one rule matched since the previous read. A rule is
// its prefix, action and log-only flag: Shield keys its counters by exactly
// that, so a drop rule and an allow rule for one CIDR never share a count.
// Slot stays on the wire for gateways that key rows by it; this agent
// always sends 0 (a rule that leaves the set and returns starts again from
// zero, which deltas report as a reset).
type CounterDelta struct {
	Rule    string
	Action  string // drop or allow
	LogOnly bool
	Slot    uint32
	Kind    string // CounterDrop, CounterAllow or CounterWouldDrop
	DryRun  bool   // counted, not dropped: Kind is CounterWouldDrop
	Packets uint64
	Bytes   uint64
}
