package agent

import (
	"context"
	"errors"
	"log/slog"
	"slices"

	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/serviceradar"
)

// Config is a slice of agent.json.
type Config struct {
	AgentID   string `json:"agent_id"`
	Partition string `json:"partition,omitempty"`
	// Fortress: the "fortress" block; Fortress owns its type.
	Fortress *serviceradar.Config `json:"fortress,omitempty"`
}

// CommandRequest, CommandProgress, CommandResult and ServiceStatus carry
// the fields of ServiceRadar's messages of those names (monitoring
// package) that matter here.
type (
	CommandRequest struct {
		CommandID   string
		CommandType string
		PayloadJSON []byte
		TTLSeconds  int64
		CreatedAt   int64
	}
	CommandProgress struct {
		CommandID       string
		CommandType     string
		ProgressPercent int32
		Message         string
		PayloadJSON     []byte
	}
	CommandResult struct {
		CommandID   string
		CommandType string
		Success     bool
		Message     string
		PayloadJSON []byte
	}
	GatewayServiceStatus struct {
		ServiceName string
		ServiceType string
		Source      string
		Available   bool
		Message     []byte
	}
)

// Server is the agent.
type Server struct {
	cfg  Config
	log  *slog.Logger
	fort *serviceradar.Service // Fortress: nil when off, unsupported or failed
}

// NewServer starts the agent. Fortress failing to start is reported and
// the agent runs on without it.
func NewServer(ctx context.Context, cfg Config, log *slog.Logger) *Server {
	s := &Server{cfg: cfg, log: log}
	// Fortress: start it from its block; unsupported platforms and
	// failures are logged, never fatal.
	if cfg.Fortress != nil {
		fc := *cfg.Fortress
		if fc.AgentID == "" {
			fc.AgentID = cfg.AgentID
		}
		fx, err := serviceradar.Open(ctx, fc, log)
		switch {
		case errors.Is(err, fortress.ErrUnsupported), errors.Is(err, serviceradar.ErrDisabled):
			log.Info("fortress not running", "reason", err)
		case err != nil:
			log.Error("fortress failed to start", "err", err)
		}
		s.fort = fx
	}
	return s
}

// Close stops the agent.
func (s *Server) Close() { s.fort.Close() } // Fortress: nil-safe

// Capabilities is the hello's capability list.
func (s *Server) Capabilities() []string {
	caps := []string{"icmp", "mtr", "sweep", "snmp", "mapper", "sync", "sysmon"}
	return slices.Concat(caps, s.fort.Capabilities()) // Fortress
}

// HandleCommand is the agent's command switch. The stream code around it
// has already sent the CommandAck and refused expired commands.
func (s *Server) HandleCommand(ctx context.Context, cmd CommandRequest, progress func(CommandProgress)) CommandResult {
	res := CommandResult{CommandID: cmd.CommandID, CommandType: cmd.CommandType}
	switch {
	case cmd.CommandType == "mtr.run":
		res.Success, res.Message = true, "(the agent's own commands)"
	case serviceradar.IsCommand(cmd.CommandType): // Fortress: every fortress.* type
		r := s.fort.HandleCommand(ctx, serviceradar.Command{ID: cmd.CommandID, Type: cmd.CommandType,
			PayloadJSON: cmd.PayloadJSON, TTLSeconds: cmd.TTLSeconds, CreatedAt: cmd.CreatedAt},
			func(p serviceradar.Progress) {
				progress(CommandProgress{CommandID: cmd.CommandID, CommandType: cmd.CommandType,
					ProgressPercent: p.Percent, Message: p.Message, PayloadJSON: p.PayloadJSON})
			})
		res.Success, res.Message, res.PayloadJSON = r.Success, r.Message, r.PayloadJSON
	default:
		res.Message = "unsupported command"
	}
	return res
}

// Statuses are the service statuses the agent pushes to its gateway.
func (s *Server) Statuses() []GatewayServiceStatus {
	var out []GatewayServiceStatus
	// Fortress: one summary, at most 4,096 bytes of message.
	sum := s.fort.Summary()
	out = append(out, GatewayServiceStatus{ServiceName: sum.ServiceName, ServiceType: sum.ServiceType,
		Source: sum.Source, Available: sum.Available, Message: sum.Message})
	return out
}

// PublishEvents forwards Fortress's OCSF events until ctx ends, the way
// the agent would hand them to its event pipeline (the gateway's NATS
// "events" stream, beside Falco's).
func (s *Server) PublishEvents(ctx context.Context, publish func(subject string, ocsf []byte)) {
	events := s.fort.Events() // Fortress: nil (never ready) without Fortress
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-events:
			publish("events.fortress", e.JSON)
		}
	}
}
