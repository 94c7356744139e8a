package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/carverauto/fortress/internal/blocklist"
)

// KeyID returns the identifier of a public key: the first 8 bytes of its
// SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// GenerateKey makes a new signing key pair.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

// MarshalPrivateKey encodes a private key as PKCS#8 PEM.
func MarshalPrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKey encodes a public key as PKIX PEM.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePrivateKey decodes a PKCS#8 PEM Ed25519 private key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("parse private key: no PRIVATE KEY PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("parse private key: %T is not Ed25519", k)
	}
	return priv, nil
}

// ParsePublicKeys decodes every PUBLIC KEY PEM block in data (a trust file
// may hold several keys, e.g. during rotation).
func ParsePublicKeys(data []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		if blk.Type != "PUBLIC KEY" {
			continue
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("parse public key: %T is not Ed25519", k)
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, errors.New("parse public key: no PUBLIC KEY PEM block")
	}
	return keys, nil
}

// LoadPrivateKey reads a private key file, refusing one that others can read.
func LoadPrivateKey(file string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load signing key %s: mode %v lets others read it (want 0600)", file, fi.Mode().Perm())
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	return ParsePrivateKey(data)
}

// BuiltinTrustKey may hold a PEM public key compiled into the agent with
// -ldflags "-X github.com/carverauto/fortress/internal/bundle.BuiltinTrustKey=...".
// PEM has newlines, so the linker value may use literal "\n" sequences.
var BuiltinTrustKey string

// BuiltinKeys returns the compiled-in trust keys, if any.
func BuiltinKeys() ([]ed25519.PublicKey, error) {
	if BuiltinTrustKey == "" {
		return nil, nil
	}
	return ParsePublicKeys(bytes.ReplaceAll([]byte(BuiltinTrustKey), []byte(`\n`), []byte("\n")))
}

// LoadTrustKeys reads trust keys from a protected path: the file and its
// directory must be owned by root (or the current user) and writable by no
// one else, since whoever can write the trust key can sign policy.
func LoadTrustKeys(file string) ([]ed25519.PublicKey, error) {
	if err := checkProtected(file); err != nil {
		return nil, err
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("load trust key: %w", err)
	}
	defer f.Close()
	data, err := ReadLimited(f, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("load trust key %s: %w", file, err)
	}
	return ParsePublicKeys(data)
}

// Sign canonicalises body, signs it and returns the bundle file.
func Sign(body Body, priv ed25519.PrivateKey) ([]byte, error) {
	canon, err := body.Canonical()
	if err != nil {
		return nil, err
	}
	if err := body.Validate(); err != nil {
		return nil, err
	}
	env := Envelope{
		Format:    Format,
		KeyID:     KeyID(priv.Public().(ed25519.PublicKey)),
		Signature: ed25519.Sign(priv, signedMessage(canon)),
		Body:      canon,
	}
	out, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode bundle: %w", err)
	}
	return append(out, '\n'), nil
}

func signedMessage(body []byte) []byte {
	msg := make([]byte, 0, len(Format)+1+len(body))
	msg = append(msg, Format...)
	msg = append(msg, 0)
	return append(msg, body...)
}

// Options are the checks Parse applies beyond the signature.
type Options struct {
	// Keys are the trusted public keys.
	Keys []ed25519.PublicKey
	// MaxSize caps the file size (DefaultMaxSize when 0).
	MaxSize int64
	// AgentID, when set, must be among the targets.
	AgentID string
	// Now is the time for expiry checks (time.Now when zero).
	Now time.Time
	// SkipExpiry skips the expiry check (re-applying at start, inspection).
	SkipExpiry bool
	// Stored marks the agent's own last-applied bundle, read at start: the
	// intake checks added since it was accepted are not applied again.
	Stored bool
	// ClockSkew is how far in the future issued_at may lie (5 min when 0).
	ClockSkew time.Duration
}

// Parse verifies a bundle file: size, envelope, key, signature, body, target
// and time window, in that order. It does not check the version against any
// state; the Verifier does.
func Parse(data []byte, opt Options) (*Bundle, error) {
	max := opt.MaxSize
	if max <= 0 {
		max = DefaultMaxSize
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), max)
	}
	var env Envelope
	if err := decodeStrict(data, &env, "envelope"); err != nil {
		return nil, err
	}
	if env.Format != Format {
		return nil, fmt.Errorf("%w: envelope.format: %s, want %q", ErrMalformed, blocklist.Quote(env.Format), Format)
	}
	if len(env.Body) == 0 || env.Body[0] != '{' {
		return nil, fmt.Errorf("%w: envelope.body: missing or not an object", ErrMalformed)
	}
	var key ed25519.PublicKey
	for _, k := range opt.Keys {
		if KeyID(k) == env.KeyID {
			key = k
			break
		}
	}
	if key == nil {
		return nil, fmt.Errorf("%w: key_id %s", ErrUnknownKey, blocklist.Quote(env.KeyID))
	}
	if len(env.Signature) != ed25519.SignatureSize || !ed25519.Verify(key, signedMessage(env.Body), env.Signature) {
		return nil, fmt.Errorf("%w: key_id %s", ErrBadSignature, env.KeyID)
	}
	var body Body
	if err := decodeStrict(env.Body, &body, "body"); err != nil {
		return nil, err
	}
	if err := body.validate(!opt.Stored); err != nil {
		return nil, err
	}
	check := body
	check.Targets = append([]string(nil), body.Targets...)
	if canon, err := check.Canonical(); err != nil || !bytes.Equal(canon, env.Body) {
		return nil, fmt.Errorf("%w: body: not in canonical encoding", ErrMalformed)
	}
	if opt.AgentID != "" && !body.ForAgent(opt.AgentID) {
		return nil, fmt.Errorf("%w: agent %q, targets %v", ErrNotForAgent, opt.AgentID, body.Targets)
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	skew := opt.ClockSkew
	if skew <= 0 {
		skew = 5 * time.Minute
	}
	if !opt.SkipExpiry {
		if body.ExpiresAt != nil && !now.Before(*body.ExpiresAt) {
			return nil, fmt.Errorf("%w: at %s", ErrExpired, body.ExpiresAt.Format(time.RFC3339))
		}
		if body.IssuedAt.After(now.Add(skew)) {
			return nil, fmt.Errorf("%w: issued_at %s", ErrNotYetValid, body.IssuedAt.Format(time.RFC3339))
		}
	}
	sum := sha256.Sum256(data)
	return &Bundle{Body: body, KeyID: env.KeyID, Digest: hex.EncodeToString(sum[:]), Raw: data}, nil
}
