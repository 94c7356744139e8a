package gateway

import (
	"sync"
	"time"

	"github.com/carverauto/fortress/internal/store"
)

// What the dashboard's charts draw, kept in memory per second as batches
// are stored: a timeline per agent and kind (timelineSecs), and a
// sparkline per rule key (sparkSecs) for at most sparkKeysPerAgent keys of
// each agent, so one agent cannot grow it beyond its share.
const (
	timelineSecs      = 300
	sparkSecs         = 60
	sparkKeysPerAgent = 500
)

// secRing holds per-second packet counts for the last len(vals) seconds.
type secRing struct {
	last int64 // newest second written
	vals []uint64
}

func newSecRing(n int) *secRing { return &secRing{vals: make([]uint64, n)} }

func (r *secRing) add(sec int64, v uint64) {
	n := int64(len(r.vals))
	if sec > r.last {
		// Zero the seconds skipped since the last write.
		for s := max(r.last+1, sec-n+1); s <= sec; s++ {
			r.vals[s%n] = 0
		}
		r.last = sec
	} else if sec <= r.last-n {
		return // older than the window
	}
	r.vals[sec%n] += v
}

// series writes the counts of the len(out) seconds ending before end (the
// current, incomplete second is left out) into out, adding to what is there.
func (r *secRing) series(end int64, out []uint64) {
	n := int64(len(r.vals))
	for i := range out {
		s := end - int64(len(out)) + int64(i)
		if s > r.last || s <= r.last-n || s < 0 {
			continue
		}
		out[i] += r.vals[s%n]
	}
}

type histKey struct {
	agent string
	store.RuleKey
}

// history keeps the charts' data.
type history struct {
	mu       sync.Mutex
	timeline map[string]map[string]*secRing // agent -> kind
	spark    map[histKey]*secRing
	perAgent map[string]int // spark keys per agent
}

func newHistory() *history {
	return &history{timeline: map[string]map[string]*secRing{}, spark: map[histKey]*secRing{}, perAgent: map[string]int{}}
}

func (h *history) add(agent string, k store.RuleKey, packets uint64, now time.Time) {
	sec := now.Unix()
	h.mu.Lock()
	defer h.mu.Unlock()
	tl := h.timeline[agent]
	if tl == nil {
		tl = map[string]*secRing{}
		h.timeline[agent] = tl
	}
	r := tl[k.Kind]
	if r == nil {
		r = newSecRing(timelineSecs)
		tl[k.Kind] = r
	}
	r.add(sec, packets)
	hk := histKey{agent, k}
	s := h.spark[hk]
	if s == nil {
		if h.perAgent[agent] >= sparkKeysPerAgent {
			return
		}
		s = newSecRing(sparkSecs)
		h.spark[hk] = s
		h.perAgent[agent]++
	}
	s.add(sec, packets)
}

// Timeline is packets per second by kind, oldest first; the last value is
// the last complete second before Time.
type Timeline struct {
	// Start is the Unix second of the first value.
	Start     int64    `json:"start"`
	Drop      []uint64 `json:"drop"`
	WouldDrop []uint64 `json:"would_drop"`
	Allow     []uint64 `json:"allow"`
}

// timeline sums the timelines of agent ("": every agent).
func (h *history) timelineOf(agent string, now time.Time) Timeline {
	end := now.Unix()
	t := Timeline{Start: end - timelineSecs, Drop: make([]uint64, timelineSecs), WouldDrop: make([]uint64, timelineSecs),
		Allow: make([]uint64, timelineSecs)}
	h.mu.Lock()
	defer h.mu.Unlock()
	for a, tl := range h.timeline {
		if agent != "" && a != agent {
			continue
		}
		for kind, r := range tl {
			switch kind {
			case store.KindDrop:
				r.series(end, t.Drop)
			case store.KindWouldDrop:
				r.series(end, t.WouldDrop)
			case store.KindAllow:
				r.series(end, t.Allow)
			}
		}
	}
	return t
}

// sparks fills each row's Spark with the last sparkSecs seconds. A row
// without a slot (a fleet row) sums its rule's keys over slots, and over
// every agent when it has no AgentID either.
func (h *history) sparks(rows []Row, now time.Time) {
	end := now.Unix()
	h.mu.Lock()
	defer h.mu.Unlock()
	idx := map[histKey]int{}
	for i := range rows {
		rows[i].Spark = make([]uint64, sparkSecs)
		idx[histKey{rows[i].AgentID, rows[i].RuleKey}] = i
	}
	for k, r := range h.spark {
		if r.last < end-sparkSecs {
			// Idle for the whole window: forget it.
			delete(h.spark, k)
			h.perAgent[k.agent]--
			continue
		}
		fk := fleetKey(k.RuleKey)
		for _, c := range []histKey{k, {k.agent, fk}, {"", fk}} {
			if i, ok := idx[c]; ok {
				r.series(end, rows[i].Spark)
				break
			}
		}
	}
}

// forget drops the timeline of agents no longer known (called rarely).
func (h *history) forget(known map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for a := range h.timeline {
		if !known[a] {
			delete(h.timeline, a)
		}
	}
}
