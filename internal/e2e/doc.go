// Package e2e holds end-to-end tests that run the installed Fortress
// binaries (fortress-agent, fortressctl) as an operator would, inside the
// VM lab, where BPF LSM enforces. It has no code of its own.
package e2e
