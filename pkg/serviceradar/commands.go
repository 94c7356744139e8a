package serviceradar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/policy"
)

// Command types Fortress answers. Every one begins with CommandPrefix.
const (
	CommandPrefix = "fortress."
	// CommandApplyBundle: payload_json is the signed bundle file, exactly
	// the bytes Fortress's own gateway pushes.
	CommandApplyBundle = "fortress.apply_bundle"
	// CommandStatus: no payload; the result carries fortress.Status.
	CommandStatus = "fortress.status"
	// CommandMaintenance: payload {"token": "fmt1..."} hands a signed
	// maintenance token to Fortress; {"end": true} closes an audit window.
	CommandMaintenance = "fortress.maintenance"
	// CommandCounters: optional payload {"top": N}; the result carries the
	// busiest rules' counters and the totals per kind.
	CommandCounters = "fortress.counters"
)

// IsCommand reports whether a command type belongs to Fortress, so that
// the host's switch can hand every "fortress.*" type to HandleCommand.
func IsCommand(commandType string) bool { return strings.HasPrefix(commandType, CommandPrefix) }

// Command is what a ServiceRadar CommandRequest carries.
type Command struct {
	ID          string
	Type        string
	PayloadJSON []byte
	// TTLSeconds and CreatedAt (Unix seconds) bound when the command may
	// still run; TTLSeconds <= 0 means no bound.
	TTLSeconds int64
	CreatedAt  int64
}

// Result is what a CommandResult carries.
type Result struct {
	Success     bool
	Message     string
	PayloadJSON []byte
}

// Progress is what a CommandProgress carries.
type Progress struct {
	Percent     int32
	Message     string
	PayloadJSON []byte
}

// Expired reports whether the command is past its TTL at now.
func (c Command) Expired(now time.Time) bool {
	if c.TTLSeconds <= 0 {
		return false
	}
	return time.Unix(c.CreatedAt, 0).Add(time.Duration(c.TTLSeconds) * time.Second).Before(now)
}

// maxPayload caps a command's payload (the bundle size cap).
const maxPayload = 64 << 20

// HandleCommand runs one "fortress.*" command and returns its result.
// progress, if set, receives progress reports of long work (it is called
// from this goroutine). Expired commands, unknown fortress types and
// malformed payloads fail with the reason in Message; a refused bundle
// fails with the refusal's code and error.
func (s *Service) HandleCommand(ctx context.Context, cmd Command, progress func(Progress)) Result {
	return s.handle(ctx, cmd, progress, time.Now())
}

func (s *Service) handle(ctx context.Context, cmd Command, progress func(Progress), now time.Time) Result {
	if progress == nil {
		progress = func(Progress) {}
	}
	switch {
	case !IsCommand(cmd.Type):
		return failure("unsupported command %q: not a fortress command", cmd.Type)
	case cmd.Expired(now):
		return failure("command %s expired: created %s with a ttl of %ds", cmd.ID,
			time.Unix(cmd.CreatedAt, 0).UTC().Format(time.RFC3339), cmd.TTLSeconds)
	case s == nil:
		return failure("fortress is not running on this host")
	case len(cmd.PayloadJSON) > maxPayload:
		return failure("%s: payload of %d bytes is above the %d-byte cap", cmd.Type, len(cmd.PayloadJSON), maxPayload)
	case ctx.Err() != nil:
		return failure("%s: %v", cmd.Type, ctx.Err())
	}
	switch cmd.Type {
	case CommandApplyBundle:
		return s.applyBundle(cmd.PayloadJSON, progress)
	case CommandStatus:
		return success("fortress status", s.eng.Status())
	case CommandCounters:
		return s.counters(cmd.PayloadJSON)
	case CommandMaintenance:
		return s.maintenance(cmd.PayloadJSON)
	}
	return failure("unsupported command %q: fortress knows %s, %s, %s and %s", cmd.Type,
		CommandApplyBundle, CommandStatus, CommandMaintenance, CommandCounters)
}

func failure(format string, args ...any) Result {
	return Result{Message: fmt.Sprintf(format, args...)}
}

func success(msg string, v any) Result {
	data, err := json.Marshal(v)
	if err != nil {
		return failure("encode result: %v", err)
	}
	return Result{Success: true, Message: msg, PayloadJSON: data}
}

// Refusal is the payload of a failed fortress.apply_bundle.
type Refusal struct {
	// Reason is the refusal's code: bad_signature, unknown_key, rollback,
	// replay, not_for_agent, expired, malformed, ... or "error".
	Reason string `json:"reason"`
	Error  string `json:"error"`
	// InForce is the version of the policy still in force.
	InForce uint64 `json:"in_force_version"`
}

func (s *Service) applyBundle(raw []byte, progress func(Progress)) Result {
	if len(raw) == 0 {
		return failure("%s: empty payload: want the signed bundle file", CommandApplyBundle)
	}
	progress(Progress{Percent: 10, Message: fmt.Sprintf("verifying and applying a %d-byte bundle", len(raw))})
	ack, err := s.eng.ApplyBundle(raw)
	if err != nil {
		reason := policy.Reason(err)
		r := failure("bundle refused (%s): %v", reason, err)
		r.PayloadJSON, _ = json.Marshal(Refusal{Reason: reason, Error: err.Error(), InForce: s.eng.Status().Policy.Version})
		return r
	}
	progress(Progress{Percent: 100, Message: fmt.Sprintf("bundle version %d in force", ack.Version)})
	return success(fmt.Sprintf("bundle version %d applied: %d rules, shield %s", ack.Version, ack.Rules, ack.ShieldMode), ack)
}

// CountersRequest is the optional payload of fortress.counters.
type CountersRequest struct {
	// Top bounds the rules reported (the configured top_rules when 0).
	Top int `json:"top,omitempty"`
}

// CountersReply is the payload of a fortress.counters result.
type CountersReply struct {
	Top []fortress.RuleCounter `json:"top"`
	// Sums are packets and bytes per counter kind (drop, would-drop,
	// allow).
	Sums map[string][2]uint64 `json:"sums"`
}

func (s *Service) counters(payload []byte) Result {
	var req CountersRequest
	if len(payload) > 0 && string(payload) != "null" {
		if err := decodeStrict(payload, &req); err != nil {
			return failure("%s: payload: %v", CommandCounters, err)
		}
	}
	if req.Top < 0 {
		return failure("%s: payload: top: %d is negative", CommandCounters, req.Top)
	}
	top, sums := s.eng.TopCounters()
	if req.Top > 0 && req.Top < len(top) {
		top = top[:req.Top]
	}
	if top == nil {
		top = []fortress.RuleCounter{}
	}
	return success(fmt.Sprintf("%d rules with traffic", len(top)), CountersReply{Top: top, Sums: sums})
}

// MaintenanceRequest is the payload of fortress.maintenance.
type MaintenanceRequest struct {
	// Token is a signed maintenance token for this agent.
	Token string `json:"token,omitempty"`
	// End closes an open audit window at once (no token needed:
	// tightening needs no authority).
	End bool `json:"end,omitempty"`
}

func (s *Service) maintenance(payload []byte) Result {
	var req MaintenanceRequest
	if err := decodeStrict(payload, &req); err != nil {
		return failure("%s: payload: %v", CommandMaintenance, err)
	}
	switch {
	case req.End && req.Token != "":
		return failure("%s: payload: token and end are exclusive", CommandMaintenance)
	case req.End:
		if err := s.eng.EndMaintenance(); err != nil {
			return failure("end maintenance: %v", err)
		}
		return success("maintenance window closed: sentinel enforcing", map[string]string{"sentinel": "enforcing"})
	case req.Token == "":
		return failure("%s: payload: want {\"token\": \"...\"} or {\"end\": true}", CommandMaintenance)
	}
	res, err := s.eng.Maintenance(req.Token)
	if err != nil {
		r := failure("maintenance token: %v", err)
		if !errors.Is(err, fortress.ErrTokenRefused) && res.Action != "" {
			r.PayloadJSON, _ = json.Marshal(res)
		}
		return r
	}
	return success(fmt.Sprintf("maintenance %s until %s", res.Action, res.Until.UTC().Format(time.RFC3339)), res)
}
