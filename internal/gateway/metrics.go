package gateway

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/carverauto/fortress/internal/store"
)

type metrics struct {
	reg            *prometheus.Registry
	batches        *prometheus.CounterVec
	counterUpdates prometheus.Counter
	events         prometheus.Counter
	eventsLost     prometheus.Counter
	connects       prometheus.Counter
	acks           *prometheus.CounterVec
	refused        *prometheus.CounterVec
	eventsRefused  prometheus.Counter
	commit         prometheus.Histogram
}

func newMetrics(g *Gateway) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fortress_gateway_batches_total",
			Help: "Sequenced batches received from agents, by result (applied or duplicate)."}, []string{"result"}),
		counterUpdates: prometheus.NewCounter(prometheus.CounterOpts{Name: "fortress_gateway_counter_updates_total",
			Help: "Per-rule counter deltas stored."}),
		events: prometheus.NewCounter(prometheus.CounterOpts{Name: "fortress_gateway_events_total",
			Help: "FIM and violation events stored."}),
		eventsLost: prometheus.NewCounter(prometheus.CounterOpts{Name: "fortress_gateway_agent_events_dropped_total",
			Help: "Events agents reported dropping because their buffer overflowed."}),
		connects: prometheus.NewCounter(prometheus.CounterOpts{Name: "fortress_gateway_agent_connects_total",
			Help: "Agent control streams opened."}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fortress_gateway_bundle_acks_total",
			Help: "Bundle acknowledgements from agents, by outcome or refusal reason."}, []string{"outcome"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fortress_gateway_counter_deltas_refused_total",
			Help: "Counter deltas from agents not stored, by reason (bad_rule, bad_kind, rule_quota)."}, []string{"reason"}),
		eventsRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "fortress_gateway_events_refused_total",
			Help: "Events not stored because their agent exceeded its event rate."}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fortress_gateway_store_commit_seconds",
			Help: "Time to store one group of batches.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
	m.reg.MustRegister(m.batches, m.counterUpdates, m.events, m.eventsLost, m.connects, m.acks, m.refused, m.eventsRefused, m.commit,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fortress_gateway_agents_connected",
			Help: "Agents with an open control stream."}, func() float64 { return float64(g.Connected()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fortress_gateway_write_queue",
			Help: "Batches waiting for the store."}, func() float64 { return float64(len(g.writes)) }),
		&agentCollector{g: g},
	)
	return m
}

// agentCollector exports per-agent packet totals (summed over rules, so the
// label set stays bounded by the number of agents) from the store.
type agentCollector struct{ g *Gateway }

var (
	packetsDesc = prometheus.NewDesc("fortress_agent_packets_total",
		"Packets matched by Shield rules per agent, by kind: drop (dropped), would-drop (log-only rule or dry run) or allow (allow exception).",
		[]string{"agent", "kind"}, nil)
	agentUpDesc = prometheus.NewDesc("fortress_agent_connected", "Whether the agent's control stream is open.", []string{"agent"}, nil)
	policyDesc  = prometheus.NewDesc("fortress_agent_policy_version", "Policy version the agent reports.", []string{"agent"}, nil)
)

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- packetsDesc
	ch <- agentUpDesc
	ch <- policyDesc
}

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	agents, err := c.g.store.Agents(ctx)
	if err != nil {
		return
	}
	for _, a := range agents {
		_, up := c.g.control.Session(a.ID)
		ch <- prometheus.MustNewConstMetric(agentUpDesc, prometheus.GaugeValue, b2f(up), a.ID)
		ch <- prometheus.MustNewConstMetric(policyDesc, prometheus.GaugeValue, float64(a.Status.PolicyVersion), a.ID)
	}
	totals, err := c.g.store.KindTotals(ctx, store.CounterQuery{})
	if err != nil {
		return
	}
	for _, t := range totals {
		ch <- prometheus.MustNewConstMetric(packetsDesc, prometheus.CounterValue, float64(t.Packets), t.AgentID, t.Kind)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
