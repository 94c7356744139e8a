package main

import (
	"go/build"
	"strings"
	"testing"
)

// The agent is built on the public packages only, so that an agent outside
// this module can do everything it does.
func TestImportsNoInternalPackage(t *testing.T) {
	p, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range p.Imports {
		if strings.HasPrefix(imp, "github.com/carverauto/fortress/internal/") {
			t.Errorf("fortress-agent imports %s; use a package under pkg/", imp)
		}
	}
}
