// Package srpeer plays ServiceRadar's agent-gateway in tests: a gRPC
// server of monitoring.AgentGatewayService over mutual TLS (certificates
// made in the test) that takes an agent's ControlStream, records its
// hello, sends CommandRequests and collects each command's ack, progress
// and result. Only tests import it; it ships in no binary.
package srpeer
