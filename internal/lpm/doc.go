// Package lpm holds Shield's longest-prefix-match logic in pure Go: the rule
// model, a plain reference LPM that serves as the oracle in tests and
// benchmarks, and the compiler that turns a rule set into the range tables
// the XDP program searches.
//
// # Table layout
//
// Each address family is compiled into disjoint address ranges, each carrying
// the verdict of the most specific rule that covers it (0 where none does).
// Adjacent ranges with the same verdict are merged. The ranges are indexed by
// the top 16 bits of the address (the "directory"): a bucket that lies inside
// a single range stores that range's verdict directly, so most packets cost
// one array read; any other bucket points at its sorted run of range starts,
// which the program binary-searches (at most 16 steps for IPv4, 24 for IPv6).
// This is the DXR family of structures; it keeps longest-prefix semantics
// exactly while touching one or two cache lines for typical rule sets.
//
// IPv4 ranges are packed ten to a 64-byte block (range starts as the low 16
// bits, the bucket supplies the rest, next to their verdicts), so a bucket
// of up to ten ranges costs one cache line after the directory; larger
// buckets first binary-search their blocks by first key. IPv6 range starts
// are full 128-bit values, searched directly.
//
// The compiler works on compact records (16 bytes per IPv4 prefix, 40 per
// IPv6 prefix) sorted in place, so a million-prefix feed compiles without
// per-rule allocations.
package lpm
