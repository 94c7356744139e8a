// Package controlpb holds the generated Go code for the ControlStream
// protocol defined in proto/fortress/v1/control.proto. Do not edit the
// generated files; run make generate.
package controlpb
