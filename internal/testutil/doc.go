// Package testutil holds helpers shared by Fortress's kernel tests: root
// checks, lab detection, and skip-or-fail for missing kernel features.
package testutil
