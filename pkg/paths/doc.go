// Package paths is the one table of the paths a Fortress agent uses when
// its configuration names none: the pin root, the configuration, state and
// log locations, the status socket and the binaries. Every package and
// command that needs a default refers to these constants rather than
// spelling the path again, so that a different layout changes one file.
//
// The package holds constants only and builds on every platform, so public
// packages, commands (fortress-agent may import only pkg/...) and internal
// packages can all use it.
package paths
