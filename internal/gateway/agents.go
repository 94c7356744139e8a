package gateway

import (
	"sync"
	"time"

	pb "github.com/carverauto/fortress/api/controlpb"
	"github.com/carverauto/fortress/internal/store"
)

// agentBook is what the gateway keeps in memory about agents: who is
// connected and when each was last heard, the last bundle acknowledgement,
// counter deltas refused, event quotas. Its lock is a leaf: nothing is
// called out to while it is held.
type agentBook struct {
	mu      sync.Mutex
	live    map[string]*liveAgent
	acks    map[string]*store.Ack
	refused map[string]uint64 // counter deltas refused, per agent
	evQuota map[string]*eventQuota
}

// liveAgent is what the gateway keeps in memory about a connected agent.
type liveAgent struct {
	lastSeen time.Time
}

type eventQuota struct {
	tokens float64
	last   time.Time
}

func newAgentBook() agentBook {
	return agentBook{live: map[string]*liveAgent{}, acks: map[string]*store.Ack{}, refused: map[string]uint64{},
		evQuota: map[string]*eventQuota{}}
}

func (b *agentBook) connect(id string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.live[id] = &liveAgent{lastSeen: now}
}

func (b *agentBook) disconnect(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.live, id)
}

func (b *agentBook) touch(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l, ok := b.live[id]; ok {
		l.lastSeen = time.Now()
	}
}

// seen is when a connected agent was last heard, as the gateway recorded.
func (b *agentBook) seen(id string) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l, ok := b.live[id]; ok {
		return l.lastSeen, true
	}
	return time.Time{}, false
}

// takeEvents returns how many of n events of agent may be stored now.
func (b *agentBook) takeEvents(agent string, n int, now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.evQuota[agent]
	if q == nil {
		q = &eventQuota{tokens: eventBurst, last: now}
		b.evQuota[agent] = q
	}
	q.tokens = min(eventBurst, q.tokens+now.Sub(q.last).Seconds()*eventRate)
	q.last = now
	ok := min(n, int(q.tokens))
	q.tokens -= float64(ok)
	return ok
}

// refuse counts n refused deltas of agent and reports whether they are its
// first.
func (b *agentBook) refuse(agent string, n int) (first bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	first = b.refused[agent] == 0
	b.refused[agent] += uint64(n)
	return first
}

func (b *agentBook) refusedCount(agent string) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refused[agent]
}

func (b *agentBook) setAck(agent string, a *store.Ack) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.acks[agent] = a
}

func (b *agentBook) lastAck(agent string) *store.Ack {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.acks[agent]
}

// ackWaiters are the pushes waiting for an agent's acknowledgement.
type ackWaiters struct {
	mu      sync.Mutex
	waiters map[string][]*ackWaiter
}

func (a *ackWaiters) add(agent string, version uint64) *ackWaiter {
	w := &ackWaiter{version: version, ch: make(chan *pb.BundleAck, 1)}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.waiters[agent] = append(a.waiters[agent], w)
	return w
}

func (a *ackWaiters) drop(agent string, w *ackWaiter) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ws := a.waiters[agent]
	for i, x := range ws {
		if x == w {
			a.waiters[agent] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(a.waiters[agent]) == 0 {
		delete(a.waiters, agent)
	}
}

// deliver hands ack to the push waiting for its version, if any.
func (a *ackWaiters) deliver(agent string, ack *pb.BundleAck) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.waiters[agent] {
		if w.version == ack.Version {
			select {
			case w.ch <- ack:
			default:
			}
			break
		}
	}
}

// changeFeed tells dashboards that new data is stored: its channel is
// closed and replaced on every change.
type changeFeed struct {
	mu sync.Mutex
	ch chan struct{}
}

func (c *changeFeed) notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.ch)
	c.ch = make(chan struct{})
}

func (c *changeFeed) changes() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}
