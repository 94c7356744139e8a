package controlstream

import (
	"github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/controlstream"
)

// The client and the values it carries. The values are the wire's own
// messages from api/controlpb (their enums, such as
// controlpb.LayerState_LAYER_STATE_ENFORCING, are there too): an agent
// converts its state to them once and the client sends them as they are.
type (
	// Client is the agent's end of the stream; build it with NewClient
	// and run it with Run until its context ends. Its methods AddCounters,
	// AddEvent and SetStatus never block; Stats reports delivery.
	Client = controlstream.Client
	// ClientConfig configures a Client: gateway address, TLS, hello, the
	// bundle callback and the batching and reconnect limits.
	ClientConfig = controlstream.ClientConfig
	// Hello is what the agent says about itself on every connect.
	Hello = controlstream.Hello
	// Status is the agent's state as the gateway shows it.
	Status = controlpb.Status
	// Layer is one layer's state within Status.
	Layer = controlpb.Layer
	// CounterDelta is the change of one rule's counter since the last
	// report.
	CounterDelta = controlpb.CounterDelta
	// Event is a FIM, violation, critical or status event.
	Event = controlpb.Event
	// Stats is the client's delivery state.
	Stats = controlstream.Stats
	// BundleFunc applies a pushed bundle and returns its version, or an
	// error whose refusal reason the gateway is told.
	BundleFunc = controlstream.BundleFunc
)

// NewClient checks cfg and builds a client; nothing is dialled before Run.
func NewClient(cfg ClientConfig) (*Client, error) { return controlstream.NewClient(cfg) }
