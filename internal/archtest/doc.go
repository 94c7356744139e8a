// Package archtest holds tests of the module's shape: no type with more
// methods than one reader can keep in mind, no type guarding its state with
// more than one mutex, and a small coordinator in pkg/fortress. It has no
// code of its own.
package archtest
