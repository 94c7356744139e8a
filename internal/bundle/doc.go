// Package bundle defines Fortress's signed policy bundles: the format, its
// canonical encoding, Ed25519 signing and verification. Verification is a
// pure function ([Verify]: bytes, keys, agent id and the last applied
// version in, a [Bundle] or a refusal out); the agent's policy controller
// (pkg/fortress) applies what verifies and records it. [Verifier] adds a
// memory of the last applied bundle for tools and tests.
//
// # File format
//
// A bundle file is one JSON object, the envelope:
//
//	{"format":"fortress-bundle/1","key_id":"<16 hex>","signature":"<base64>","body":{...}}
//
// key_id names the signing key: the first 8 bytes of SHA-256 over the raw
// 32-byte Ed25519 public key, in lower-case hex. signature is the standard
// base64 encoding of the 64-byte Ed25519 signature over
//
//	"fortress-bundle/1\x00" || body
//
// where body is the exact byte sequence of the "body" value as it appears in
// the file. The verifier checks the signature over those bytes before it
// decodes the body, so nothing an attacker wrote is interpreted before the
// signature holds. Reformatting a bundle (for example with jq) invalidates it.
//
// # Canonical encoding of the body
//
// The signer produces the body with [Body.Canonical]: compact JSON (no
// insignificant white space), object members in the fixed order in which the
// Body, Payload and nested types declare them, empty optional members
// omitted, times as RFC 3339 in UTC with nanoseconds only when non-zero,
// targets sorted and de-duplicated, strings escaped as Go's encoding/json
// does. Verification needs no canonicalisation because it signs bytes, but a
// canonical body makes the same policy always produce the same digest and
// signature input, which [Body.Canonical] guarantees and the verifier
// re-checks (a non-canonical body is refused as malformed).
//
// # Refusals
//
// Every refusal wraps exactly one of the sentinel errors (ErrTooLarge,
// ErrMalformed, ErrUnknownKey, ErrBadSignature, ErrNotForAgent, ErrExpired,
// ErrNotYetValid, ErrReplay, ErrRollback), so callers can test with
// errors.Is and report [Reason] in an acknowledgement. A refused bundle never
// changes the last-applied state.
package bundle
