package main

import (
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/carverauto/fortress/pkg/fortress"
	"github.com/carverauto/fortress/pkg/policy"
)

// metrics exposes Fortress to Prometheus. Per-rule series are limited to
// the busiest rules (metrics.top_rules) plus one "other" series per kind,
// so a million-rule policy yields a bounded number of series.
type metrics struct {
	reg     *prometheus.Registry
	events  *prometheus.CounterVec
	bundles *prometheus.CounterVec
}

var (
	descRulePackets = prometheus.NewDesc("fortress_shield_rule_packets_total",
		"Packets matched per rule (busiest rules only; rule=\"other\" sums the rest).", []string{"rule", "kind"}, nil)
	descRuleBytes = prometheus.NewDesc("fortress_shield_rule_bytes_total",
		"Bytes matched per rule (busiest rules only; rule=\"other\" sums the rest).", []string{"rule", "kind"}, nil)
	descShieldPackets = prometheus.NewDesc("fortress_shield_packets_total",
		"Packets seen by Shield by verdict.", []string{"verdict"}, nil)
	descSamplesLost = prometheus.NewDesc("fortress_shield_samples_lost_total",
		"Dry-run samples the kernel could not queue.", nil, nil)
	descMapBytes = prometheus.NewDesc("fortress_shield_map_bytes", "Memory of Shield's maps.", nil, nil)
	descRules    = prometheus.NewDesc("fortress_shield_rules", "Rules in force.", nil, nil)
	descPolicy   = prometheus.NewDesc("fortress_policy_version", "Version of the last applied policy bundle.", nil, nil)
	descInForce  = prometheus.NewDesc("fortress_policy_in_force", "1 when the last applied policy is in force.", nil, nil)
	descDegraded = prometheus.NewDesc("fortress_degraded",
		"1 when a layer is not protecting as configured (shield, sentinel, audit).", []string{"layer"}, nil)
	descState = prometheus.NewDesc("fortress_layer_state", "1 for each layer's current state.", []string{"layer", "state"}, nil)
	descLost  = prometheus.NewDesc("fortress_events_lost_total",
		"Events lost, by where: kernel (ring buffer full) or agent (channel full).", []string{"where"}, nil)
	descAuditLost = prometheus.NewDesc("fortress_audit_records_lost_total", "Audit records that could not be written.", nil, nil)
	descStream    = prometheus.NewDesc("fortress_controlstream_connected", "1 while the ControlStream is up.", nil, nil)
	descStreamQ   = prometheus.NewDesc("fortress_controlstream_unacked_batches", "Batches waiting for the gateway.", nil, nil)
	descStreamDr  = prometheus.NewDesc("fortress_controlstream_events_dropped_total",
		"Events the ControlStream queue had no room for.", nil, nil)
)

func newMetrics(f *fortress.Fortress, a *agent) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fortress_events_total",
			Help: "Events by kind (fim, violation, dry-run, critical)."}, []string{"kind"}),
		bundles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fortress_bundles_total",
			Help: "Bundles received by outcome (applied, or the refusal reason)."}, []string{"outcome"}),
	}
	for _, k := range []string{fortress.KindFIM, fortress.KindViolation, fortress.KindDryRun, fortress.KindCritical} {
		m.events.WithLabelValues(k)
	}
	m.reg.MustRegister(m.events, m.bundles, &collector{f: f, a: a},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) event(e fortress.Event) {
	switch e.Kind {
	case fortress.KindFIM, fortress.KindViolation, fortress.KindDryRun, fortress.KindCritical:
		m.events.WithLabelValues(e.Kind).Inc()
	}
}

func (m *metrics) bundle(err error) {
	outcome := "applied"
	if err != nil {
		outcome = policy.Reason(err)
	}
	m.bundles.WithLabelValues(outcome).Inc()
}

// collector reads Fortress's cached counters and status at scrape time.
type collector struct {
	f *fortress.Fortress
	a *agent
}

// Describe sends nothing: the collector is unchecked, since the per-rule
// label values change with the busiest rules.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b := func(ok bool) float64 {
		if ok {
			return 1
		}
		return 0
	}
	top, sums := c.f.TopCounters()
	inTop := map[string][2]uint64{}
	for _, r := range top {
		counter(descRulePackets, r.Packets, r.Rule, r.Kind)
		counter(descRuleBytes, r.Bytes, r.Rule, r.Kind)
		t := inTop[r.Kind]
		inTop[r.Kind] = [2]uint64{t[0] + r.Packets, t[1] + r.Bytes}
	}
	for kind, s := range sums {
		t := inTop[kind]
		// "other" can step back when a rule enters the top list; that is
		// a counter reset for Prometheus and handled as one.
		counter(descRulePackets, s[0]-min(s[0], t[0]), "other", kind)
		counter(descRuleBytes, s[1]-min(s[1], t[1]), "other", kind)
	}

	st := c.f.Status()
	tt := st.Shield.Totals
	for verdict, v := range map[string]uint64{"pass": tt.Pass, "drop": tt.Drop, "would_drop": tt.WouldDrop, "allow": tt.AllowHit,
		"bypass": tt.Bypass, "non_ip": tt.NonIP, "unparsed": tt.Unparsed} {
		counter(descShieldPackets, v, verdict)
	}
	counter(descSamplesLost, tt.SampleLost)
	gauge(descMapBytes, float64(st.Shield.MapBytes))
	gauge(descRules, float64(st.Shield.Rules))
	gauge(descPolicy, float64(st.Policy.Version))
	gauge(descInForce, b(st.Policy.InForce))
	gauge(descDegraded, b(st.Shield.State == fortress.ShieldDegraded), "shield")
	gauge(descDegraded, b(st.Sentinel.State != fortress.SentinelEnforcing), "sentinel")
	gauge(descDegraded, b(!st.Audit.OK), "audit")
	for _, s := range []string{fortress.ShieldEnforcing, fortress.ShieldDryRun, fortress.ShieldDegraded, fortress.ShieldDisabled} {
		gauge(descState, b(st.Shield.State == s), "shield", s)
	}
	for _, s := range []string{fortress.SentinelEnforcing, fortress.SentinelAudit, fortress.SentinelUnavailable} {
		gauge(descState, b(st.Sentinel.State == s), "sentinel", s)
	}
	counter(descLost, st.Events.KernelLost, "kernel")
	counter(descLost, st.Events.Dropped, "agent")
	counter(descAuditLost, st.Audit.Lost)
	if cl := c.a.streamClient(); cl != nil {
		s := cl.Stats()
		gauge(descStream, b(s.Connected))
		gauge(descStreamQ, float64(s.Unacked))
		counter(descStreamDr, s.EventsDropped)
	}
}

// serveMetrics serves /metrics on addr.
func (a *agent) serveMetrics(addr string) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server", "err", err)
		}
	}()
	a.metricsAddr = ln.Addr().String()
	a.log.Info("metrics listening", "addr", a.metricsAddr)
	return srv, nil
}
