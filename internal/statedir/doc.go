// Package statedir owns the agent's state directory: the names of the files
// in it, and the one way Fortress writes a file it must not lose or find
// half-written.
//
// WriteFile writes the new content to a temporary file beside the target
// (".NAME.tmp*"), syncs it, renames it over the target and syncs the
// directory, so that after a crash at any point the target holds either
// its old content or the new one, never a mix, and a reader never sees a
// torn file. Concurrent writers each use their own temporary file; the
// last rename wins. Every durable write in Fortress goes through it: the
// last applied bundle, cached lists, reported counters, the used-token
// ledger, the audit log's head, and the files fortressctl writes with
// --out.
package statedir
