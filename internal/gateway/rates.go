package gateway

import (
	"sync"
	"time"

	"github.com/carverauto/fortress/internal/store"
)

// rateWindow is the span over which live rates are averaged.
const rateWindow = 5

type rateKey = histKey

type slot struct {
	sec            int64
	packets, bytes uint64
}

// rates keeps the last few seconds of counter deltas per agent and rule key
// in memory for live rates; totals live in the store. Keys are bounded by
// what the store accepts (its per-agent rule quota) and idle ones go.
type rates struct {
	mu    sync.Mutex
	slots map[rateKey]*[rateWindow + 1]slot
}

func newRates() *rates { return &rates{slots: map[rateKey]*[rateWindow + 1]slot{}} }

func (r *rates) add(agent string, rk store.RuleKey, packets, bytes uint64, now time.Time) {
	sec := now.Unix()
	k := rateKey{agent, rk}
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.slots[k]
	if !ok {
		s = new([rateWindow + 1]slot)
		r.slots[k] = s
	}
	x := &s[sec%int64(len(s))]
	if x.sec != sec {
		*x = slot{sec: sec}
	}
	x.packets += packets
	x.bytes += bytes
}

// rate is packets and bytes per second over the last rateWindow complete
// seconds.
type rate struct{ pps, bps float64 }

func (r *rates) snapshot(now time.Time) map[rateKey]rate {
	cur := now.Unix()
	out := map[rateKey]rate{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, s := range r.slots {
		var p, b uint64
		live := false
		for _, x := range s {
			if x.sec >= cur-rateWindow && x.sec < cur {
				p += x.packets
				b += x.bytes
			}
			if x.sec >= cur-rateWindow {
				live = true
			}
		}
		if !live {
			delete(r.slots, k) // idle: drop to keep memory bounded by active keys
			continue
		}
		out[k] = rate{float64(p) / rateWindow, float64(b) * 8 / rateWindow}
	}
	return out
}
