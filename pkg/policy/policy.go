package policy

import (
	"crypto/ed25519"

	"github.com/carverauto/fortress/internal/bundle"
)

// Bundle body and payload types.
type (
	// Body is the signed content of a bundle: version, issue and expiry
	// times, target agents and the payload.
	Body = bundle.Body
	// Payload is the policy: Shield rules, management addresses, Sentinel
	// paths. A nil section leaves that layer as it is.
	Payload = bundle.Payload
	// Shield is the XDP firewall section.
	Shield = bundle.Shield
	// Rule is one CIDR rule of a Shield section.
	Rule = bundle.Rule
	// ListRef names a CIDR list by URL and SHA-256 digest.
	ListRef = bundle.ListRef
	// Gateways are management addresses Shield never drops.
	Gateways = bundle.Gateways
	// Sentinel is the BPF LSM section.
	Sentinel = bundle.Sentinel
)

// Modes, actions and the target that means every agent.
const (
	AllAgents       = bundle.AllAgents
	ShieldEnforce   = bundle.ShieldEnforce
	ShieldDryRun    = bundle.ShieldDryRun
	SentinelEnforce = bundle.SentinelEnforce
	SentinelAudit   = bundle.SentinelAudit
	ActionDrop      = bundle.ActionDrop
	ActionAllow     = bundle.ActionAllow
)

// Refusals of a bundle. An agent's error wraps exactly one of them, so
// errors.Is tells them apart; [Reason] names them with a short code.
var (
	ErrTooLarge     = bundle.ErrTooLarge
	ErrMalformed    = bundle.ErrMalformed
	ErrUnknownKey   = bundle.ErrUnknownKey
	ErrBadSignature = bundle.ErrBadSignature
	ErrNotForAgent  = bundle.ErrNotForAgent
	ErrExpired      = bundle.ErrExpired
	ErrNotYetValid  = bundle.ErrNotYetValid
	ErrReplay       = bundle.ErrReplay
	ErrRollback     = bundle.ErrRollback
)

// Reason returns the short stable code of a refusal ("bad_signature",
// "rollback", "not_for_agent", ...), "" for nil and "error" for an error
// that is not a refusal.
func Reason(err error) string { return bundle.Reason(err) }

// Sign encodes body canonically and signs it, returning the bundle file.
// It refuses a body that an agent would refuse as malformed.
func Sign(body Body, priv ed25519.PrivateKey) ([]byte, error) { return bundle.Sign(body, priv) }

// GenerateKey makes a new Ed25519 signing key pair.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) { return bundle.GenerateKey() }

// KeyID names a public key: the first 8 bytes of its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string { return bundle.KeyID(pub) }

// MarshalPublicKey encodes a public key as PKIX PEM (a trust key file).
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) { return bundle.MarshalPublicKey(pub) }

// ParsePublicKeys decodes every PUBLIC KEY PEM block in data.
func ParsePublicKeys(data []byte) ([]ed25519.PublicKey, error) { return bundle.ParsePublicKeys(data) }

// LoadTrustKeys reads the trust keys of a file that must be owned by root
// (or the current user) and writable by no one else, like its directory:
// whoever can write it can sign policy.
func LoadTrustKeys(file string) ([]ed25519.PublicKey, error) { return bundle.LoadTrustKeys(file) }

// BuiltinKeys returns the trust keys compiled into the binary (none unless
// the build set one).
func BuiltinKeys() ([]ed25519.PublicKey, error) { return bundle.BuiltinKeys() }
