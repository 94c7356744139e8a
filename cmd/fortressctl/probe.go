package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/carverauto/fortress/internal/probe"
)

func init() {
	register("probe", "report which eBPF features this kernel really offers", runProbe)
}

func runProbe(_ context.Context, args []string) (int, error) {
	fs := newFlagSet("probe")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	requireLSM := fs.Bool("require-lsm", false, "exit with status 3 when BPF LSM is not usable")
	if err := fs.Parse(args); err != nil {
		return 2, usageError{fmt.Sprintf("probe [--json] [--require-lsm]: %v", err)}
	}
	r := probe.Run()
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return 1, err
		}
	} else {
		fmt.Printf("kernel %s\n", r.Kernel)
		for _, c := range r.Checks {
			state := "ok"
			if !c.OK {
				state = "NOT OK"
			}
			fmt.Printf("%-20s %-7s %s\n", c.Name, state, c.Reason)
		}
	}
	if *requireLSM && !r.OK(probe.LSM) {
		return 3, nil
	}
	return 0, nil
}
