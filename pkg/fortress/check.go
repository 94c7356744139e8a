//go:build linux

package fortress

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/carverauto/fortress/internal/bundle"
)

// CheckBundle runs the checks ApplyBundle runs before it changes anything,
// through the same code: the verifier's (size, envelope, signature, target,
// expiry, the body's fields and rules; with StateDir the version), then the
// conversion of the whole payload (a referenced list fetched and checked
// against its digest, every line parsed, allow_empty, gateways). Left to
// the agent are only checks against its own host: its configured gateways
// plus the bundle's within Shield's limit, Sentinel's paths existing, and
// the rule set fitting Shield's memory budget.
func CheckBundle(ctx context.Context, raw []byte, opt CheckOptions) (*CheckResult, error) {
	var b *bundle.Bundle
	var err error
	if opt.StateDir != "" {
		if opt.AgentID == "" {
			return nil, fmt.Errorf("check bundle: a state directory needs the agent id")
		}
		v, verr := bundle.NewVerifier(bundle.Config{Keys: opt.Keys, AgentID: opt.AgentID, StateDir: opt.StateDir, MaxSize: opt.MaxSize})
		if verr != nil {
			return nil, verr
		}
		b, err = v.Check(raw)
	} else {
		b, err = bundle.Parse(raw, bundle.Options{Keys: opt.Keys, AgentID: opt.AgentID, MaxSize: opt.MaxSize})
	}
	if err != nil {
		return nil, err
	}
	fetch := opt.FetchList
	if fetch == nil {
		fetch = defaultFetch
	}
	p, err := convert(ctx, b, func(ctx context.Context, ref bundle.ListRef) (io.Reader, error) {
		data, err := fetch(ctx, ref.URL)
		if err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
		return bytes.NewReader(data), bundle.CheckList(data, ref)
	})
	if err != nil {
		return nil, err
	}
	gws, err := mergeGateways(nil, p.gateways)
	if err != nil {
		return nil, fmt.Errorf("payload.%w", err)
	}
	return &CheckResult{Bundle: b, Rules: len(p.rules), Duplicates: p.duplicates, Gateways: len(gws), DryRun: p.dryRun}, nil
}
