//go:build linux

package fortress

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// eventSink is the Events channel and its counts. Every controller emits
// into it; it never blocks and holds no lock.
type eventSink struct {
	ch         chan Event
	log        *slog.Logger
	delivered  atomic.Uint64
	dropped    atomic.Uint64
	kernelLost atomic.Uint64
}

func newEventSink(capacity int, log *slog.Logger) *eventSink {
	return &eventSink{ch: make(chan Event, capacity), log: log}
}

// emit delivers e, or counts it dropped when the channel is full.
func (s *eventSink) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	select {
	case s.ch <- e:
		s.delivered.Add(1)
	default:
		s.dropped.Add(1)
	}
}

// critical logs and emits a condition that needs an operator.
func (s *eventSink) critical(layer, detail string) {
	s.log.Error("fortress critical", "layer", layer, "detail", detail)
	s.emit(Event{Kind: KindCritical, Severity: SeverityCritical, Layer: layer, Detail: detail})
}

func (s *eventSink) stats() EventStats {
	return EventStats{Delivered: s.delivered.Load(), Dropped: s.dropped.Load(), KernelLost: s.kernelLost.Load()}
}
