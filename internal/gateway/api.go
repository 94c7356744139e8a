package gateway

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/carverauto/fortress/internal/store"
)

// api is the gateway's HTTP side: the dashboard, its JSON API, the live
// stream and the metrics. It reads through the gateway and changes nothing.
type api struct {
	g *Gateway
}

//go:embed web
var webFS embed.FS

func (h *api) routes() http.Handler {
	g := h.g
	mux := http.NewServeMux()
	web, _ := fs.Sub(webFS, "web")
	mux.Handle("GET /", http.FileServerFS(web))
	mux.HandleFunc("GET /api/agents", h.handleAgents)
	mux.HandleFunc("GET /api/counters", h.handleCounters)
	mux.HandleFunc("GET /api/events", h.handleEvents)
	mux.HandleFunc("GET /api/totals", h.handleTotals)
	mux.HandleFunc("GET /api/series", h.handleSeries)
	mux.HandleFunc("GET /api/snapshot", h.handleSnapshot)
	mux.HandleFunc("GET /api/stream", h.handleStream)
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, v any, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

func intParam(r *http.Request, name string, def int) int {
	if v, err := strconv.Atoi(r.URL.Query().Get(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

// AgentView is an agent as the API and dashboard show it.
type AgentView struct {
	store.Agent
	// Health sums the agent up: enforcing, observing, degraded,
	// unavailable or offline.
	Health string `json:"health"`
	// Packets are drops, DryPackets would-drops, AllowPackets allow hits.
	Packets      uint64  `json:"packets"`
	DryPackets   uint64  `json:"dry_packets"`
	AllowPackets uint64  `json:"allow_packets"`
	PPS          float64 `json:"pps"`
	// Refused counts counter deltas the gateway did not store (junk rule
	// names, bad kinds, beyond the agent's rule quota).
	Refused uint64 `json:"refused,omitempty"`
}

func health(a store.Agent) string {
	if !a.Connected {
		return "offline"
	}
	sh, se := a.Status.Shield.State, a.Status.Sentinel.State
	switch {
	case sh == "unavailable" && se == "unavailable":
		return "unavailable"
	case sh == "degraded" || se == "degraded" || sh == "unavailable" || se == "unavailable" || len(a.Status.Degraded) > 0:
		return "degraded"
	case sh == "enforcing" && (se == "enforcing" || se == "unknown" || se == ""):
		return "enforcing"
	case sh == "unknown" || sh == "":
		return "unknown"
	}
	return "observing"
}

func (h *api) agents(ctx context.Context) ([]AgentView, error) {
	g := h.g
	list, err := g.store.Agents(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]AgentView, len(list))
	for i, a := range list {
		_, a.Connected = g.control.Session(a.ID)
		if t, ok := g.lastSeen(a.ID); ok {
			a.LastSeen = t
		}
		if ack := g.agents.lastAck(a.ID); ack != nil {
			a.Status.LastAck = ack
		}
		out[i] = AgentView{Agent: a, Health: health(a), Refused: g.Refused(a.ID)}
	}
	return out, nil
}

func (h *api) handleAgents(w http.ResponseWriter, r *http.Request) {
	a, err := h.agents(r.Context())
	writeJSON(w, a, err)
}

// Row is a counter total with its live rate and, in snapshots, the last
// minute's packets per second (oldest first).
type Row struct {
	store.CounterTotal
	PPS   float64  `json:"pps"`
	BPS   float64  `json:"bps"`
	Spark []uint64 `json:"spark,omitempty"`
}

// fleetKey is a fleet row's identity: agents and slots summed.
func fleetKey(k store.RuleKey) store.RuleKey { k.Slot = 0; return k }

// withRates adds live rates to rows (fleet rows sum every agent's).
func withRates(rows []store.CounterTotal, rt map[rateKey]rate, fleet bool) []Row {
	var fl map[store.RuleKey]rate
	if fleet {
		fl = map[store.RuleKey]rate{}
		for k, v := range rt {
			f := fl[fleetKey(k.RuleKey)]
			f.pps += v.pps
			f.bps += v.bps
			fl[fleetKey(k.RuleKey)] = f
		}
	}
	out := make([]Row, len(rows))
	for i, c := range rows {
		v := rt[rateKey{c.AgentID, c.RuleKey}]
		if fleet {
			v = fl[fleetKey(c.RuleKey)]
		}
		out[i] = Row{CounterTotal: c, PPS: v.pps, BPS: v.bps}
	}
	return out
}

// kindParam reads the kind selection: kind=drop|would-drop|allow, or the
// older dry_run=1|0 (would-drop or drop).
func kindParam(q url.Values) (string, error) {
	if k := q.Get("kind"); k != "" {
		if !slices.Contains(store.Kinds, k) {
			return "", errf("kind %q is not one of %v", k, store.Kinds)
		}
		return k, nil
	}
	switch q.Get("dry_run") {
	case "1", "true":
		return store.KindWouldDrop, nil
	case "0", "false":
		return store.KindDrop, nil
	}
	return "", nil
}

// maxAPIPage is the most rows one API call returns; page on with offset.
const maxAPIPage = 1000

func (h *api) handleCounters(w http.ResponseWriter, r *http.Request) {
	g := h.g
	q := r.URL.Query()
	kind, err := kindParam(q)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cq := store.CounterQuery{AgentID: q.Get("agent"), Filter: q.Get("filter"), Fleet: q.Get("fleet") == "1" || q.Get("fleet") == "true",
		Kind: kind, Limit: min(intParam(r, "limit", maxAPIPage), maxAPIPage), Offset: intParam(r, "offset", 0)}
	if cq.Limit == 0 {
		cq.Limit = maxAPIPage
	}
	rows, err := g.store.Counters(r.Context(), cq)
	if err != nil {
		writeJSON(w, nil, err)
		return
	}
	writeJSON(w, withRates(rows, g.rates.snapshot(time.Now()), cq.Fleet), nil)
}

func (h *api) handleEvents(w http.ResponseWriter, r *http.Request) {
	g := h.g
	q := r.URL.Query()
	after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
	ev, err := g.store.Events(r.Context(), store.EventQuery{AgentID: q.Get("agent"), Kind: q.Get("kind"), AfterID: after,
		Limit: min(intParam(r, "limit", 100), maxAPIPage)})
	if ev == nil {
		ev = []store.Event{}
	}
	writeJSON(w, ev, err)
}

func (h *api) handleTotals(w http.ResponseWriter, r *http.Request) {
	g := h.g
	t, err := g.store.Totals(r.Context())
	writeJSON(w, map[string]uint64{"packets": t.Packets, "bytes": t.Bytes, "dry_packets": t.DryPackets, "dry_bytes": t.DryBytes,
		"allow_packets": t.AllowPackets, "allow_bytes": t.AllowBytes, "events": t.Events, "batches": t.Batches}, err)
}

func (h *api) handleSeries(w http.ResponseWriter, r *http.Request) {
	g := h.g
	q := r.URL.Query()
	if q.Get("rule") == "" {
		http.Error(w, "rule is required", http.StatusBadRequest)
		return
	}
	kind, err := kindParam(q)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if kind == "" {
		kind = store.KindDrop
	}
	s, err := g.store.Series(r.Context(), q.Get("agent"), q.Get("rule"), kind, time.Now().Add(-time.Hour))
	writeJSON(w, s, err)
}

// Snapshot is what the dashboard shows, recomputed every second. Drops,
// would-drops and allow hits are counted apart. It is bounded whatever the
// store holds: at most Limit rows per table and one page of agents
// (AgentsOffset, at most maxAgentsPage; AgentCount says how many there are).
type Snapshot struct {
	Time time.Time `json:"time"`
	// Packets are drops, DryPackets would-drops, AllowPackets allow hits.
	Packets       uint64         `json:"packets"`
	DryPackets    uint64         `json:"dry_packets"`
	AllowPackets  uint64         `json:"allow_packets"`
	PPS           float64        `json:"pps"`
	DryPPS        float64        `json:"dry_pps"`
	AllowPPS      float64        `json:"allow_pps"`
	Fleet         []Row          `json:"fleet"`
	FleetDry      []Row          `json:"fleet_dry"`
	FleetAllow    []Row          `json:"fleet_allow"`
	PerAgent      []Row          `json:"per_agent"`
	PerAgentDry   []Row          `json:"per_agent_dry"`
	PerAgentAllow []Row          `json:"per_agent_allow"`
	Timeline      Timeline       `json:"timeline"`
	Agents        []AgentView    `json:"agents"`
	AgentCount    int            `json:"agent_count"`
	AgentsOffset  int            `json:"agents_offset"`
	Health        map[string]int `json:"health"`
	Events        uint64         `json:"events"`
}

// Snapshot bounds.
const (
	maxSnapshotRows = 200
	maxAgentsPage   = 200
)

// snapshot computes the dashboard view for an agent/filter selection:
// rows per table, agents from agentsOffset.
func (h *api) snapshot(ctx context.Context, agent, filter string, limit, agentsOffset int) (*Snapshot, error) {
	g := h.g
	if limit <= 0 || limit > maxSnapshotRows {
		limit = maxSnapshotRows
	}
	now := time.Now()
	rt := g.rates.snapshot(now)
	snap := &Snapshot{Time: now, Health: map[string]int{}, AgentsOffset: agentsOffset}
	sums, err := g.store.KindTotals(ctx, store.CounterQuery{AgentID: agent, Filter: filter})
	if err != nil {
		return nil, err
	}
	agents, err := h.agents(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string]*AgentView{}
	known := map[string]bool{}
	for i := range agents {
		byID[agents[i].ID] = &agents[i]
		known[agents[i].ID] = true
	}
	for _, t := range sums {
		a := byID[t.AgentID]
		switch t.Kind {
		case store.KindDrop:
			snap.Packets += t.Packets
			if a != nil {
				a.Packets = t.Packets
			}
		case store.KindWouldDrop:
			snap.DryPackets += t.Packets
			if a != nil {
				a.DryPackets = t.Packets
			}
		case store.KindAllow:
			snap.AllowPackets += t.Packets
			if a != nil {
				a.AllowPackets = t.Packets
			}
		}
	}
	for k, v := range rt {
		if (agent != "" && k.agent != agent) || (filter != "" && !strings.Contains(k.Rule, filter)) {
			continue
		}
		switch k.Kind {
		case store.KindDrop:
			snap.PPS += v.pps
			if a := byID[k.agent]; a != nil {
				a.PPS += v.pps
			}
		case store.KindWouldDrop:
			snap.DryPPS += v.pps
		case store.KindAllow:
			snap.AllowPPS += v.pps
		}
	}
	tables := []struct {
		kind  string
		fleet bool
		dst   *[]Row
	}{
		{store.KindDrop, true, &snap.Fleet}, {store.KindWouldDrop, true, &snap.FleetDry}, {store.KindAllow, true, &snap.FleetAllow},
		{store.KindDrop, false, &snap.PerAgent}, {store.KindWouldDrop, false, &snap.PerAgentDry}, {store.KindAllow, false, &snap.PerAgentAllow},
	}
	for _, tb := range tables {
		rows, err := g.store.Counters(ctx, store.CounterQuery{AgentID: agent, Filter: filter, Kind: tb.kind, Fleet: tb.fleet, Limit: limit})
		if err != nil {
			return nil, err
		}
		out := withRates(rows, rt, tb.fleet)
		if tb.fleet && agent != "" {
			// One agent's rows, summed over its slots: rates and sparks of
			// that agent only.
			for i := range out {
				out[i].AgentID = agent
				out[i].PPS, out[i].BPS = 0, 0
				for k, v := range rt {
					if k.agent == agent && fleetKey(k.RuleKey) == fleetKey(out[i].RuleKey) {
						out[i].PPS += v.pps
						out[i].BPS += v.bps
					}
				}
			}
		}
		if tb.fleet {
			g.history.sparks(out, now)
			if agent != "" {
				for i := range out {
					out[i].AgentID = ""
				}
			}
		}
		*tb.dst = out
	}
	tot, err := g.store.Totals(ctx)
	if err != nil {
		return nil, err
	}
	snap.Events = tot.Events
	snap.Timeline = g.history.timelineOf(agent, now)
	g.history.forget(known)

	snap.AgentCount = len(agents)
	for _, a := range agents {
		snap.Health[a.Health]++
	}
	// Agents that need attention first, then by traffic; one page.
	rank := map[string]int{"unavailable": 0, "degraded": 1, "offline": 2, "unknown": 3, "observing": 4, "enforcing": 5}
	sort.SliceStable(agents, func(i, j int) bool {
		if ri, rj := rank[agents[i].Health], rank[agents[j].Health]; ri != rj {
			return ri < rj
		}
		if agents[i].Packets != agents[j].Packets {
			return agents[i].Packets > agents[j].Packets
		}
		return agents[i].ID < agents[j].ID
	})
	if agent != "" {
		kept := agents[:0]
		for _, a := range agents {
			if a.ID == agent {
				kept = append(kept, a)
			}
		}
		agents = kept
	}
	agents = agents[min(agentsOffset, len(agents)):]
	if len(agents) > maxAgentsPage {
		agents = agents[:maxAgentsPage]
	}
	snap.Agents = agents
	return snap, nil
}

func (h *api) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s, err := h.snapshot(r.Context(), q.Get("agent"), q.Get("filter"), intParam(r, "limit", 25), intParam(r, "agents_offset", 0))
	writeJSON(w, s, err)
}

// minSnapshotGap bounds how often one dashboard gets a snapshot when data
// keeps arriving.
const minSnapshotGap = 200 * time.Millisecond

// snapCache shares one snapshot per selection among dashboards in a tick.
type snapCache struct {
	mu   sync.Mutex
	at   map[string]time.Time
	data map[string][]byte
}

var snaps = snapCache{at: map[string]time.Time{}, data: map[string][]byte{}}

func (h *api) cachedSnapshot(ctx context.Context, agent, filter string, limit int) ([]byte, error) {
	g := h.g
	key := fmt.Sprintf("%p|%s|%s|%d", g, agent, filter, limit)
	snaps.mu.Lock()
	defer snaps.mu.Unlock()
	if t, ok := snaps.at[key]; ok && time.Since(t) < minSnapshotGap/2 {
		return snaps.data[key], nil
	}
	s, err := h.snapshot(ctx, agent, filter, limit, 0)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	for k, t := range snaps.at {
		if time.Since(t) > time.Minute {
			delete(snaps.at, k)
			delete(snaps.data, k)
		}
	}
	snaps.at[key], snaps.data[key] = time.Now(), data
	return data, nil
}

// handleStream is the dashboard's server-sent event stream: a "snapshot"
// and any new "events" soon after new data is stored (at most every
// minSnapshotGap) and at least every SnapshotInterval.
func (h *api) handleStream(w http.ResponseWriter, r *http.Request) {
	g := h.g
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	q := r.URL.Query()
	agent, filter, limit := q.Get("agent"), q.Get("filter"), intParam(r, "limit", 25)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	ctx := r.Context()
	var lastEvent int64
	send := func(first bool) error {
		snap, err := h.cachedSnapshot(ctx, agent, filter, limit)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", snap); err != nil {
			return err
		}
		eq := store.EventQuery{AgentID: agent, AfterID: lastEvent, Limit: 200}
		if first {
			eq.Limit = 50
		}
		ev, err := g.store.Events(ctx, eq)
		if err != nil {
			return err
		}
		if len(ev) > 0 {
			lastEvent = ev[0].ID
			data, _ := json.Marshal(ev)
			if _, err := fmt.Fprintf(w, "event: events\ndata: %s\n\n", data); err != nil {
				return err
			}
		}
		fl.Flush()
		return nil
	}
	if err := send(true); err != nil {
		return
	}
	t := time.NewTicker(g.cfg.SnapshotInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.done:
			return
		case <-t.C:
		case <-g.changed.changes():
			select {
			case <-time.After(minSnapshotGap):
			case <-ctx.Done():
				return
			}
		}
		if err := send(false); err != nil {
			return
		}
	}
}
