// Package agent is a stand-in for ServiceRadar's agent (its go/pkg/agent):
// just enough of its configuration, ControlStream hello, command switch,
// service statuses and event publishing to show where Fortress plugs in.
// It imports nothing of Fortress but its public packages, as ServiceRadar's
// module would.
//
// The lines ServiceRadar gains are marked "Fortress:" below; there are
// about twenty of them.
package agent
