//go:build !race

package gateway

const raceSlowdown = 1
