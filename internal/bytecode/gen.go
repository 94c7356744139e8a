package bytecode

// The test objects are real clang output, committed so tests need no
// compiler. Regenerate with `make generate`.
//go:generate sh testdata/build.sh
