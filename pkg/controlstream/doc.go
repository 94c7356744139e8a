// Package controlstream is the agent side of Fortress's own ControlStream:
// the mutual-TLS gRPC stream from an agent to a Fortress gateway (proto
// fortress.v1, see proto/fortress/v1/control.proto). A Client says hello,
// takes counter deltas, events and status without blocking, delivers them
// in sequenced batches exactly once across reconnects, and hands pushed
// bundles to a callback whose result it acknowledges.
//
// fortress-agent uses it; any other agent can do the same. (For
// ServiceRadar's own agent-gateway stream, see package serviceradar.)
package controlstream
