// Package policy is the public face of Fortress's signed inputs: trust keys,
// policy bundles and maintenance tokens. An agent loads its trust keys with
// it; a signer (or a test) makes bundles and tokens an agent accepts.
//
// A bundle is one JSON object whose body is signed with Ed25519 (the
// format is described in docs/INSTALL.md and by [Sign]); the bytes Sign
// returns are exactly what a gateway pushes and what
// fortress.Fortress.ApplyBundle takes. A maintenance token is a short
// signed string for one host that opens a Sentinel audit window (or
// removes Fortress) until it expires.
//
// The bundle types are aliases of the types Fortress verifies with, so a
// body built here is the body the agent decodes.
package policy
