// Package shield loads and drives Shield, Fortress's XDP firewall.
//
// The rule set is compiled by package lpm into range tables that live in
// memory-mapped BPF arrays holding two generations. A policy update writes
// the idle generation, flips the live generation in one 4-byte store, and
// waits for an RCU grace period before the old generation may be reused, so
// every packet sees the old rule set or the new one, never a mix and never an
// empty one. A verdict holds the matching rule's prefix length and kind, so
// the rule is the source address masked to that length. Rules that see
// traffic are counted in one hash shared by all CPUs and keyed by the rule
// (atomic adds): its memory does not grow with the CPU count or the set, and
// a rule keeps its counts for as long as it stays in the set. The set's
// name (SetID) is stored with the tables, so a restarted agent that finds
// its last set in force adopts it without compiling or swapping.
//
// A Shield owns its program, tables and links behind one lock; its
// Counters read the totals, the rule counters and the dry-run samples
// without it (those maps live as long as the Shield), and Info describes
// it in one snapshot. Only this package knows the names of Shield's pins:
// other layers ask Pinned and PinnedObjects.
//
// Shield fails open: when the program cannot be loaded or attached, traffic
// flows and the error says why; callers report "shield: degraded".
package shield
