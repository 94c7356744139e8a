package fortress

import "time"

// Shield states.
const (
	ShieldEnforcing = "enforcing"
	ShieldDryRun    = "dry-run"
	ShieldDegraded  = "degraded"
	ShieldDisabled  = "disabled"
	// ShieldRemoved: a maintenance token removed it from the kernel.
	ShieldRemoved = "removed"
)

// Sentinel states.
const (
	SentinelEnforcing   = "enforcing"
	SentinelAudit       = "audit"
	SentinelUnavailable = "unavailable"
	// SentinelRemoved: a maintenance token removed it from the kernel.
	SentinelRemoved = "removed"
)

// Status is a snapshot of what Fortress enforces and why not, where not.
type Status struct {
	AgentID      string         `json:"agent_id"`
	AgentVersion string         `json:"agent_version,omitempty"`
	Started      time.Time      `json:"started"`
	Kernel       string         `json:"kernel,omitempty"`
	Shield       ShieldStatus   `json:"shield"`
	Sentinel     SentinelStatus `json:"sentinel"`
	Policy       PolicyStatus   `json:"policy"`
	Audit        AuditStatus    `json:"audit"`
	Events       EventStats     `json:"events"`
	// Degraded lists, one line each, everything that is not as configured.
	Degraded []string `json:"degraded,omitempty"`
}

// ShieldStatus is the XDP firewall's state.
type ShieldStatus struct {
	// State is enforcing, dry-run, degraded or disabled.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Adopted says Shield took over pinned state from an earlier run.
	Adopted    bool              `json:"adopted"`
	Interfaces []InterfaceStatus `json:"interfaces"`
	Rules      int               `json:"rules"`
	Generation uint32            `json:"generation"`
	Digest     string            `json:"digest,omitempty"`
	MapBytes   uint64            `json:"map_bytes"`
	// Gateways are the management addresses in force: those no rule drops
	// (the name and JSON key stay for compatibility).
	Gateways []string     `json:"gateways,omitempty"`
	Totals   ShieldTotals `json:"totals"`
}

// InterfaceStatus is one interface Shield is (or should be) attached to.
type InterfaceStatus struct {
	Name     string `json:"name"`
	Mode     string `json:"mode,omitempty"`
	Netns    string `json:"netns,omitempty"`
	Attached bool   `json:"attached"`
	// Configured is false for an interface adopted from pins but no
	// longer in the configuration; it stays attached.
	Configured bool   `json:"configured"`
	Error      string `json:"error,omitempty"`
}

// ShieldTotals are Shield's global packet counters.
type ShieldTotals struct {
	Pass       uint64 `json:"pass"`
	Drop       uint64 `json:"drop"`
	WouldDrop  uint64 `json:"would_drop"`
	AllowHit   uint64 `json:"allow_hit"`
	Bypass     uint64 `json:"bypass"`
	NonIP      uint64 `json:"non_ip"`
	Unparsed   uint64 `json:"unparsed"`
	SampleSent uint64 `json:"sample_sent"`
	SampleLost uint64 `json:"sample_lost"`
}

// SentinelStatus is the BPF LSM layer's state.
type SentinelStatus struct {
	// State is enforcing, audit or unavailable.
	State    string    `json:"state"`
	Reason   string    `json:"reason,omitempty"`
	AuditEnd time.Time `json:"audit_end,omitzero"`
	Adopted  bool      `json:"adopted"`
	Programs []string  `json:"programs,omitempty"`
	Notes    []string  `json:"notes,omitempty"`
	Critical []string  `json:"critical,omitempty"`
	Denied   uint64    `json:"denied"`
	Audited  uint64    `json:"audited"`
	Lost     uint64    `json:"lost"`
	// RolesRefused counts processes that ran the agent or updater binary
	// without earning the role (traced, seccomp-filtered, exe_file
	// switched, ...); each also raised a role_refused event.
	RolesRefused uint64   `json:"roles_refused"`
	Protected    []string `json:"protected,omitempty"`
	Watched      []string `json:"watched,omitempty"`
}

// PolicyStatus describes the policy bundle in force.
type PolicyStatus struct {
	// Version is the last applied bundle's version (0: none yet).
	Version uint64 `json:"version"`
	// InForce is false when the last applied bundle could not be
	// re-applied at start (see LastError).
	InForce   bool      `json:"in_force"`
	Digest    string    `json:"digest,omitempty"`
	KeyID     string    `json:"key_id,omitempty"`
	AppliedAt time.Time `json:"applied_at,omitzero"`
	Notes     []string  `json:"notes,omitempty"`
	// LastError is the most recent refusal or failure.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// AuditStatus is the audit log's state.
type AuditStatus struct {
	Path string `json:"path"`
	OK   bool   `json:"ok"`
	// Lost counts records that could not be written.
	Lost   uint64 `json:"lost"`
	Reason string `json:"reason,omitempty"`
}

// EventStats counts events.
type EventStats struct {
	Delivered uint64 `json:"delivered"`
	// Dropped counts events that found the Events channel full.
	Dropped uint64 `json:"dropped"`
	// KernelLost counts events the kernel could not queue.
	KernelLost uint64 `json:"kernel_lost"`
}

// Ack is the outcome of an applied bundle.
type Ack struct {
	Version    uint64   `json:"version"`
	Digest     string   `json:"digest"`
	KeyID      string   `json:"key_id"`
	Rules      int      `json:"rules"`
	Duplicates int      `json:"duplicates,omitempty"`
	ShieldMode string   `json:"shield_mode"`
	Generation uint32   `json:"generation"`
	Compile    string   `json:"compile,omitempty"`
	Swap       string   `json:"swap,omitempty"`
	Notes      []string `json:"notes,omitempty"`
}
