//go:build !linux

package fortress

import (
	"context"
	"errors"
	"runtime"

	"github.com/carverauto/fortress/internal/bundle"
)

// The API is the same on every platform, so that a host agent builds
// everywhere it ships; off Linux Start refuses and nothing else happens.
// TestAPISameOnEveryPlatform keeps this file in step with the Linux one.

// Maintenance actions a token can carry.
const (
	MaintenanceAudit  = "audit"
	MaintenanceRemove = "remove"
)

// MaxInputBytes bounds what ReadInput reads.
const MaxInputBytes = 4 << 20

var (
	// ErrNotProtected says an input is not the object Sentinel protects.
	ErrNotProtected = errors.New("not the protected object")
	// ErrTokenRefused wraps every reason a maintenance token is not honoured.
	ErrTokenRefused = errors.New("refused")
	// ErrNoSentinel: there is no Sentinel enforcement to relax here.
	ErrNoSentinel = errors.New("sentinel is not running here: there is no enforcement to relax")
	// ErrRemoved is returned for policy changes after a maintenance removal.
	ErrRemoved = errors.New("fortress was removed by a maintenance token; restart the agent to load it again")
	// ErrTokenUsed: each maintenance token is honoured once.
	ErrTokenUsed = errors.New("token already used: each maintenance token is honoured once; sign a new one")
	// ErrClockBehind: the clock was set back behind an honoured token.
	ErrClockBehind = errors.New("the system clock is behind a maintenance token already honoured here: it was set back; tokens are refused until it is right")
)

// Fortress is never started off Linux.
type Fortress struct{}

// Start returns an error wrapping ErrUnsupported: there is no eBPF here.
func Start(ctx context.Context, cfg Config) (*Fortress, error) {
	return nil, unsupported()
}

// Stop does nothing: nothing was started.
func (f *Fortress) Stop() {}

// Events returns nil: there are none.
func (f *Fortress) Events() <-chan Event { return nil }

// ApplyBundle refuses: there is no kernel to enforce a bundle in.
func (f *Fortress) ApplyBundle(raw []byte) (Ack, error) { return Ack{}, unsupported() }

// RefusalReason classifies why a bundle was refused.
func RefusalReason(err error) string { return bundle.Reason(err) }

// Status is empty: nothing runs.
func (f *Fortress) Status() Status { return Status{} }

// Counters refuses: there are no counters.
func (f *Fortress) Counters() ([]RuleCounter, error) { return nil, unsupported() }

// TopCounters returns nothing.
func (f *Fortress) TopCounters() (top []RuleCounter, sums map[string][2]uint64) { return nil, nil }

// ReadInput refuses: Sentinel cannot vouch for anything here.
func ReadInput(pinRoot, path string) (data []byte, checked bool, err error) {
	return nil, false, unsupported()
}

// KernelReport is what the kernel really offers, check by check.
type KernelReport struct {
	Release string            `json:"release"`
	Checks  map[string]bool   `json:"checks"`
	Reasons map[string]string `json:"reasons"`
}

// ProbeKernel reports no checks: there is no eBPF to probe.
func ProbeKernel() KernelReport {
	return KernelReport{Checks: map[string]bool{}, Reasons: map[string]string{}}
}

// Kernel returns an empty report.
func (f *Fortress) Kernel() KernelReport { return KernelReport{} }

// Maintenance refuses: there is no enforcement to relax.
func (f *Fortress) Maintenance(raw string) (MaintenanceResult, error) {
	return MaintenanceResult{}, unsupported()
}

// EndMaintenance refuses: there is no enforcement to restore.
func (f *Fortress) EndMaintenance() error { return unsupported() }

// CheckBundle refuses: bundles are checked where they are enforced.
func CheckBundle(ctx context.Context, raw []byte, opt CheckOptions) (*CheckResult, error) {
	return nil, unsupported()
}

func unsupported() error { return unsupportedOn(runtime.GOOS, runtime.GOARCH) }
