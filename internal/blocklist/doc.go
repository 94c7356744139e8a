// Package blocklist reads Shield rule lists: the plain-text format of common
// public blocklists (one CIDR or address per line, optional action and
// log-only flag, '#' or ';' comments) and rule fields from JSON policies.
//
// A list is all or nothing: the first invalid line refuses the whole list
// with its line number and text, so the rule set in force stays unchanged.
package blocklist
