// Package store keeps what the gateway learns from agents: the agents
// themselves, cumulative per-rule counters with a bounded per-minute series,
// and FIM/violation events with bounded retention.
//
// Storage is the interface the gateway uses; Open returns the embedded
// SQLite implementation (modernc.org/sqlite, pure Go). A server database can
// implement the same interface later.
//
// Apply is the one write path for streamed data. It takes batches that carry
// (agent, epoch, seq) and applies each at most once, recording the stream
// position in the same transaction, so a batch resent after a reconnect is
// recognised and skipped and stored totals equal the totals sent.
package store

import (
	"context"
	"time"
)

// Layer is one defence layer's reported state.
type Layer struct {
	State  string `json:"state"` // enforcing, observing, degraded, unavailable, unknown
	Mode   string `json:"mode,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Status is an agent's last reported status.
type Status struct {
	Shield             Layer     `json:"shield"`
	Sentinel           Layer     `json:"sentinel"`
	PolicyVersion      uint64    `json:"policy_version"`
	Degraded           []string  `json:"degraded,omitempty"`
	EventsDropped      uint64    `json:"events_dropped"`
	CounterKeysDropped uint64    `json:"counter_keys_dropped"`
	Reported           time.Time `json:"reported"`
	LastAck            *Ack      `json:"last_ack,omitempty"`
}

// Ack is an agent's answer to a pushed bundle.
type Ack struct {
	Version uint64    `json:"version"`
	Applied bool      `json:"applied"`
	Reason  string    `json:"reason,omitempty"`
	Error   string    `json:"error,omitempty"`
	Time    time.Time `json:"time"`
}

// Agent is what the gateway knows about one agent.
type Agent struct {
	ID           string            `json:"id"`
	Hostname     string            `json:"hostname,omitempty"`
	Version      string            `json:"version,omitempty"`
	Capabilities []string          `json:"capabilities,omitempty"`
	Kernel       map[string]string `json:"kernel,omitempty"`
	Epoch        uint64            `json:"epoch"`
	FirstSeen    time.Time         `json:"first_seen"`
	LastSeen     time.Time         `json:"last_seen"`
	Connected    bool              `json:"connected"`
	Status       Status            `json:"status"`
	// EventsLost counts events the agent reported dropping (buffer overflow).
	EventsLost uint64 `json:"events_lost"`
}

// Counter kinds: what happened to the packets a rule matched.
const (
	KindDrop      = "drop"
	KindAllow     = "allow"
	KindWouldDrop = "would-drop" // log-only rule or dry-run mode
)

// Kinds lists the counter kinds in display order.
var Kinds = []string{KindDrop, KindWouldDrop, KindAllow}

// RuleKey identifies one rule of one agent: a drop rule and an allow rule
// for the same CIDR, or the same rule in another slot, are different keys.
type RuleKey struct {
	Rule    string `json:"rule"`
	Action  string `json:"action"` // drop or allow
	LogOnly bool   `json:"log_only"`
	Slot    uint32 `json:"slot"`
	Kind    string `json:"kind"` // KindDrop, KindAllow or KindWouldDrop
}

// CounterDelta is one rule's counter change.
type CounterDelta struct {
	RuleKey
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Event is a FIM or violation event.
type Event struct {
	ID       int64     `json:"id"`
	AgentID  string    `json:"agent"`
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"` // fim, violation
	Severity string    `json:"severity,omitempty"`
	Path     string    `json:"path,omitempty"`
	Op       string    `json:"op,omitempty"`
	Process  string    `json:"process,omitempty"`
	PID      uint32    `json:"pid,omitempty"`
	UID      uint32    `json:"uid"`
	Detail   string    `json:"detail,omitempty"`
	Denied   bool      `json:"denied"`
}

// Batch is one sequenced unit from an agent's stream.
type Batch struct {
	AgentID  string
	Epoch    uint64
	Seq      uint64
	Time     time.Time
	Counters []CounterDelta
	Events   []Event
	// Dropped counts events the agent lost before this batch.
	Dropped uint64
	// Refused is set by Apply: counter deltas not stored because the agent
	// is at its MaxRules quota of distinct rule keys. Apply also leaves in
	// Counters only the deltas it stored.
	Refused int
}

// CounterTotal is a rule's cumulative counter for one agent, or for the
// fleet when AgentID is empty (then summed over agents and slots, so Slot
// is 0).
type CounterTotal struct {
	AgentID string `json:"agent,omitempty"`
	RuleKey
	// DryRun is Kind == KindWouldDrop, kept for older API clients.
	DryRun  bool      `json:"dry_run"`
	Packets uint64    `json:"packets"`
	Bytes   uint64    `json:"bytes"`
	Agents  int       `json:"agents,omitempty"`
	Updated time.Time `json:"updated"`
}

// CounterQuery selects counter totals, largest packet counts first.
type CounterQuery struct {
	// AgentID restricts to one agent.
	AgentID string
	// Filter keeps rules containing this substring.
	Filter string
	// Kind keeps one kind (KindDrop, KindAllow, KindWouldDrop).
	Kind string
	// Fleet sums over agents (and slots) per rule, action and kind.
	Fleet bool
	// Limit caps the rows (0: MaxPage); Offset skips rows, for paging.
	Limit, Offset int
}

// MaxPage is the most rows one Counters or Events call returns.
const MaxPage = 10_000

// KindTotal is the sum of one agent's counters of one kind.
type KindTotal struct {
	AgentID string
	Kind    string
	Packets uint64
	Bytes   uint64
}

// Sample is one minute of a rule's counter.
type Sample struct {
	Minute  time.Time `json:"minute"`
	Packets uint64    `json:"packets"`
	Bytes   uint64    `json:"bytes"`
}

// EventQuery selects events, newest first.
type EventQuery struct {
	AgentID string
	Kind    string
	// AfterID keeps events with a larger id (for polling).
	AfterID int64
	Limit   int
}

// Retention bounds what is kept.
type Retention struct {
	MaxEvents int
	EventAge  time.Duration
	SampleAge time.Duration
	// MaxEventsPerAgent bounds one agent's events, so one agent cannot push
	// the fleet's events out.
	MaxEventsPerAgent int
	// CounterAge drops a rule's counter row (and its samples) once it has
	// not changed for this long.
	CounterAge time.Duration
}

// DefaultRetention keeps 100k events (10k per agent) for a week, an hour
// of per-minute samples, and counter rows that changed in the last 30 days.
var DefaultRetention = Retention{MaxEvents: 100_000, EventAge: 7 * 24 * time.Hour, SampleAge: time.Hour,
	MaxEventsPerAgent: 10_000, CounterAge: 30 * 24 * time.Hour}

// DefaultMaxRules is how many distinct rule keys one agent may store, and
// DefaultMaxSampleRules how many of them get a per-minute sample in one
// minute. With the hour of samples DefaultRetention keeps, one agent holds
// at most 10,000 counter rows and 60,000 sample rows.
const (
	DefaultMaxRules       = 10_000
	DefaultMaxSampleRules = 1_000
)

// Totals are fleet-wide sums, for checks and metrics.
type Totals struct {
	// Packets and Bytes are drops; DryPackets and DryBytes would-drops;
	// AllowPackets and AllowBytes allow hits.
	Packets, Bytes           uint64
	DryPackets, DryBytes     uint64
	AllowPackets, AllowBytes uint64
	Events                   uint64
	Batches                  uint64
}

// Storage is the gateway's storage interface.
type Storage interface {
	// UpsertAgent records an agent's hello (identity, version, epoch) and
	// marks it connected.
	UpsertAgent(ctx context.Context, a Agent) error
	// SetStatus records an agent's status report.
	SetStatus(ctx context.Context, id string, s Status, seen time.Time) error
	// SetConnected records a connect or disconnect.
	SetConnected(ctx context.Context, id string, connected bool, seen time.Time) error
	// Agents lists every known agent.
	Agents(ctx context.Context) ([]Agent, error)
	// Position is the highest applied seq of (agent, epoch), 0 if none.
	Position(ctx context.Context, agentID string, epoch uint64) (uint64, error)
	// Apply stores batches, each at most once, in one transaction. It
	// reports which were applied (false: already stored).
	Apply(ctx context.Context, batches []Batch) ([]bool, error)
	// Counters returns counter totals.
	Counters(ctx context.Context, q CounterQuery) ([]CounterTotal, error)
	// Series returns the per-minute samples of one rule (empty agentID:
	// summed over the fleet) of one kind since a time.
	Series(ctx context.Context, agentID, rule, kind string, since time.Time) ([]Sample, error)
	// KindTotals sums each agent's counters by kind, over the rows q
	// selects (Fleet, Limit and Offset are ignored).
	KindTotals(ctx context.Context, q CounterQuery) ([]KindTotal, error)
	// Events returns events, newest first.
	Events(ctx context.Context, q EventQuery) ([]Event, error)
	// Totals returns fleet-wide sums.
	Totals(ctx context.Context) (Totals, error)
	// Prune enforces retention.
	Prune(ctx context.Context, r Retention, now time.Time) error
	Close() error
}
