// Package controlstream is the ControlStream between agent and gateway: a
// gRPC bidirectional stream over mutual TLS (see proto/fortress/v1).
//
// The agent side, Client, takes counter deltas, events and status (the
// wire's own types from api/controlpb, so nothing is converted here) without
// blocking, cuts them into sequenced batches, and keeps every batch until the
// gateway acknowledges that it is stored; after a reconnect it resends from
// the position the gateway reports. Memory is bounded: counter deltas merge
// per rule while they wait, and events beyond a fixed queue are dropped and
// counted (the count is delivered in the next event batch and in status).
// Pushed bundles go to a callback whose result is acknowledged.
//
// The gateway side, Server, authenticates each stream by its client
// certificate (common name = agent id, organizational unit = role "agent"),
// checks the hello against it, and hands batches to a Backend that stores
// them once each and calls back when they are durable.
package controlstream
