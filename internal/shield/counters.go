package shield

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cilium/ebpf"

	"github.com/carverauto/fortress/internal/lpm"
)

// Counters reads what Shield counts: the global totals, the rules that saw
// traffic and the dry-run samples. Its maps (global counters, rule
// counters, sample ring) stay the same for a Shield's whole life (growth
// and program changes carry them over), and it holds its own handles to
// them, so it needs no lock and never waits for an apply.
type Counters struct {
	stats, hits, samples *ebpf.Map
	log                  *slog.Logger
}

// newCounters takes its own handles to objs' counter maps.
func newCounters(objs *shieldObjects, log *slog.Logger) (*Counters, error) {
	c := &Counters{log: log}
	var err error
	if c.stats, err = objs.ShieldStats.Clone(); err != nil {
		return nil, fmt.Errorf("shield counters: %w", err)
	}
	if c.hits, err = objs.RuleHits.Clone(); err != nil {
		c.close()
		return nil, fmt.Errorf("shield counters: %w", err)
	}
	if c.samples, err = objs.ShieldSamples.Clone(); err != nil {
		c.close()
		return nil, fmt.Errorf("shield counters: %w", err)
	}
	return c, nil
}

// Stats reads the global counters.
func (c *Counters) Stats() (Stats, error) { return readStats(c.stats) }

// ActiveRuleStats returns the rules that have matched at least one packet,
// unsorted: the cheap read for periodic counter deltas over very large rule
// sets. It reads only the counters of rules that saw traffic.
func (c *Counters) ActiveRuleStats() ([]RuleStat, error) {
	hits, err := c.readHits()
	if err != nil {
		return nil, err
	}
	return decodeHits(hits), nil
}

func (c *Counters) readHits() (map[ruleKey]hit, error) { return readHits(c.hits) }

// prune removes the counters of rules that are not in rules, so that a rule
// that comes back starts from zero and the tracked entries go to rules in
// force. Only rules that saw traffic have counters: the walk over rules is
// one small-map probe per rule, and nothing when no rule has counters.
func (c *Counters) prune(rules []lpm.Rule) error {
	hits, err := c.readHits()
	if err != nil || len(hits) == 0 {
		return err
	}
	kept := 0
	for _, r := range rules {
		k := keyOf(r)
		if h, ok := hits[k]; ok && !h.keep {
			h.keep = true
			hits[k] = h
			if kept++; kept == len(hits) {
				return nil
			}
		}
	}
	var gone []ruleKey
	for k, h := range hits {
		if !h.keep {
			gone = append(gone, k)
		}
	}
	for _, k := range gone {
		if err := c.hits.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete rule counter: %w", err)
		}
	}
	return nil
}

func (c *Counters) close() []error {
	var errs []error
	for _, m := range []*ebpf.Map{c.stats, c.hits, c.samples} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errs
}
