package main

// labPackages are the packages whose tests "vmlab test" runs inside every
// kernel, as go package patterns relative to the module root. A listed
// package that does not exist yet, or has no test files, is skipped with a
// note. Add a package here when it has tests that need the lab (BPF LSM,
// fentry/fexit, or several kernel versions).
var labPackages = []string{
	"./internal/probe",
	"./internal/sentinel",
	"./internal/shield",
	"./pkg/fortress",
	"./pkg/serviceradar",
	"./internal/e2e",
}
