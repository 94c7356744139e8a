// Package shield loads and drives Shield, Fortress's XDP firewall.
//
// The rule set is compiled by package lpm into range tables that live in
// memory-mapped BPF arrays holding two generations. A policy update writes
// the idle generation, flips the live generation in one 4-byte store, and
// waits for an RCU grace period before the old generation may be reused, so
// every packet sees the old rule set or the new one, never a mix and never an
// empty one. Per-rule counters are per-CPU and indexed by a slot that a rule
// keeps for as long as it stays in the policy.
//
// Shield fails open: when the program cannot be loaded or attached, traffic
// flows and the error says why; callers report "shield: degraded".
package shield
