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
	path   string
	// openErr says why the log could not be opened.
	openErr string

	failures atomic.Uint64
	mu       sync.Mutex
	lastErr  string
}

// openAudit opens the audit log at path. A log that cannot be opened (or
// fails verification) is reported loudly, but protection is not given up
// for it: the recorder then counts every record as lost.
func openAudit(path string, logger *slog.Logger, events *eventSink) *auditRecorder {
	a := &auditRecorder{logger: logger, path: path}
	l, err := auditlog.Open(path)
	if err != nil {
		a.openErr = err.Error()
		events.critical("agent", "audit log unavailable, kernel changes are not recorded: "+err.Error())
		return a
	}
	a.log = l
	return a
}

func (a *auditRecorder) close() {
	if a.log != nil {
		a.log.Close()
	}
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

// status reports the log's state: open, and no record lost.
func (a *auditRecorder) status() AuditStatus {
	st := AuditStatus{Path: a.path, Lost: a.failures.Load()}
	st.OK = a.log != nil && st.Lost == 0
	switch {
	case a.openErr != "":
		st.Reason = a.openErr
	case st.Lost > 0:
		st.Reason = a.lastError()
	}
	return st
}

func (a *auditRecorder) lastError() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastErr
}
