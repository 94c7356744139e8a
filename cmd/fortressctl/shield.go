package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/carverauto/fortress/internal/pins"
	"github.com/carverauto/fortress/internal/shield"
	"github.com/carverauto/fortress/pkg/paths"
)

func init() {
	register("shield", "Shield firewall: shield stats [--top N] [--json]", runShield)
}

func runShield(_ context.Context, args []string) (int, error) {
	if len(args) == 0 || args[0] != "stats" {
		return 2, usageError{"usage: fortressctl shield stats [--pin-root DIR] [--top N] [--json]"}
	}
	fs := newFlagSet("shield stats")
	root := fs.String("pin-root", paths.PinRoot, "bpffs pin root")
	fs.String("state-dir", "", "ignored, kept for older scripts: the kernel's counters name their rules")
	top := fs.Int("top", 20, "rules to print, most packets first (0 = all)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return 2, usageError{err.Error()}
	}
	rules, st, err := shield.ReadPinned(pins.Root(*root))
	if err != nil {
		return 1, err
	}
	if *top > 0 && len(rules) > *top {
		rules = rules[:*top]
	}
	if *asJSON {
		type row struct {
			CIDR    string `json:"cidr"`
			Action  string `json:"action"`
			LogOnly bool   `json:"log_only"`
			Packets uint64 `json:"packets"`
			Bytes   uint64 `json:"bytes"`
		}
		out := struct {
			Totals shield.Stats `json:"totals"`
			Rules  []row        `json:"rules"`
		}{Totals: st}
		for _, r := range rules {
			cidr := ""
			if r.Rule.Prefix.IsValid() {
				cidr = r.Rule.Prefix.String()
			}
			out.Rules = append(out.Rules, row{cidr, r.Rule.Action.String(), r.Rule.LogOnly, r.Packets, r.Bytes})
		}
		return 0, json.NewEncoder(os.Stdout).Encode(out)
	}
	fmt.Printf("passed %d  dropped %d  would-drop %d  allow-hits %d  gateway-bypass %d  non-ip %d  unparsed %d  samples %d (lost %d)  untracked %d\n",
		st.Pass, st.Drop, st.WouldDrop, st.AllowHit, st.Bypass, st.NonIP, st.Unparsed, st.SampleSent, st.SampleLost, st.Untracked)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CIDR\tACTION\tPACKETS\tBYTES")
	for _, r := range rules {
		cidr := r.Rule.Prefix.String()
		action := r.Rule.Action.String()
		if r.Rule.LogOnly {
			action += " (log-only)"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\n", cidr, action, r.Packets, r.Bytes)
	}
	return 0, w.Flush()
}
