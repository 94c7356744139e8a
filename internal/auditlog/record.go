package auditlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// HeadSuffix names the head file next to the log: "<path>.head".
const HeadSuffix = ".head"

// MaxLineSize bounds one record's line, so that a corrupt or hostile log
// cannot make a reader allocate without limit.
const MaxLineSize = 1 << 20

// ZeroHash is the prev of the first record and the hash of an empty log.
var ZeroHash = strings.Repeat("0", 64)

// Actions recorded by Fortress. Action is free-form; these are the kinds
// the control plane uses.
const (
	ActionLoad   = "load"
	ActionAttach = "attach"
	ActionDetach = "detach"
	ActionPin    = "pin"
	ActionUnpin  = "unpin"
	ActionAdopt  = "adopt"
	// ActionMapUpdate records one map write.
	ActionMapUpdate = "map_update"
	// ActionPolicySwap records a whole policy swap as one record: details
	// carry the counts (e.g. "added", "removed", "entries") and the new
	// policy's digest ("digest": "sha256:<hex>").
	ActionPolicySwap = "policy_swap"
)

// OutcomeOK is the outcome of a change that succeeded.
const OutcomeOK = "ok"

// Outcome returns OutcomeOK for a nil error and the error's text otherwise.
func Outcome(err error) string {
	if err == nil {
		return OutcomeOK
	}
	return err.Error()
}

// Record is one audit record. Callers fill Actor (optional), Action, Object,
// Outcome and Details; Append sets Seq, Time, Prev and Hash.
type Record struct {
	Seq     uint64         `json:"seq"`
	Time    time.Time      `json:"time"`
	Actor   string         `json:"actor"`
	Action  string         `json:"action"`
	Object  string         `json:"object"`
	Outcome string         `json:"outcome"`
	Details map[string]any `json:"details,omitempty"`
	Prev    string         `json:"prev"`
	Hash    string         `json:"hash"`
}

// body is the canonical encoding's shape: field order is the format.
type body struct {
	Seq     uint64         `json:"seq"`
	Time    string         `json:"time"`
	Actor   string         `json:"actor"`
	Action  string         `json:"action"`
	Object  string         `json:"object"`
	Outcome string         `json:"outcome"`
	Details map[string]any `json:"details,omitempty"`
	Prev    string         `json:"prev"`
}

// wire is a whole line; the embedded body's fields come first.
type wire struct {
	body
	Hash string `json:"hash"`
}

// canonical returns the canonical encoding of b.
func canonical(b *body) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(b); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// seal returns the record's hash and its line (without "\n").
func seal(b *body) (hash string, line []byte, err error) {
	c, err := canonical(b)
	if err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(c)
	hash = hex.EncodeToString(sum[:])
	line = make([]byte, 0, len(c)+len(hash)+10)
	line = append(line, c[:len(c)-1]...)
	line = append(line, `,"hash":"`...)
	line = append(line, hash...)
	line = append(line, `"}`...)
	return hash, line, nil
}

func lineDigest(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// normalizeDetails passes details through one encoding/json round trip, so
// the stored form re-encodes to the same bytes when verified.
func normalizeDetails(d map[string]any) (map[string]any, error) {
	if len(d) == 0 {
		return nil, nil
	}
	raw, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	return decodeDetails(raw)
}

func decodeDetails(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// parseLine decodes one line strictly: one JSON object with the known
// fields, numbers kept as written.
func parseLine(line []byte) (*wire, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var w wire
	if err := dec.Decode(&w); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the record")
	}
	return &w, nil
}

func (w *wire) record() Record {
	t, _ := time.Parse(time.RFC3339Nano, w.Time)
	return Record{
		Seq:     w.Seq,
		Time:    t,
		Actor:   w.Actor,
		Action:  w.Action,
		Object:  w.Object,
		Outcome: w.Outcome,
		Details: w.Details,
		Prev:    w.Prev,
		Hash:    w.Hash,
	}
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
