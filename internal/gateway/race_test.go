//go:build race

package gateway

// raceSlowdown stretches time bounds under the race detector, which slows
// the pure-Go SQLite down by about two orders of magnitude.
const raceSlowdown = 20
