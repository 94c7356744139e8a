package serviceradar

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	pb "github.com/carverauto/fortress/api/monitoringpb"
)

// Hello is what the agent tells ServiceRadar's agent-gateway about itself.
type Hello struct {
	AgentID   string
	Partition string
	// Capabilities are claimed besides the Service's own.
	Capabilities  []string
	ConfigVersion string
	Version       string
	Hostname      string
	Labels        map[string]string
	ConfigSource  string
}

// StreamConfig configures RunControlStream.
type StreamConfig struct {
	// Addr is the agent-gateway's host:port (ServiceRadar: port 50052).
	Addr string
	// TLS carries the agent's client certificate and the gateway's CA
	// (mutual TLS, as ServiceRadar requires).
	TLS   *tls.Config
	Hello Hello
	// MinBackoff and MaxBackoff bound the reconnect delay (500 ms, 30 s).
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// maxStreamMessage caps received messages: a command carries a bundle.
const maxStreamMessage = maxPayload + 1<<20

// RunControlStream connects to a ServiceRadar agent-gateway and serves its
// ControlStream until ctx ends, reconnecting with backoff: it says hello
// with the Service's capabilities, acknowledges every command, refuses
// expired ones and types other than "fortress.*", answers the rest through
// HandleCommand with progress, and sends one result per command. It is
// what an agent running beside an unmodified ServiceRadar agent uses; a
// ServiceRadar agent calls HandleCommand from its own stream instead. On
// a nil Service it claims no capability and refuses every command.
func (s *Service) RunControlStream(ctx context.Context, cfg StreamConfig) error {
	if cfg.Addr == "" || cfg.TLS == nil {
		return errors.New("controlstream: address and TLS configuration required")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	conn, err := grpc.NewClient(cfg.Addr,
		grpc.WithTransportCredentials(credentials.NewTLS(cfg.TLS)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxStreamMessage)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	if err != nil {
		return fmt.Errorf("controlstream %s: %w", cfg.Addr, err)
	}
	defer conn.Close()
	client := pb.NewAgentGatewayServiceClient(conn)
	for attempt := 0; ; attempt++ {
		start := time.Now()
		err := s.session(ctx, client, cfg, log)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) > time.Minute {
			attempt = 0
		}
		d := backoff(attempt, cfg.MinBackoff, cfg.MaxBackoff)
		log.Warn("serviceradar control stream lost", "gateway", cfg.Addr, "err", err, "retry_in", d)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
}

func backoff(attempt int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// session is one stream: hello, then commands until the stream ends.
func (s *Service) session(ctx context.Context, client pb.AgentGatewayServiceClient, cfg StreamConfig, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	var (
		sendMu sync.Mutex
		wg     sync.WaitGroup
	)
	// Commands in flight see the stream end before it is waited for.
	defer func() {
		cancel()
		wg.Wait()
	}()
	stream, err := client.ControlStream(ctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	send := func(m *pb.ControlStreamRequest) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	h := cfg.Hello
	caps := slices.Clone(h.Capabilities)
	for _, c := range s.Capabilities() {
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	hello := &pb.ControlStreamHello{AgentId: h.AgentID, Partition: h.Partition, Capabilities: caps,
		ConfigVersion: h.ConfigVersion, Version: h.Version, Hostname: h.Hostname, Os: runtime.GOOS, Arch: runtime.GOARCH,
		Labels: h.Labels, ConfigSource: h.ConfigSource}
	if err := send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_Hello{Hello: hello}}); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	log.Info("serviceradar control stream up", "gateway", cfg.Addr, "capabilities", caps)
	for {
		msg, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		switch p := msg.Payload.(type) {
		case *pb.ControlStreamResponse_Command:
			cmd := p.Command
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.serveCommand(ctx, cmd, send, log); err != nil {
					log.Warn("serviceradar command: reply not sent", "command_id", cmd.GetCommandId(), "err", err)
					cancel()
				}
			}()
		case *pb.ControlStreamResponse_Config:
			// Remote configuration is the ServiceRadar agent's; Fortress's
			// own comes from its protected file and signed bundles.
			log.Debug("serviceradar config ignored", "config_version", p.Config.GetConfigVersion())
		}
	}
}

// serveCommand acknowledges one command, runs it and sends its result.
func (s *Service) serveCommand(ctx context.Context, cmd *pb.CommandRequest, send func(*pb.ControlStreamRequest) error, log *slog.Logger) error {
	id, typ := cmd.GetCommandId(), cmd.GetCommandType()
	if err := send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_CommandAck{CommandAck: &pb.CommandAck{
		CommandId: id, CommandType: typ, Timestamp: time.Now().Unix(), Message: "command received"}}}); err != nil {
		return err
	}
	c := Command{ID: id, Type: typ, PayloadJSON: cmd.GetPayloadJson(), TTLSeconds: cmd.GetTtlSeconds(), CreatedAt: cmd.GetCreatedAt()}
	var res Result
	switch {
	case c.Expired(time.Now()):
		res = failure("command expired: created %s with a ttl of %ds", time.Unix(c.CreatedAt, 0).UTC().Format(time.RFC3339), c.TTLSeconds)
	case !IsCommand(typ):
		res = failure("unsupported command")
	default:
		var progressErr error
		res = s.HandleCommand(ctx, c, func(p Progress) {
			if progressErr != nil {
				return
			}
			progressErr = send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_CommandProgress{CommandProgress: &pb.CommandProgress{
				CommandId: id, CommandType: typ, ProgressPercent: p.Percent, Message: p.Message, Timestamp: time.Now().Unix(),
				PayloadJson: p.PayloadJSON}}})
		})
	}
	log.Info("serviceradar command", "command_id", id, "type", typ, "success", res.Success, "message", res.Message)
	return send(&pb.ControlStreamRequest{Payload: &pb.ControlStreamRequest_CommandResult{CommandResult: &pb.CommandResult{
		CommandId: id, CommandType: typ, Success: res.Success, Message: res.Message, PayloadJson: res.PayloadJSON,
		Timestamp: time.Now().Unix()}}})
}
