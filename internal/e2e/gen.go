package e2e

// The attack object is real clang output, committed so tests need no
// compiler. Regenerate with `make generate`.
//go:generate go tool bpf2go -target amd64,arm64 attack testdata/freplace.c -- -I../../bpf/include
