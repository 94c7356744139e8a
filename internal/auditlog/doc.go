// Package auditlog is the local, append-only, hash-chained audit log of every
// change Fortress makes to kernel state: program loads, attaches, detaches,
// pins, unpins, adoptions, map updates (a whole policy swap is one record
// carrying counts and a digest) and free-form events.
//
// # File format
//
// The log is a file of JSON lines (default paths.AuditLog, mode 0600 in a
// 0700 directory). Line n holds the record with seq n. Each line is exactly
//
//	{"seq":N,"time":"T","actor":"A","action":"X","object":"O","outcome":"R","details":{...},"prev":"P","hash":"H"}
//
// with the fields in that order and no other bytes, followed by "\n":
//
//   - seq: 1 for the first record, consecutive after that.
//   - time: the append time, UTC, in RFC 3339 with nanoseconds and trailing
//     zeros removed (Go's time.RFC3339Nano).
//   - actor: who changed the kernel state, e.g. "fortress-agent[1234]".
//   - action: load, attach, detach, pin, unpin, adopt, map_update,
//     policy_swap or a free-form kind.
//   - object: what was acted on (program, link, pin path, map).
//   - outcome: "ok", or the error text.
//   - details: optional; omitted when empty.
//   - prev: lowercase hex SHA-256 of the previous line's bytes, without its
//     "\n"; 64 zeros for the first record.
//   - hash: lowercase hex SHA-256 of the record's canonical encoding.
//
// # Canonical encoding
//
// The canonical encoding of a record is the line without the hash member:
// the JSON object {seq, time, actor, action, object, outcome, [details],
// prev} in exactly that order, as Go's encoding/json writes it with HTML
// escaping turned off (json.Encoder.SetEscapeHTML(false)) and without the
// encoder's trailing newline. Concretely: no insignificant whitespace;
// strings escaped minimally ("\"", "\\", "\n", "\r", "\t", other control
// characters and U+2028/U+2029 as \u00XX / \u2028 / \u2029); invalid UTF-8
// replaced by U+FFFD; object keys inside details sorted bytewise at every
// depth; numbers inside details written exactly as first marshalled (Append
// passes details through one encoding/json round trip with UseNumber, so the
// stored form is a fixed point). This is close to, but not, RFC 8785.
//
// The line is the canonical encoding with `,"hash":"H"` inserted before the
// final "}". Verification decodes each line, re-encodes it and requires the
// result to be byte-identical to the line, so every line has one form only.
//
// # What the chain detects
//
// Changing any byte of line k breaks either line k's hash or line k+1's
// prev. Removing or reordering lines breaks seq and prev. An attacker who
// edits line k and recomputes its hash is still caught by line k+1's prev.
//
// Removing the last lines leaves a valid, shorter chain, so the chain alone
// cannot see it. The head file "<path>.head" ([HeadSuffix]) records the
// seq and hash of the last record; Append rewrites it after every record
// (temporary file, fsync, rename, fsync of the directory), and verification
// requires the log to end exactly at the head. A crash between the log's
// fsync and the head's rename leaves the head one record behind: that one
// state is accepted (Summary.HeadPending) and the next Open repairs it.
// A non-empty log without a head file fails verification.
//
// Someone able to rewrite both files entirely (root, in practice) can forge
// a consistent log: no key is involved. Detecting that needs the head hash
// kept elsewhere; fortressctl auditlog verify prints it for that purpose.
//
// # Writers
//
// [Open] verifies the whole existing log (and head) before it appends
// anything, and refuses a broken chain. [Log.Append] is safe for concurrent
// goroutines and, through flock(2) on the log file, for concurrent processes:
// under the lock it first reads any records other writers appended, so the
// chain stays linear. Each record is written with one write(2) and fsynced
// before Append returns. A failed write, fsync or head update makes the Log
// refuse further appends; reopen it to continue after inspection.
//
// The package does not rotate the log; Open reads it from the start.
package auditlog
