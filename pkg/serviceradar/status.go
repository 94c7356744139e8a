package serviceradar

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/carverauto/fortress/pkg/fortress"
)

// MaxStatusMessage is the most ServiceRadar's gateway keeps of the message
// of a status whose source it does not know.
const MaxStatusMessage = 4096

// ServiceStatus is what fills a GatewayServiceStatus.
type ServiceStatus struct {
	ServiceName string
	ServiceType string
	Source      string
	// Available is true while Shield or Sentinel protects something.
	Available bool
	// Message is the JSON summary (StatusSummary), at most
	// MaxStatusMessage bytes.
	Message []byte
}

// StatusSummary is the message of ServiceStatus: the state of each layer
// and of the policy, in a few hundred bytes. The full state is one
// fortress.status command away.
type StatusSummary struct {
	AgentID  string          `json:"agent_id"`
	Shield   ShieldSummary   `json:"shield"`
	Sentinel SentinelSummary `json:"sentinel"`
	Policy   PolicySummary   `json:"policy"`
	// Degraded lists what is not as configured (shortened, and cut to
	// fit; DegradedTotal is the full count).
	Degraded      []string `json:"degraded,omitempty"`
	DegradedTotal int      `json:"degraded_total,omitempty"`
	// EventsDropped counts events lost on the way (Fortress's channel,
	// the kernel, or the OCSF stream).
	EventsDropped uint64 `json:"events_dropped,omitempty"`
	// Truncated says that text was shortened to fit.
	Truncated bool `json:"truncated,omitempty"`
}

// ShieldSummary is Shield's state.
type ShieldSummary struct {
	State      string `json:"state"`
	Reason     string `json:"reason,omitempty"`
	Rules      int    `json:"rules"`
	Interfaces int    `json:"interfaces"`
	Attached   int    `json:"attached"`
	Drop       uint64 `json:"drop"`
	WouldDrop  uint64 `json:"would_drop"`
	AllowHit   uint64 `json:"allow_hit"`
}

// SentinelSummary is Sentinel's state.
type SentinelSummary struct {
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
	Denied  uint64 `json:"denied"`
	Audited uint64 `json:"audited"`
}

// PolicySummary is the policy in force.
type PolicySummary struct {
	Version   uint64 `json:"version"`
	InForce   bool   `json:"in_force"`
	Digest    string `json:"digest,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// Summary reports Fortress's status for GatewayServiceStatus. A nil
// Service reports Fortress unavailable.
func (s *Service) Summary() ServiceStatus {
	out := ServiceStatus{ServiceName: ServiceName, ServiceType: ServiceType, Source: Source}
	if s == nil {
		out.Message = []byte(`{"shield":{"state":"unavailable"},"sentinel":{"state":"unavailable"},"policy":{"version":0,"in_force":false}}`)
		return out
	}
	st := s.eng.Status()
	out.Available = shieldUp(st) || sentinelUp(st)
	out.Message = summarize(st, s.dropped.Load())
	return out
}

// summarize encodes the summary of st within MaxStatusMessage bytes,
// shortening free text first and dropping degraded lines last.
func summarize(st fortress.Status, ocsfDropped uint64) []byte {
	sum := StatusSummary{
		AgentID: st.AgentID,
		Shield: ShieldSummary{State: st.Shield.State, Reason: st.Shield.Reason, Rules: st.Shield.Rules,
			Interfaces: len(st.Shield.Interfaces), Drop: st.Shield.Totals.Drop, WouldDrop: st.Shield.Totals.WouldDrop,
			AllowHit: st.Shield.Totals.AllowHit},
		Sentinel: SentinelSummary{State: st.Sentinel.State, Reason: st.Sentinel.Reason, Denied: st.Sentinel.Denied,
			Audited: st.Sentinel.Audited},
		Policy: PolicySummary{Version: st.Policy.Version, InForce: st.Policy.InForce, Digest: st.Policy.Digest,
			LastError: st.Policy.LastError},
		Degraded:      st.Degraded,
		DegradedTotal: len(st.Degraded),
		EventsDropped: st.Events.Dropped + st.Events.KernelLost + ocsfDropped,
	}
	for _, ifc := range st.Shield.Interfaces {
		if ifc.Attached {
			sum.Shield.Attached++
		}
	}
	if data, err := json.Marshal(sum); err == nil && len(data) <= MaxStatusMessage {
		return data
	}
	// Too long: shorten every free-text field, then keep as many
	// degraded lines as fit; tighter limits if escaping (a control
	// character takes six bytes in JSON) still leaves it too long.
	full := sum
	full.Truncated = true
	for _, lim := range []int{400, 120, 40} {
		sum = full
		sum.AgentID = clip(full.AgentID, lim)
		sum.Shield.State, sum.Sentinel.State = clip(full.Shield.State, 32), clip(full.Sentinel.State, 32)
		sum.Shield.Reason, sum.Sentinel.Reason = clip(full.Shield.Reason, lim), clip(full.Sentinel.Reason, lim)
		sum.Policy.Digest, sum.Policy.LastError = clip(full.Policy.Digest, 80), clip(full.Policy.LastError, lim)
		lines := make([]string, 0, len(st.Degraded))
		for _, d := range st.Degraded {
			lines = append(lines, clip(d, lim/2))
		}
		// The most lines that fit, by bisection: lo always fits or is 0.
		fits := func(n int) []byte {
			sum.Degraded = lines[:n]
			if data, err := json.Marshal(sum); err == nil && len(data) <= MaxStatusMessage {
				return data
			}
			return nil
		}
		if fits(0) == nil {
			continue
		}
		lo, hi := 0, len(lines)
		for lo < hi {
			if mid := (lo + hi + 1) / 2; fits(mid) != nil {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		return fits(lo)
	}
	// Not reached with the limits above (40 bytes a field, escaped, is far
	// below the cap); kept so that the bound holds whatever changes.
	return []byte(`{"truncated":true}`)
}

// clip shortens s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
