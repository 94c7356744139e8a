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

// CounterDelta is one rule's counter change.
type CounterDelta struct {
	Rule    string `json:"rule"`
	DryRun  bool   `json:"dry_run"`
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
}

// CounterTotal is a rule's cumulative counter for one agent, or for the
// fleet when AgentID is empty.
type CounterTotal struct {
	AgentID string    `json:"agent,omitempty"`
	Rule    string    `json:"rule"`
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
	// DryRun, when set, keeps only dry-run (true) or enforced (false) counts.
	DryRun *bool
	// Fleet sums over agents per rule.
	Fleet bool
	// Limit caps the rows (0: no cap).
	Limit int
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
}

// DefaultRetention keeps 100k events for a week and an hour of samples.
var DefaultRetention = Retention{MaxEvents: 100_000, EventAge: 7 * 24 * time.Hour, SampleAge: time.Hour}

// Totals are fleet-wide sums, for checks and metrics.
type Totals struct {
	Packets, Bytes       uint64
	DryPackets, DryBytes uint64
	Events               uint64
	Batches              uint64
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
	// Series returns the per-minute samples of one rule since a time.
	Series(ctx context.Context, agentID, rule string, dryRun bool, since time.Time) ([]Sample, error)
	// Events returns events, newest first.
	Events(ctx context.Context, q EventQuery) ([]Event, error)
	// Totals returns fleet-wide sums.
	Totals(ctx context.Context) (Totals, error)
	// Prune enforces retention.
	Prune(ctx context.Context, r Retention, now time.Time) error
	Close() error
}
