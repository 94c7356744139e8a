package gateway

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/carverauto/fortress/internal/store"
)

//go:embed web
var webFS embed.FS

func (g *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	web, _ := fs.Sub(webFS, "web")
	mux.Handle("GET /", http.FileServerFS(web))
	mux.HandleFunc("GET /api/agents", g.handleAgents)
	mux.HandleFunc("GET /api/counters", g.handleCounters)
	mux.HandleFunc("GET /api/events", g.handleEvents)
	mux.HandleFunc("GET /api/totals", g.handleTotals)
	mux.HandleFunc("GET /api/series", g.handleSeries)
	mux.HandleFunc("GET /api/snapshot", g.handleSnapshot)
	mux.HandleFunc("GET /api/stream", g.handleStream)
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
	Health     string  `json:"health"`
	Packets    uint64  `json:"packets"`
	DryPackets uint64  `json:"dry_packets"`
	PPS        float64 `json:"pps"`
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

func (g *Gateway) agents(ctx context.Context) ([]AgentView, error) {
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
		if ack := g.lastAck(a.ID); ack != nil {
			a.Status.LastAck = ack
		}
		out[i] = AgentView{Agent: a, Health: health(a)}
	}
	return out, nil
}

func (g *Gateway) handleAgents(w http.ResponseWriter, r *http.Request) {
	a, err := g.agents(r.Context())
	writeJSON(w, a, err)
}

// Row is a counter total with its live rate.
type Row struct {
	store.CounterTotal
	PPS float64 `json:"pps"`
	BPS float64 `json:"bps"`
}

func (g *Gateway) handleCounters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cq := store.CounterQuery{AgentID: q.Get("agent"), Filter: q.Get("filter"), Fleet: q.Get("fleet") == "1" || q.Get("fleet") == "true",
		Limit: intParam(r, "limit", 0)}
	if d := q.Get("dry_run"); d != "" {
		v := d == "1" || d == "true"
		cq.DryRun = &v
	}
	rows, err := g.store.Counters(r.Context(), cq)
	if err != nil {
		writeJSON(w, nil, err)
		return
	}
	rt := g.rates.snapshot(time.Now())
	out := make([]Row, len(rows))
	for i, c := range rows {
		out[i] = Row{CounterTotal: c}
		if cq.Fleet {
			for k, v := range rt {
				if k.rule == c.Rule && k.dryRun == c.DryRun {
					out[i].PPS += v.pps
					out[i].BPS += v.bps
				}
			}
		} else {
			v := rt[rateKey{c.AgentID, c.Rule, c.DryRun}]
			out[i].PPS, out[i].BPS = v.pps, v.bps
		}
	}
	writeJSON(w, out, nil)
}

func (g *Gateway) handleEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
	ev, err := g.store.Events(r.Context(), store.EventQuery{AgentID: q.Get("agent"), Kind: q.Get("kind"), AfterID: after, Limit: intParam(r, "limit", 100)})
	if ev == nil {
		ev = []store.Event{}
	}
	writeJSON(w, ev, err)
}

func (g *Gateway) handleTotals(w http.ResponseWriter, r *http.Request) {
	t, err := g.store.Totals(r.Context())
	writeJSON(w, map[string]uint64{"packets": t.Packets, "bytes": t.Bytes, "dry_packets": t.DryPackets, "dry_bytes": t.DryBytes,
		"events": t.Events, "batches": t.Batches}, err)
}

func (g *Gateway) handleSeries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("rule") == "" {
		http.Error(w, "rule is required", http.StatusBadRequest)
		return
	}
	s, err := g.store.Series(r.Context(), q.Get("agent"), q.Get("rule"), q.Get("dry_run") == "1" || q.Get("dry_run") == "true", time.Now().Add(-time.Hour))
	writeJSON(w, s, err)
}

// Snapshot is what the dashboard shows, recomputed every second.
type Snapshot struct {
	Time        time.Time      `json:"time"`
	Packets     uint64         `json:"packets"`
	DryPackets  uint64         `json:"dry_packets"`
	PPS         float64        `json:"pps"`
	DryPPS      float64        `json:"dry_pps"`
	Fleet       []Row          `json:"fleet"`
	FleetDry    []Row          `json:"fleet_dry"`
	PerAgent    []Row          `json:"per_agent"`
	PerAgentDry []Row          `json:"per_agent_dry"`
	Agents      []AgentView    `json:"agents"`
	AgentCount  int            `json:"agent_count"`
	Health      map[string]int `json:"health"`
	Events      uint64         `json:"events"`
}

// snapshot computes the dashboard view for an agent/filter selection.
func (g *Gateway) snapshot(ctx context.Context, agent, filter string, limit int) (*Snapshot, error) {
	rows, err := g.store.Counters(ctx, store.CounterQuery{AgentID: agent, Filter: filter})
	if err != nil {
		return nil, err
	}
	agents, err := g.agents(ctx)
	if err != nil {
		return nil, err
	}
	tot, err := g.store.Totals(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	rt := g.rates.snapshot(now)
	snap := &Snapshot{Time: now, Health: map[string]int{}, AgentCount: len(agents), Events: tot.Events}
	type fk struct {
		rule string
		dry  bool
	}
	fleet := map[fk]*Row{}
	perAgent := map[string]*AgentView{}
	for i := range agents {
		perAgent[agents[i].ID] = &agents[i]
	}
	var pa, pad []Row
	for _, c := range rows {
		rate := rt[rateKey{c.AgentID, c.Rule, c.DryRun}]
		row := Row{CounterTotal: c, PPS: rate.pps, BPS: rate.bps}
		if c.DryRun {
			snap.DryPackets += c.Packets
			snap.DryPPS += rate.pps
			pad = append(pad, row)
		} else {
			snap.Packets += c.Packets
			snap.PPS += rate.pps
			pa = append(pa, row)
		}
		f := fleet[fk{c.Rule, c.DryRun}]
		if f == nil {
			f = &Row{CounterTotal: store.CounterTotal{Rule: c.Rule, DryRun: c.DryRun}}
			fleet[fk{c.Rule, c.DryRun}] = f
		}
		f.Packets += c.Packets
		f.Bytes += c.Bytes
		f.Agents++
		f.PPS += rate.pps
		f.BPS += rate.bps
		if f.Updated.Before(c.Updated) {
			f.Updated = c.Updated
		}
		if a := perAgent[c.AgentID]; a != nil {
			if c.DryRun {
				a.DryPackets += c.Packets
			} else {
				a.Packets += c.Packets
				a.PPS += rate.pps
			}
		}
	}
	var fl, fld []Row
	for _, f := range fleet {
		if f.DryRun {
			fld = append(fld, *f)
		} else {
			fl = append(fl, *f)
		}
	}
	snap.Fleet, snap.FleetDry = top(fl, limit), top(fld, limit)
	snap.PerAgent, snap.PerAgentDry = top(pa, limit), top(pad, limit)
	for _, a := range agents {
		snap.Health[a.Health]++
	}
	// Agents that need attention first, then by traffic; bounded for the page.
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
	if len(agents) > 200 {
		agents = agents[:200]
	}
	snap.Agents = agents
	return snap, nil
}

func top(rows []Row, limit int) []Row {
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Packets != rows[j].Packets {
			return rows[i].Packets > rows[j].Packets
		}
		if rows[i].AgentID != rows[j].AgentID {
			return rows[i].AgentID < rows[j].AgentID
		}
		return rows[i].Rule < rows[j].Rule
	})
	if limit > 0 && len(rows) > limit {
		rows = rows[:limit]
	}
	if rows == nil {
		rows = []Row{}
	}
	return rows
}

func (g *Gateway) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s, err := g.snapshot(r.Context(), q.Get("agent"), q.Get("filter"), intParam(r, "limit", 25))
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

func (g *Gateway) cachedSnapshot(ctx context.Context, agent, filter string, limit int) ([]byte, error) {
	key := fmt.Sprintf("%p|%s|%s|%d", g, agent, filter, limit)
	snaps.mu.Lock()
	defer snaps.mu.Unlock()
	if t, ok := snaps.at[key]; ok && time.Since(t) < minSnapshotGap/2 {
		return snaps.data[key], nil
	}
	s, err := g.snapshot(ctx, agent, filter, limit)
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
func (g *Gateway) handleStream(w http.ResponseWriter, r *http.Request) {
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
		snap, err := g.cachedSnapshot(ctx, agent, filter, limit)
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
		case <-g.changes():
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
