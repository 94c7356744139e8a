// Package pins builds every bpffs path Fortress pins under, in one place.
//
// The production root is /sys/fs/bpf/serviceradar; tests pass their own
// temporary root so they never touch the production tree.
package pins
