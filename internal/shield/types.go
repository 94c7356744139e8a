package shield

import "unsafe"

// Names for the types and constants bpf2go generates from bpf/lib/shield.h.
type (
	dirEntry   = shieldShieldDir
	key128     = shieldShieldKey128
	counter    = shieldShieldCounter
	control    = shieldShieldControl
	sampleData = shieldShieldSample
)

const (
	statMax        = uint32(shieldShieldStatSHIELD_STAT_MAX)
	verdictSlot    = uint32(shieldShieldVerdictBitsSHIELD_SLOT_MASK)
	verdictAllow   = uint32(shieldShieldVerdictBitsSHIELD_V_ALLOW)
	verdictLogOnly = uint32(shieldShieldVerdictBitsSHIELD_V_LOG_ONLY)
	modeDryRun     = uint32(shieldShieldModeFlagsSHIELD_MODE_DRY_RUN)
)

// The compiled tables are copied into the maps byte for byte, so the Go and
// C layouts must agree; these fail to compile if they drift.
var (
	_ [unsafe.Sizeof(dirEntry{}) - dirBytes]struct{}
	_ [dirBytes - unsafe.Sizeof(dirEntry{})]struct{}
	_ [unsafe.Sizeof(key128{}) - v6KeyBytes]struct{}
	_ [v6KeyBytes - unsafe.Sizeof(key128{})]struct{}
	_ [unsafe.Sizeof(counter{}) - counterBytes]struct{}
	_ [counterBytes - unsafe.Sizeof(counter{})]struct{}
	_ [unsafe.Sizeof(shieldShieldKeys16{}) - elemBytes]struct{}
	_ [unsafe.Sizeof(shieldShieldVals{}) - elemBytes]struct{}
)
