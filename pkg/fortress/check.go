//go:build linux

package fortress

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/carverauto/fortress/internal/bundle"
	"github.com/carverauto/fortress/internal/statedir"
)

// CheckBundle runs the checks ApplyBundle runs before it changes anything,
// through the same code: verification's (size, envelope, signature, target,
// expiry, the body's fields and rules; with StateDir the version), then the
// conversion of the whole payload (a referenced list fetched and checked
// against its digest, every line parsed, allow_empty, the management
// addresses). Left to the agent are only checks against its own host: its
// configured management addresses plus the bundle's within Shield's limit, Sentinel's paths existing, and
// the rule set fitting Shield's memory budget.
func CheckBundle(ctx context.Context, raw []byte, opt CheckOptions) (*CheckResult, error) {
	var b *bundle.Bundle
	var err error
	bopt := bundle.Options{Keys: opt.Keys, AgentID: opt.AgentID, MaxSize: opt.MaxSize}
	if opt.StateDir != "" {
		if opt.AgentID == "" {
			return nil, fmt.Errorf("check bundle: a state directory needs the agent id")
		}
		last, lerr := bundle.ReadStored(filepath.Join(opt.StateDir, statedir.LastBundle), bopt)
		if lerr != nil {
			return nil, lerr
		}
		var version uint64
		if last != nil {
			version = last.Version
		}
		b, err = bundle.Verify(raw, bopt, version)
	} else {
		b, err = bundle.Parse(raw, bopt)
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
	mgmt, err := mergeManagement(nil, p.management)
	if err != nil {
		return nil, fmt.Errorf("payload.%w", err)
	}
	return &CheckResult{Bundle: b, Rules: len(p.rules), Duplicates: p.duplicates, Gateways: len(mgmt), DryRun: p.dryRun}, nil
}
