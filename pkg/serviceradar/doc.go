// Package serviceradar hosts Fortress inside ServiceRadar's agent, or
// beside it. It holds everything the agent needs and nothing of
// ServiceRadar's own code:
//
//   - Config is the "fortress" block of the agent's agent.json: strict JSON
//     (unknown fields are errors, whichever decoder the host uses),
//     defaults that work, errors that name the bad field.
//   - Open starts Fortress from it. Off Linux it returns an error wrapping
//     fortress.ErrUnsupported; the host reports Fortress as unsupported
//     and keeps running. Every method of a nil *Service is safe, so the
//     host needs no second code path.
//   - Capabilities lists what the hello may claim: "fortress",
//     "fortress.shield", "fortress.sentinel", each only when it really
//     runs on this host.
//   - HandleCommand answers the "fortress.*" commands of the agent's
//     ControlStream (CommandRequest in, what a CommandResult carries out,
//     CommandProgress through a callback): apply_bundle, status,
//     maintenance and counters.
//   - Summary fits GatewayServiceStatus, its message never above 4,096
//     bytes; Events streams Sentinel violations and file-integrity events
//     as OCSF File System Activity (class 1001) JSON.
//   - RunControlStream dials a ServiceRadar agent-gateway itself
//     (monitoring.AgentGatewayService/ControlStream over mutual TLS), for
//     a Fortress agent that runs beside an unmodified ServiceRadar agent.
//
// docs/SERVICERADAR.md describes the configuration block, the commands and
// their payloads, the status summary and the OCSF mapping.
package serviceradar
