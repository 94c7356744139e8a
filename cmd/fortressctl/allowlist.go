package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/carverauto/fortress/internal/bytecode"
)

func init() {
	register("allowlist", "check BPF objects' helper and kfunc calls against their allowlists", runAllowlist)
}

func runAllowlist(_ context.Context, args []string) (int, error) {
	return allowlistCmd(args, os.Stdout, os.Stderr)
}

// allowlistCmd runs `fortressctl allowlist`. Exit status: 0 clean, 1 a
// forbidden or unlisted call (or an embedded object that does not load), 2
// bad usage or an --object that cannot be read as a BPF ELF object.
func allowlistCmd(args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("allowlist")
	object := fs.String("object", "", "check this BPF ELF object against the default allowlist of each program's type")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	usage := "allowlist [--object FILE.o] [--json]"
	if err := fs.Parse(args); err != nil {
		return 2, usageError{fmt.Sprintf("%s: %v", usage, err)}
	}
	objectSet := false
	fs.Visit(func(f *flag.Flag) { objectSet = objectSet || f.Name == "object" })
	if fs.NArg() != 0 || (objectSet && *object == "") {
		return 2, usageError{usage}
	}

	var (
		reports []bytecode.Report
		errs    []error
	)
	if objectSet {
		spec, err := ebpf.LoadCollectionSpec(*object)
		if err != nil {
			return 2, fmt.Errorf("read object %s: %w", *object, err)
		}
		rep, err := bytecode.Check(filepath.Base(*object), spec, bytecode.DefaultAllowlist(spec))
		reports = append(reports, rep)
		errs = append(errs, err)
	} else {
		objs := slices.Clone(embedded)
		slices.SortFunc(objs, func(a, b bytecode.Embedded) int { return strings.Compare(a.Name, b.Name) })
		for _, e := range objs {
			rep, err := e.Check()
			if err != nil && len(bytecode.Violations(err)) == 0 {
				// The binary's own object does not load: broken build.
				return 1, err
			}
			reports = append(reports, rep)
			errs = append(errs, err)
		}
		if len(objs) == 0 {
			fmt.Fprintln(stderr, "fortressctl allowlist: no embedded objects are registered")
		}
	}
	violations := bytecode.Violations(errors.Join(errs...))

	if *asJSON {
		if err := writeAllowlistJSON(stdout, reports, violations); err != nil {
			return 1, err
		}
	} else {
		writeAllowlistText(stdout, reports)
		for _, v := range violations {
			fmt.Fprintf(stderr, "violation: %v\n", v)
		}
	}
	if len(violations) > 0 {
		fmt.Fprintf(stderr, "fortressctl allowlist: %d violation(s)\n", len(violations))
		return 1, nil
	}
	return 0, nil
}

func writeAllowlistText(w io.Writer, reports []bytecode.Report) {
	for _, rep := range reports {
		fmt.Fprintf(w, "object %s\n", rep.Object)
		if len(rep.Programs) == 0 {
			fmt.Fprintln(w, "  no programs")
		}
		for _, p := range rep.Programs {
			fmt.Fprintf(w, "  program %s (%v, section %s, %d insns)\n", p.Name, p.Type, p.Section, p.Insns)
			fmt.Fprintf(w, "    helpers: %s\n", listOrNone(p.HelperNames()))
			fmt.Fprintf(w, "    kfuncs:  %s\n", listOrNone(p.Kfuncs))
			if p.FunctionCalls > 0 {
				fmt.Fprintf(w, "    bpf-to-bpf calls: %d\n", p.FunctionCalls)
			}
		}
	}
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, " ")
}

type violationJSON struct {
	Object  string `json:"object"`
	Program string `json:"program"`
	Offset  int    `json:"offset"`
	Kind    string `json:"kind,omitempty"`
	Call    string `json:"call,omitempty"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func writeAllowlistJSON(w io.Writer, reports []bytecode.Report, violations []*bytecode.Violation) error {
	out := struct {
		Clean      bool              `json:"clean"`
		Objects    []bytecode.Report `json:"objects"`
		Violations []violationJSON   `json:"violations"`
	}{Clean: len(violations) == 0, Objects: reports, Violations: []violationJSON{}}
	if out.Objects == nil {
		out.Objects = []bytecode.Report{}
	}
	for _, v := range violations {
		out.Violations = append(out.Violations, violationJSON{
			Object: v.Object, Program: v.Program, Offset: v.Offset, Kind: v.Kind,
			Call: v.Call, Reason: v.Reason, Message: v.Error(),
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
