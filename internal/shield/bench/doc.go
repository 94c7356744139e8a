// Package bench measures Shield against the kernel's LPM trie on the same
// rule set, checks its verdicts against the reference LPM, and times the
// whole path from bundle bytes to the set in force, adoption after a
// restart and ipset restore of the same set (tools/bench shield).
//
// It lives apart from package shield so that its BPF object and harness
// are not linked into the agent or fortressctl; it reaches Shield's tables
// through Shield.WithTables.
package bench
