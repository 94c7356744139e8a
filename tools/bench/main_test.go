package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
)

// TestHelpDescribesEveryFlag: "bench X --help" answers with every flag of
// X and its description, and runs nothing.
func TestHelpDescribesEveryFlag(t *testing.T) {
	for name, c := range commands {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			helpOut, flagSets = &out, nil
			defer func() { helpOut = os.Stderr }()
			code, err := c.run(context.Background(), []string{"--help"})
			var ue usageError
			if !errors.As(err, &ue) || !strings.HasSuffix(ue.msg, flag.ErrHelp.Error()) {
				t.Fatalf("--help ran the command: %d %v", code, err)
			}
			if len(flagSets) == 0 {
				t.Fatal("no flag set recorded")
			}
			n := 0
			for _, fs := range flagSets {
				fs.VisitAll(func(f *flag.Flag) {
					n++
					if !strings.Contains(out.String(), "-"+f.Name) || !strings.Contains(out.String(), f.Usage) {
						t.Errorf("help lacks flag -%s (%q):\n%s", f.Name, f.Usage, out.String())
					}
				})
			}
			if n == 0 {
				t.Fatalf("no flags described:\n%s", out.String())
			}
		})
	}
}
