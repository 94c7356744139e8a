// Package monitoringpb holds the generated Go code for the ControlStream
// subset of ServiceRadar's agent-gateway protocol (proto package
// monitoring), defined in proto/monitoring/control.proto. Do not edit the
// generated files; run make generate.
package monitoringpb
