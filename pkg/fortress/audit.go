//go:build linux

package fortress

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/carverauto/fortress/internal/auditlog"
)

// auditRecorder adapts the audit log to the Recorder interfaces of Shield
// and Sentinel: one fsynced, hash-chained record per change of kernel state.
// A record that cannot be written is logged and counted (Status reports it);
// the change itself has already happened and must not be hidden.
type auditRecorder struct {
	log    *auditlog.Log // nil when the log could not be opened
	logger *slog.Logger

	failures atomic.Uint64
	mu       sync.Mutex
	lastErr  string
}

func (a *auditRecorder) Record(action, object string, err error, details map[string]any) {
	a.logger.Debug("audit", "action", action, "object", object, "outcome", auditlog.Outcome(err))
	if a.log == nil {
		a.failures.Add(1)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := auditlog.Record{Action: action, Object: object, Outcome: auditlog.Outcome(err), Details: details}
	if werr := a.log.Append(ctx, rec); werr != nil {
		a.failures.Add(1)
		a.mu.Lock()
		a.lastErr = werr.Error()
		a.mu.Unlock()
		a.logger.Error("audit record lost", "action", action, "object", object, "err", werr)
	}
}

func (a *auditRecorder) lastError() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastErr
}
