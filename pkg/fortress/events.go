package fortress

import "time"

// Event kinds.
const (
	// KindFIM is a file-integrity event on a watched path.
	KindFIM = "fim"
	// KindViolation is a refused (or, in audit mode, would-be refused)
	// mutation of a protected object.
	KindViolation = "violation"
	// KindDryRun is a sample of traffic a dry-run or log-only rule would
	// have dropped.
	KindDryRun = "dry-run"
	// KindCritical is a condition that needs an operator: a layer
	// degraded, an integrity failure, lost events.
	KindCritical = "critical"
)

// Severities.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Event is one thing Fortress saw.
type Event struct {
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"`
	Severity string    `json:"severity"`
	// Layer is shield, sentinel or agent.
	Layer string `json:"layer"`
	// Sentinel events.
	Op      string `json:"op,omitempty"`
	Path    string `json:"path,omitempty"`
	Verdict string `json:"verdict,omitempty"`
	PID     uint32 `json:"pid,omitempty"`
	UID     uint32 `json:"uid,omitempty"`
	Comm    string `json:"comm,omitempty"`
	Exe     string `json:"exe,omitempty"`
	// Shield dry-run samples: the rule, the packet's source, interface
	// and length.
	Rule    string `json:"rule,omitempty"`
	Source  string `json:"source,omitempty"`
	IfIndex uint32 `json:"ifindex,omitempty"`
	Packets uint64 `json:"packets,omitempty"`
	Bytes   uint64 `json:"bytes,omitempty"`
	// Count is the number of events lost, for an events_lost event.
	Count  uint64 `json:"count,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Denied reports whether the kernel refused the operation.
func (e Event) Denied() bool { return e.Verdict == "denied" }
