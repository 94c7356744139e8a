package shield

import (
	"unsafe"

	"github.com/carverauto/fortress/internal/lpm"
)

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
	verdictBits    = uint32(shieldShieldVerdictBitsSHIELD_V_BITS_MASK)
	verdictMatch   = uint32(shieldShieldVerdictBitsSHIELD_V_MATCH)
	verdictAllow   = uint32(shieldShieldVerdictBitsSHIELD_V_ALLOW)
	verdictLogOnly = uint32(shieldShieldVerdictBitsSHIELD_V_LOG_ONLY)
	modeDryRun     = uint32(shieldShieldModeFlagsSHIELD_MODE_DRY_RUN)
	layoutVersion  = uint32(shieldShieldLayoutSHIELD_LAYOUT)
)

// The compiled tables are copied into the maps byte for byte, so the Go and
// C layouts must agree; these fail to compile if they drift.
var (
	_ [unsafe.Sizeof(dirEntry{}) - dirBytes]struct{}
	_ [dirBytes - unsafe.Sizeof(dirEntry{})]struct{}
	_ [unsafe.Sizeof(key128{}) - v6KeyBytes]struct{}
	_ [v6KeyBytes - unsafe.Sizeof(key128{})]struct{}
	_ [unsafe.Sizeof(control{}) - controlBytes]struct{}
	_ [controlBytes - unsafe.Sizeof(control{})]struct{}
	_ [unsafe.Sizeof(ruleKey{}) - ruleKeyBytes]struct{}
	_ [ruleKeyBytes - unsafe.Sizeof(ruleKey{})]struct{}
	_ [unsafe.Sizeof(counter{}) - counterBytes]struct{}
	_ [counterBytes - unsafe.Sizeof(counter{})]struct{}
	_ [unsafe.Sizeof(shieldShieldV4Block{}) - v4BlockBytes]struct{}
	_ [v4BlockBytes - unsafe.Sizeof(shieldShieldV4Block{})]struct{}
	_ [unsafe.Sizeof(lpm.V4Block{}) - v4BlockBytes]struct{}
	_ [v4BlockBytes - unsafe.Sizeof(lpm.V4Block{})]struct{}
	_ [unsafe.Sizeof(shieldShieldDir16{}) - elemBytes]struct{}
	_ [unsafe.Sizeof(shieldShieldVals{}) - elemBytes]struct{}
	_ [uint32(shieldShieldRuleFlagsSHIELD_RULE_ALLOW) - lpm.FlagAllow]struct{}
	_ [lpm.FlagAllow - uint32(shieldShieldRuleFlagsSHIELD_RULE_ALLOW)]struct{}
	_ [uint32(shieldShieldRuleFlagsSHIELD_RULE_LOG_ONLY) - lpm.FlagLogOnly]struct{}
	_ [lpm.FlagLogOnly - uint32(shieldShieldRuleFlagsSHIELD_RULE_LOG_ONLY)]struct{}
)
