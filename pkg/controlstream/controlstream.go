package controlstream

import (
	"github.com/carverauto/fortress/internal/controlstream"
)

// The client and the values it carries.
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
	Status = controlstream.Status
	// Layer is one layer's state within Status.
	Layer = controlstream.Layer
	// CounterDelta is the change of one rule's counter since the last
	// report.
	CounterDelta = controlstream.CounterDelta
	// Event is a FIM, violation, critical or status event.
	Event = controlstream.Event
	// Stats is the client's delivery state.
	Stats = controlstream.Stats
	// BundleFunc applies a pushed bundle and returns its version, or an
	// error whose refusal reason the gateway is told.
	BundleFunc = controlstream.BundleFunc
)

// Layer states.
const (
	StateEnforcing   = controlstream.StateEnforcing
	StateObserving   = controlstream.StateObserving
	StateDegraded    = controlstream.StateDegraded
	StateUnavailable = controlstream.StateUnavailable
)

// Event kinds.
const (
	KindFIM       = controlstream.KindFIM
	KindViolation = controlstream.KindViolation
	KindCritical  = controlstream.KindCritical
	KindStatus    = controlstream.KindStatus
)

// Counter kinds.
const (
	CounterDrop      = controlstream.CounterDrop
	CounterAllow     = controlstream.CounterAllow
	CounterWouldDrop = controlstream.CounterWouldDrop
)

// NewClient checks cfg and builds a client; nothing is dialled before Run.
func NewClient(cfg ClientConfig) (*Client, error) { return controlstream.NewClient(cfg) }
