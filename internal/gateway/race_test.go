//go:build race

package gateway

// raceSlowdown stretches time bounds under the race detector, which slows
// the pure-Go SQLite down by two orders of magnitude (a snapshot over the
// hostile agent's 10,000 rows: 0.1 s without, 14 s with).
const raceSlowdown = 60
